// Receipts: read pointers, delivery confirmations in both directions, and the ticks they make.
// Methods of the Store (store.js), mixed into its prototype.

import * as api from '../api.js';

export const receipts = {
  setReadPointer(roomId, userId, messageId) {
    if (!messageId) return false;
    let map = this.readPointers.get(roomId);
    if (!map) { map = new Map(); this.readPointers.set(roomId, map); }
    const cur = map.get(userId);
    if (cur && cur >= messageId) return false;
    map.set(userId, messageId);
    return true;
  },

  readersOf(msg) {
    const map = this.readPointers.get(msg.room_id);
    const out = [];
    if (!map) return out;
    for (const [userId, ptr] of map) if (userId !== msg.sender_id && ptr >= msg.id) out.push(userId);
    return out;
  },

  // Delivery receipts for my recent messages not yet read by everyone (after a load).
  async loadReceipts(roomId) {
    const room = this.rooms.get(roomId);
    if (!room) return;
    const mine = this.messagesOf(roomId).filter((m) => m.id && m.sender_id === this.me.id && !m.deleted);
    const others = room.member_count - 1;
    const todo = mine.filter((m) => this.readersOf(m).length < others).slice(-5);
    await Promise.all(todo.map(async (m) => {
      try {
        const { receipts } = await api.get(`/messages/${m.id}/receipts`);
        const set = this.deliveredTo.get(m.id) || new Set();
        for (const r of receipts) {
          if (r.delivered_at) set.add(r.user_id);
        }
        this.deliveredTo.set(m.id, set);
      } catch { /* receipts are a nicety */ }
    }));
    if (todo.length) this.emit('messages', { roomId });
  },

  confirmDelivery(messages) {
    for (const m of messages) {
      if (m.sender_id !== this.me.id && !m.deleted && !this.confirmed.has(m.id)) {
        this.deliverQueue.add(m.id);
      }
    }
    if (this.deliverQueue.size && !this.deliverTimer) {
      this.deliverTimer = setTimeout(() => this.flushDelivered(), 150);
    }
  },

  flushDelivered() {
    this.deliverTimer = null;
    const ids = [...this.deliverQueue];
    this.deliverQueue.clear();
    for (let i = 0; i < ids.length; i += 100) {
      const chunk = ids.slice(i, i + 100);
      chunk.forEach((id) => this.confirmed.add(id));
      this.socket.request('message.delivered', { message_ids: chunk }).catch(() => {});
    }
  },

  // Read up to the newest message of the room. The conversation calls it once that message
  // has been shown (views/conversation.js), often: on every scroll, so it costs little when
  // there is nothing new. Never while the window stops short of the newest message.
  markRead(roomId) {
    const w = this.windows.get(roomId);
    if (!w || w.hasNewer) return;
    let newest = null;
    for (const id of w.byId.keys()) if (!newest || id > newest) newest = id;
    if (!newest || w.readSent === newest) return; // asked already: its answer sets the count
    const room = this.rooms.get(roomId);
    const mine = this.readPointers.get(roomId)?.get(this.me.id);
    if (mine && mine >= newest && !(room && room.unread_count)) return;
    w.readSent = newest;
    this.setReadPointer(roomId, this.me.id, newest);
    if (room) { room.unread_count = 0; room.last_read_message_id = newest; }
    this.emit('rooms');
    this.socket.request('message.read', { room_id: roomId, message_id: newest }).then((res) => {
      const r = this.rooms.get(roomId);
      if (r && typeof res.unread_count === 'number') { r.unread_count = res.unread_count; this.emit('rooms'); }
    }).catch(() => {});
  },

  // 'sending' | 'failed' | 'sent' | 'delivered' | 'read' and the people who read it.
  tickOf(msg) {
    if (!msg.id) return { state: msg.state || 'sending', readers: [] };
    const room = this.rooms.get(msg.room_id);
    const readers = this.readersOf(msg);
    const others = room ? room.member_count - 1 : 1;
    if (others > 0 && readers.length >= others) return { state: 'read', readers };
    const delivered = this.deliveredTo.get(msg.id);
    if (readers.length || (delivered && delivered.size)) return { state: 'delivered', readers, partial: readers.length > 0 };
    return { state: 'sent', readers };
  },
};
