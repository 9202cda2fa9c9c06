// People: profiles fetched on demand and kept fresh while on screen.
// Methods of the Store (store.js), mixed into its prototype.

import * as api from '../api.js';

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
  refreshVisibleUsers({ maxAge = 20000 } = {}) {
    const ids = new Set();
    const room = this.rooms.get(this.currentRoom);
    if (room) room.member_ids.forEach((id) => ids.add(id));
    for (const r of this.rooms.values()) if (r.kind === 'direct') r.member_ids.forEach((id) => ids.add(id));
    ids.delete(this.me?.id);
    [...ids].slice(0, 50).forEach((id) => this.fetchUser(id, { maxAge }));
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
