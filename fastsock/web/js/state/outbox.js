// Sending: optimistic local messages, kept in localStorage until the server acknowledges them.
// Methods of the Store (store.js), mixed into its prototype.

import { uid } from './util.js';

// Refusals that sending the same message again cannot change (a non-admin's `@room`, a reply
// to a message that went away): the row offers Edit and Delete, no Retry.
const PERMANENT = new Set(['forbidden', 'invalid_request', 'conflict', 'not_found']);

export const outbox = {
  // `replyTo`: the original as the reply will show it (views/replies.js localReplyTo), or null.
  sendMessage(roomId, text, attachments = [], replyTo = null) {
    const cid = uid();
    const local = {
      id: null,
      client_msg_id: cid,
      room_id: roomId,
      sender_id: this.me.id,
      text,
      attachments,
      reply_to: replyTo,
      created_at: new Date().toISOString(),
      deleted: false,
      reactions: {},
      version: 0,
      state: 'sending',
    };
    this.pending.set(cid, local);
    this.persistOutbox();
    this.emit('messages', { roomId, sent: true });
    this.dispatchSend(local);
    return cid;
  },

  // Unanswered sends survive a reload: they are kept in localStorage and sent again (with the
  // same client_msg_id, so the server deduplicates) when the app starts.
  outboxKey() { return `fs.outbox.${this.me.id}`; },

  // Storage full: the oldest drafts make room (an unsent message matters more); if it is still
  // full, the message is sent all the same, and only a reload before its ack would lose it.
  persistOutbox() {
    if (!this.me) return;
    const items = [...this.pending.values()].map(({ client_msg_id, room_id, text, attachments, reply_to, created_at, state, error, permanent }) => ({ client_msg_id, room_id, text, attachments, reply_to, created_at, state, error, permanent }));
    if (!items.length) { localStorage.removeItem(this.outboxKey()); return; }
    const value = JSON.stringify(items);
    for (;;) {
      try {
        localStorage.setItem(this.outboxKey(), value);
        return;
      } catch {
        if (!this.dropOldestDraft()) return;
      }
    }
  },

  // Logging out: unsent messages are text not to leave behind on a shared computer.
  forgetOutbox() { localStorage.removeItem(this.outboxKey()); },

  restoreOutbox() {
    let items = [];
    try { items = JSON.parse(localStorage.getItem(this.outboxKey()) || '[]'); } catch { /* ignore */ }
    for (const item of items) {
      if (!this.rooms.has(item.room_id) || this.pending.has(item.client_msg_id)) continue;
      const local = { reply_to: null, ...item, id: null, sender_id: this.me.id, deleted: false, reactions: {}, version: 0 };
      this.pending.set(local.client_msg_id, local);
      if (local.state !== 'failed') { local.state = 'sending'; this.dispatchSend(local); }
    }
    this.persistOutbox();
  },

  dispatchSend(local) {
    const data = { room_id: local.room_id, client_msg_id: local.client_msg_id, text: local.text };
    if (local.attachments.length) data.attachment_ids = local.attachments.map((a) => a.id);
    if (local.reply_to) data.reply_to_id = local.reply_to.id;
    this.socket.request('message.send', data).catch((err) => {
      const p = this.pending.get(local.client_msg_id);
      if (!p) return;
      p.state = 'failed';
      // The server's reason; a long rate limit's says when to send again (the socket
      // retries short ones by itself, socket.js), and Retry stays.
      p.error = err.message;
      p.permanent = PERMANENT.has(err.code);
      this.persistOutbox();
      this.emit('messages', { roomId: local.room_id });
    });
  },

  retrySend(cid) {
    const p = this.pending.get(cid);
    if (!p) return;
    p.state = 'sending';
    p.error = null;
    p.permanent = false;
    this.persistOutbox();
    this.emit('messages', { roomId: p.room_id });
    this.dispatchSend(p);
  },

  // A refused message back into the composer to be changed (views/composer.js), not kept.
  editUnsent(cid) {
    const p = this.pending.get(cid);
    if (!p) return;
    this.discardSend(cid);
    this.emit('edit-unsent', { message: p });
  },

  discardSend(cid) {
    const p = this.pending.get(cid);
    if (!p) return;
    this.pending.delete(cid);
    this.persistOutbox();
    this.emit('messages', { roomId: p.room_id });
  },
};
