// Edits, deletes and reactions: applied optimistically, rolled back when the server refuses.
// Methods of the Store (store.js), mixed into its prototype.

export const edits = {
  async editMessage(msg, text) {
    const w = this.windows.get(msg.room_id);
    const before = w.byId.get(msg.id);
    w.byId.set(msg.id, { ...before, text, edited_at: new Date().toISOString(), state: 'editing' });
    this.emit('messages', { roomId: msg.room_id });
    try {
      const { message } = await this.socket.request('message.edit', { message_id: msg.id, text });
      this.upsert(message);
      const cur = w.byId.get(msg.id);
      if (cur) delete cur.state;
      this.emit('messages', { roomId: msg.room_id });
    } catch (err) {
      this.rollBack(w, before, 'edit', err);
    }
  },

  async deleteMessage(msg) {
    const w = this.windows.get(msg.room_id);
    const before = w.byId.get(msg.id);
    w.byId.set(msg.id, { ...before, deleted: true, text: '', attachments: [], reactions: {} });
    this.emit('messages', { roomId: msg.room_id });
    try {
      const { message } = await this.socket.request('message.delete', { message_id: msg.id });
      if (message) this.upsert(message);
      this.emit('messages', { roomId: msg.room_id });
    } catch (err) {
      this.rollBack(w, before, 'delete', err);
    }
  },

  // An optimistic change the server refused: restore the message unless a newer version
  // arrived meanwhile, and say so.
  rollBack(w, before, verb, err) {
    const cur = w.byId.get(before.id);
    if (cur && cur.version === before.version) w.byId.set(before.id, before);
    this.emit('messages', { roomId: before.room_id });
    this.emit('toast', { kind: 'error', text: `Couldn't ${verb} the message: ${err.message}` });
  },

  async toggleReaction(msg, emoji) {
    const mine = (msg.reactions[emoji] || []).includes(this.me.id);
    const w = this.windows.get(msg.room_id);
    const before = w.byId.get(msg.id);
    const users = new Set(before.reactions[emoji] || []);
    if (mine) users.delete(this.me.id); else users.add(this.me.id);
    const reactions = { ...before.reactions, [emoji]: [...users] };
    if (!users.size) delete reactions[emoji];
    w.byId.set(msg.id, { ...before, reactions });
    this.emit('messages', { roomId: msg.room_id });
    try {
      const res = await this.socket.request(mine ? 'reaction.remove' : 'reaction.add', { message_id: msg.id, emoji });
      this.applyReactions(res);
    } catch (err) {
      const cur = w.byId.get(msg.id);
      if (cur) w.byId.set(msg.id, { ...cur, reactions: before.reactions });
      this.emit('messages', { roomId: msg.room_id });
      this.emit('toast', { kind: 'error', text: `Couldn't react: ${err.message}` });
    }
  },

  applyReactions(data) {
    const w = this.windows.get(data.room_id);
    const msg = w?.byId.get(data.message_id);
    if (!msg || data.version < msg.version) return;
    w.byId.set(msg.id, { ...msg, reactions: data.reactions, version: data.version });
    this.emit('messages', { roomId: data.room_id });
  },
};
