// People: profiles fetched on demand and kept fresh while on screen.
// Methods of the Store (store.js), mixed into its prototype.

import * as api from '../api.js';

const REFRESH_AGE = 20000; // a profile fetched this recently is not refreshed
const PRESENCE_BATCH = 10; // profiles fetched at once after a resync

export const users = {
  user(id) { return this.users.get(id); },

  displayName(id) {
    const u = this.users.get(id);
    if (u) return u.display_name || u.username;
    this.fetchUser(id);
    return '…';
  },

  fetchUser(id, { maxAge = Infinity } = {}) {
    const at = this.userFetchedAt.get(id);
    if (at && Date.now() - at < maxAge) return Promise.resolve(this.users.get(id));
    if (this.userPending.has(id)) return this.userPending.get(id);
    const p = api.get(`/users/${id}`).then((u) => {
      this.users.set(id, u);
      this.userFetchedAt.set(id, Date.now());
      if (id === this.me?.id) this.me = u;
      this.emit('users', { id });
      return u;
    }).catch(() => null).finally(() => this.userPending.delete(id));
    this.userPending.set(id, p);
    return p;
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

  // Every 30 s (store.js): at most 50 of the people on screen not fetched in the last 20 s,
  // the least recently fetched first, so that a longer list is refreshed in turns.
  refreshVisibleUsers() {
    const age = (id) => Date.now() - (this.userFetchedAt.get(id) || 0);
    const stale = [...this.visibleUserIds()].filter((id) => age(id) >= REFRESH_AGE);
    stale.sort((a, b) => age(b) - age(a)).slice(0, 50).forEach((id) => this.fetchUser(id, { maxAge: REFRESH_AGE }));
  },

  // After a resync nothing says who is online: refetch everyone whose presence is unknown,
  // the people on screen first, a few at a time; not while the socket is down again.
  async refetchUnknownPresence() {
    const unknown = (id) => id !== this.me?.id && this.users.get(id)?.online === null;
    const ids = new Set([...this.visibleUserIds()].filter(unknown));
    for (const id of this.users.keys()) if (unknown(id)) ids.add(id);
    const todo = [...ids];
    for (let i = 0; i < todo.length && !this.peersUnknown; i += PRESENCE_BATCH) {
      await Promise.all(todo.slice(i, i + PRESENCE_BATCH).map((id) => this.fetchUser(id, { maxAge: 0 })));
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
