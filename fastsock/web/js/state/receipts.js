// Receipts: read and delivered pointers, delivery confirmations in both directions, and the
// ticks they make. Methods of the Store (store.js), mixed into its prototype.
//
// Each member has two pointers per room, from the room view (GET /rooms/{id}, on opening a room
// and after a resync) and moved on by live events (`message.read`, `message.delivered`): the
// newest message they read, and the newest their client confirmed. A pointer covers every
// earlier message too, so the ticks of all loaded messages come from one request per room.
// It says nothing of messages sent before the member joined (the server starts a new member's
// read pointer at the room's newest message): those leave the member out, as
// `GET /messages/{id}/receipts` does.

// Move a member's pointer in `pointers` (room id -> Map(user id -> message id)) forward, never
// back; true if it moved.
function advance(pointers, roomId, userId, messageId) {
  if (!messageId) return false;
  let map = pointers.get(roomId);
  if (!map) { map = new Map(); pointers.set(roomId, map); }
  const cur = map.get(userId);
  if (cur && cur >= messageId) return false;
  map.set(userId, messageId);
  return true;
}

export const receipts = {
  setReadPointer(roomId, userId, messageId) {
    return advance(this.readPointers, roomId, userId, messageId);
  },

  setDeliveredPointer(roomId, userId, messageId) {
    return advance(this.deliveredPointers, roomId, userId, messageId);
  },

  // The room's members with when they joined, from the room view (refetched when members
  // come or go, live.js); without it, the room list's members, since unknown ('').
  roomMembers(roomId) {
    const detail = this.details.get(roomId);
    if (detail) return detail.members;
    return (this.rooms.get(roomId)?.member_ids || []).map((id) => ({ user_id: id, joined_at: '' }));
  },

  // Did this member belong to the room when `msg` was sent?
  memberWhenSent(member, msg) {
    return !(member.joined_at > msg.created_at);
  },

  // The members, sender aside, who were in the room when `msg` was sent: its audience.
  audienceOf(msg) {
    return this.roomMembers(msg.room_id)
      .filter((m) => m.user_id !== msg.sender_id && this.memberWhenSent(m, msg))
      .map((m) => m.user_id);
  },

  readersOf(msg, audience = this.audienceOf(msg)) {
    const map = this.readPointers.get(msg.room_id);
    return audience.filter((id) => map?.get(id) >= msg.id);
  },

  // Others' messages this device now holds (history lines need no receipts: the server
  // ignores them). Each confirmation moves my delivered pointer in its room up to it.
  confirmDelivery(messages) {
    for (const m of messages) {
      if (m.sender_id !== this.me.id && !m.deleted && m.type !== 'system' && !this.confirmed.has(m.id)) {
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
    if (room) { room.unread_count = 0; room.mention_count = 0; room.last_read_message_id = newest; }
    this.emit('rooms');
    this.socket.request('message.read', { room_id: roomId, message_id: newest }).then((res) => {
      const r = this.rooms.get(roomId);
      if (r && typeof res.unread_count === 'number') {
        r.unread_count = res.unread_count;
        if (typeof res.mention_count === 'number') r.mention_count = res.mention_count;
        this.emit('rooms');
      }
    }).catch(() => {});
  },

  // 'sending' | 'failed' | 'sent' | 'delivered' | 'read' and the people who read it.
  tickOf(msg) {
    if (!msg.id) return { state: msg.state || 'sending', readers: [] };
    const audience = this.audienceOf(msg);
    const readers = this.readersOf(msg, audience);
    if (audience.length > 0 && readers.length >= audience.length) return { state: 'read', readers };
    if (readers.length || this.deliveredToSomeone(msg, audience)) return { state: 'delivered', readers };
    return { state: 'sent', readers };
  },

  // Has the client of someone it was sent to confirmed this message, or one after it?
  // (Reading implies delivery: the readers are counted by tickOf.)
  deliveredToSomeone(msg, audience) {
    const map = this.deliveredPointers.get(msg.room_id);
    return audience.some((id) => map?.get(id) >= msg.id);
  },
};
