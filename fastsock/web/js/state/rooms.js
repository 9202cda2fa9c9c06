// Rooms: the room list, one room's details, and the previews that live messages move.
// Methods of the Store (store.js), mixed into its prototype.

import * as api from '../api.js';
import { cmpId } from './util.js';

export const rooms = {
  async loadRooms() {
    const me = this.me?.id;
    const { rooms } = await api.get('/rooms');
    if (this.me?.id !== me) return; // signed out (or in as someone else) meanwhile: not ours
    const seen = new Set();
    for (const r of rooms) {
      seen.add(r.id);
      // A live message may have arrived while this list was in flight: keep what is newer.
      const known = this.rooms.get(r.id);
      if (known && (known.version || 0) > r.version) {
        r.last_activity_at = known.last_activity_at;
        r.last_message = known.last_message;
        r.unread_count = known.unread_count;
        r.mention_count = known.mention_count;
        r.version = known.version;
      } else if (known?.last_message && known.last_message.id > (r.last_message?.id || '')) {
        // The list's room and its last message are not read at once: a live message that came
        // in between is newer than the list's preview (a history line right after a leave).
        r.last_message = known.last_message;
        if (known.last_activity_at > r.last_activity_at) r.last_activity_at = known.last_activity_at;
      }
      this.rooms.set(r.id, r);
      if (!this.synced.has(r.id)) this.synced.set(r.id, r.version);
      for (const id of r.member_ids) if (!this.users.has(id) && r.kind === 'direct') this.fetchUser(id);
      this.setReadPointer(r.id, this.me.id, r.last_read_message_id);
    }
    for (const id of [...this.rooms.keys()]) if (!seen.has(id)) this.dropRoom(id);
    this.emit('rooms');
    this.confirmUnread(rooms);
  },

  // Messages that reached this device through the room list count as delivered: confirm the
  // unread ones of each room (the ones the sender is waiting on), not only opened rooms.
  async confirmUnread(rooms) {
    const todo = rooms.filter((r) => r.unread_count > 0 && r.last_message).slice(0, 20);
    for (const r of todo) {
      if (r.unread_count === 1 || !r.last_read_message_id) {
        this.confirmDelivery([r.last_message]);
        if (r.unread_count === 1) continue;
      }
      const after = r.last_read_message_id ? `&after=${r.last_read_message_id}` : '';
      try {
        const page = await api.get(`/history/room/${r.id}?limit=${Math.min(100, r.unread_count)}${after}`);
        this.confirmDelivery(page.messages);
      } catch { /* best effort */ }
    }
  },

  // `why`: {name, actorId} of a removal, for the note the open conversation closes with.
  dropRoom(id, why = {}) {
    const name = why.name || this.rooms.get(id)?.name;
    this.rooms.delete(id);
    this.windows.delete(id);
    this.details.delete(id);
    if (this.currentRoom === id) {
      this.currentRoom = null;
      this.emit('room-closed', { id, name, actorId: why.actorId });
    }
    this.emit('rooms');
  },

  sortedRooms() {
    return [...this.rooms.values()].sort((a, b) => cmpId(b.last_activity_at, a.last_activity_at));
  },

  roomName(room) {
    if (!room) return '';
    if (room.kind === 'direct') {
      const other = room.member_ids.find((id) => id !== this.me.id) || this.me.id;
      return this.displayName(other);
    }
    return room.name || 'Untitled group';
  },

  dmPartner(room) {
    return room.kind === 'direct' ? room.member_ids.find((id) => id !== this.me.id) : null;
  },

  unreadTotal() {
    let n = 0;
    for (const r of this.rooms.values()) n += r.unread_count || 0;
    return n;
  },

  async loadDetail(roomId) {
    const detail = await api.get(`/rooms/${roomId}`);
    this.details.set(roomId, detail);
    for (const m of detail.members) {
      if (m.last_read_message_id) this.setReadPointer(roomId, m.user_id, m.last_read_message_id);
      if (m.last_delivered_message_id) this.setDeliveredPointer(roomId, m.user_id, m.last_delivered_message_id);
      if (!this.users.has(m.user_id)) this.fetchUser(m.user_id);
    }
    this.emit('messages', { roomId });
    return detail;
  },

  touchRoom(m) {
    const room = this.rooms.get(m.room_id);
    if (!room) { this.loadRooms().catch(() => {}); return; }
    if (!room.last_message || room.last_message.id <= m.id) room.last_message = m;
    if (room.last_activity_at < m.created_at) room.last_activity_at = m.created_at;
    if (m.version > (room.version || 0)) room.version = m.version;
    this.emit('rooms');
  },

  refreshPreview(m) {
    const room = this.rooms.get(m.room_id);
    if (room && room.last_message && room.last_message.id === m.id) {
      room.last_message = m;
      this.emit('rooms');
    }
  },
};
