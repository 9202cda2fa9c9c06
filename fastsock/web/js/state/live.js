// Live events: socket frames and resyncs applied to the state.
// Methods of the Store (store.js), mixed into its prototype.

import * as api from '../api.js';

export const live = {
  async onReady({ resume }) {
    const wasDown = this.peersUnknown;
    this.peersUnknown = false;
    // "ok": the missed frames follow. Otherwise (a new session, also on the first connection,
    // which may have missed events since the REST load) refetch what may have changed.
    if (resume === 'ok') {
      if (wasDown) this.restorePresence();
      return;
    }
    if (wasDown) this.presenceBefore = null;
    await this.resync();
  },

  // The socket left the `open` state (dropped, waiting, offline): until it is back, nothing
  // says what other people do. Their typing lines go and their presence becomes unknown.
  onConnection(state) {
    if (state === 'open' || state === 'idle' || this.peersUnknown || !this.socket.everConnected) return;
    this.peersUnknown = true;
    this.clearTyping();
    this.forgetPresence();
  },

  // Refetch what changed while away: people's profiles (with who is online), rooms, every
  // change since each loaded room's sync point (changed_after pages, lowest version first),
  // and the read pointers.
  async resync() {
    this.refetchUsers();
    try {
      await this.loadRooms();
      for (const [roomId, w] of this.windows) {
        if (!w.loaded || !this.rooms.has(roomId)) continue;
        let since = this.synced.get(roomId) || 0;
        for (;;) {
          const page = await api.get(`/history/room/${roomId}?changed_after=${since}&limit=100`);
          for (const m of page.messages) {
            this.upsert(m, { fromLive: true });
            since = Math.max(since, m.version);
          }
          this.confirmDelivery(page.messages);
          if (!page.has_more) break;
        }
        this.synced.set(roomId, since);
        await this.loadDetail(roomId);
        this.emit('messages', { roomId });
      }
      this.emit('resynced');
    } catch (err) {
      this.emit('toast', { kind: 'error', text: `Sync failed: ${err.message}` });
    }
  },

  // People who just came to share a room with us (a room we joined, or new members of ours)
  // may be held from before, when no `user.updated` told us of their changes: refetch those.
  refreshNewContacts(type, data) {
    const joined = type === 'room.created' || data.user_ids?.includes(this.me.id);
    const ids = joined ? data.room.member_ids : data.user_ids || [];
    ids.forEach((id) => { if (id !== this.me.id && this.users.has(id)) this.fetchUser(id, { maxAge: 0 }); });
  },

  // A room changed, or its members: the room list, and the room view where held (members
  // with when they joined, and their pointers: ticks and "Seen by" count a member added live
  // from this refetch on, and drop one who left).
  refreshRoom(roomId) {
    this.loadRooms().then(() => {
      if (this.details.has(roomId)) this.loadDetail(roomId).catch(() => {});
    }).catch(() => {});
  },

  onFrame({ type, data }) {
    switch (type) {
      case 'message.ack': {
        const p = this.pending.get(data.client_msg_id);
        if (this.pending.delete(data.client_msg_id)) this.persistOutbox();
        this.upsert(data.message, { fromLive: true });
        this.touchRoom(data.message);
        if (p || data.message) this.emit('messages', { roomId: data.message.room_id });
        break;
      }
      case 'message.new': {
        const m = data.message;
        const mine = m.sender_id === this.me.id;
        if (mine && this.pending.delete(m.client_msg_id)) this.persistOutbox();
        const added = this.upsert(m, { fromLive: true });
        this.touchRoom(m);
        // A call the callee answered or declined is not news to them (the server moves their
        // read pointer past it): no notification. The unread counts are the server's: its
        // `unread` event follows each message that counts (missed calls and group calls'
        // entries do; my own messages and system lines do not).
        const seenCall = m.type === 'call' && m.call?.kind !== 'group' && ['completed', 'declined'].includes(m.call?.outcome);
        if (!mine) {
          this.confirmDelivery([m]);
          this.setTyping(m.room_id, m.sender_id, false);
          this.fetchUser(m.sender_id); // once: then `user.updated` keeps it fresh
          if (!seenCall) this.emit('incoming', { message: m });
        }
        this.emit('messages', { roomId: m.room_id, added, incoming: !mine });
        this.emit('rooms');
        break;
      }
      case 'message.updated':
        this.upsert(data.message);
        this.refreshQuotes(data.message);
        this.refreshPreview(data.message);
        this.emit('messages', { roomId: data.message.room_id });
        break;
      case 'message.deleted': {
        const w = this.windows.get(data.room_id);
        const m = w?.byId.get(data.message_id);
        if (m) w.byId.set(m.id, { ...m, deleted: true, text: '', reactions: {}, attachments: [] });
        this.refreshQuotes({ id: data.message_id, room_id: data.room_id, deleted: true });
        const room = this.rooms.get(data.room_id);
        if (room && room.last_message && room.last_message.id === data.message_id) {
          this.loadRooms().catch(() => {});
        }
        this.emit('messages', { roomId: data.room_id });
        break;
      }
      case 'reaction.updated':
        this.applyReactions(data);
        break;
      case 'message.delivered':
        if (this.setDeliveredPointer(data.room_id, data.user_id, data.message_id)) {
          this.emit('messages', { roomId: data.room_id });
        }
        break;
      case 'message.read':
        if (this.setReadPointer(data.room_id, data.user_id, data.message_id)) {
          this.emit('messages', { roomId: data.room_id });
        }
        break;
      case 'unread': {
        const room = this.rooms.get(data.room_id);
        if (room) {
          room.unread_count = data.unread_count;
          room.mention_count = data.mention_count;
          this.emit('rooms');
        }
        break;
      }
      case 'typing':
        if (data.user_id !== this.me.id) {
          this.setTyping(data.room_id, data.user_id, data.active);
          if (data.active) this.fetchUser(data.user_id);
        }
        break;
      case 'resync': // a server node was lost: what it had stored may not have been announced
        this.resync();
        break;
      case 'presence': {
        const u = this.users.get(data.user_id);
        if (!u) break;
        this.users.set(u.id, { ...u, online: data.online }); // new: see setUser
        if (u === this.me) this.me = this.users.get(u.id);
        this.emit('users', { id: data.user_id });
        break;
      }
      case 'user.updated': { // a profile changed: names, avatars and status re-render at once
        // Its `online` was read when it was sent: the presence held since is as new or newer.
        const online = this.users.get(data.user.id)?.online ?? data.user.online;
        this.setUser({ ...data.user, online });
        break;
      }
      case 'room.created':
      case 'room.updated':
      case 'room.member_added':
        this.refreshNewContacts(type, data);
        this.refreshRoom(data.room.id);
        break;
      case 'room.member_removed':
        // `actor_id`: who removed me, or me leaving in another tab.
        if (data.user_id === this.me.id) this.dropRoom(data.room.id, { name: data.room.name, actorId: data.actor_id });
        else this.refreshRoom(data.room.id);
        break;
      default:
        break;
    }
  },
};
