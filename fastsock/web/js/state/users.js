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

  refreshVisibleUsers() {
    const ids = new Set();
    const room = this.rooms.get(this.currentRoom);
    if (room) room.member_ids.forEach((id) => ids.add(id));
    for (const r of this.rooms.values()) if (r.kind === 'direct') r.member_ids.forEach((id) => ids.add(id));
    ids.delete(this.me?.id);
    [...ids].slice(0, 50).forEach((id) => this.fetchUser(id, { maxAge: 20000 }));
  },
};
