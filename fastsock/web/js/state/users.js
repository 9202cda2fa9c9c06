// People: profiles fetched on demand, then kept fresh by the server's `user.updated` events
// (state/live.js), and fetched again after a resync (the events missed are not replayed).
// Methods of the Store (store.js), mixed into its prototype.

import * as api from '../api.js';

const REFETCH_BATCH = 10; // profiles fetched at once after a resync

// The name of a profile held, as store.displayName shows it.
const shownName = (u) => `${u.display_name || u.username}${u.deactivated ? ' (deactivated)' : ''}`;

export const users = {
  user(id) { return this.users.get(id); },

  // A person's name wherever it is shown (senders, quotes, chips, lists, notifications):
  // marked "(deactivated)" when the account is (docs/web-client.md "Deactivated people").
  displayName(id) {
    const u = this.users.get(id);
    if (u) return shownName(u);
    this.fetchUser(id);
    return '…';
  },

  fetchUser(id, { maxAge = Infinity } = {}) {
    const at = this.userFetchedAt.get(id);
    if (at && Date.now() - at < maxAge) return Promise.resolve(this.users.get(id));
    if (this.userPending.has(id)) return this.userPending.get(id);
    const before = this.users.get(id);
    const p = api.get(`/users/${id}`).then((u) => {
      // A `user.updated` that came meanwhile may be newer than this answer: it stays.
      if (this.users.get(id) !== before) return this.users.get(id);
      this.setUser(u);
      return u;
    }).catch(() => null).finally(() => this.userPending.delete(id));
    this.userPending.set(id, p);
    return p;
  },

  // A profile as the server shows it (`GET /users/{id}`, a `user.updated` event): everything
  // showing people re-renders on the `users` event, unless nothing changed. A new object each
  // time a profile changes (also its presence): fetchUser tells by it that one came meanwhile.
  setUser(u) {
    this.userFetchedAt.set(u.id, Date.now());
    const held = this.users.get(u.id);
    const keys = new Set([...Object.keys(u), ...Object.keys(held || {})]);
    if (held && [...keys].every((k) => held[k] === u[k])) return;
    this.users.set(u.id, u);
    if (u.id === this.me?.id) this.me = u;
    this.emit('users', { id: u.id });
  },

  // The people on screen: the open room's members and every DM partner.
  visibleUserIds() {
    const ids = new Set();
    const room = this.rooms.get(this.currentRoom);
    if (room) room.member_ids.forEach((id) => ids.add(id));
    for (const r of this.rooms.values()) if (r.kind === 'direct') r.member_ids.forEach((id) => ids.add(id));
    ids.delete(this.me?.id);
    return ids;
  },

  // After a resync: the `user.updated` events (and `presence`) missed meanwhile are not
  // replayed, so refetch every profile held (also ours: another tab may have changed it), the
  // people on screen first, a few at a time; not while the socket is down again.
  async refetchUsers() {
    const todo = [...new Set([...this.visibleUserIds(), ...this.users.keys()])];
    for (let i = 0; i < todo.length && !this.peersUnknown; i += REFETCH_BATCH) {
      await Promise.all(todo.slice(i, i + REFETCH_BATCH).map((id) => this.fetchUser(id, { maxAge: 0 })));
    }
  },

  // The socket is down: other people's presence is unknown (`online: null`) until it is back,
  // not what it last was. That is kept for a resume, which replays only the changes.
  forgetPresence() {
    this.presenceBefore = new Map();
    for (const [id, u] of this.users) {
      if (id === this.me?.id) continue;
      this.presenceBefore.set(id, u.online);
      u.online = null;
    }
    this.emit('users', {});
  },

  // Resumed: presence is what it was (the replayed `presence` events follow). A profile
  // fetched meanwhile already says more.
  restorePresence() {
    for (const [id, online] of this.presenceBefore || []) {
      const u = this.users.get(id);
      if (u && u.online === null) u.online = online;
    }
    this.presenceBefore = null;
    this.emit('users', {});
  },
};
