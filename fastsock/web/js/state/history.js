// Message windows: the loaded slice of each room's history and the pages that extend it.
// Methods of the Store (store.js), mixed into its prototype.

import * as api from '../api.js';
import { cmpId, PAGE } from './util.js';

// An `after` cursor below every message id (ids are 24 hex digits): the history from its start.
const BEFORE_ALL = '0'.repeat(24);

export const history = {
  win(roomId) {
    let w = this.windows.get(roomId);
    if (!w) {
      w = { byId: new Map(), hasOlder: true, hasNewer: false, loaded: false };
      this.windows.set(roomId, w);
    }
    return w;
  },

  messagesOf(roomId) {
    const w = this.windows.get(roomId);
    const list = w ? [...w.byId.values()].sort((a, b) => cmpId(a.id, b.id)) : [];
    if (!w || !w.hasNewer) {
      for (const p of this.pending.values()) if (p.room_id === roomId) list.push(p);
    }
    return list;
  },

  upsert(msg, { fromLive = false } = {}) {
    const w = this.windows.get(msg.room_id);
    if (fromLive && w?.arrived) w.arrived.push(msg);
    if (!w || !w.loaded) return false;
    const known = w.byId.get(msg.id);
    if (known) {
      if (msg.version < known.version) return false;
      w.byId.set(msg.id, { ...known, ...msg });
      return true;
    }
    const ids = [...w.byId.keys()];
    const oldest = ids.length ? ids.reduce((a, b) => (a < b ? a : b)) : null;
    const newest = ids.length ? ids.reduce((a, b) => (a > b ? a : b)) : null;
    if (oldest && msg.id < oldest && w.hasOlder) return false; // outside the loaded window
    if (newest && msg.id > newest && w.hasNewer) return false;
    if (!fromLive && !oldest && w.hasOlder) return false;
    w.byId.set(msg.id, msg);
    return true;
  },

  // Replace a room's window with a freshly loaded slice (newest page, first unread, search
  // jump): `fetch` returns [messages, {hasOlder, hasNewer, focus?}]. Live messages arriving
  // meanwhile are merged in, since the pages may have been read before they were stored (a
  // reply sent right before "jump to latest"). Pages still in flight for the old window land
  // in the old object and are dropped.
  async resetWindow(roomId, fetch) {
    const old = this.win(roomId);
    old.arrived = [];
    try {
      const [messages, { hasOlder, hasNewer, focus }] = await fetch();
      const w = { byId: new Map(), hasOlder, hasNewer, loaded: true };
      for (const m of messages) w.byId.set(m.id, m);
      this.windows.set(roomId, w);
      for (const m of old.arrived) this.upsert(m); // where they fall inside the new window
      this.confirmDelivery(messages);
      this.loadReceipts(roomId);
      this.emit('messages', { roomId, reset: true, focus });
    } finally {
      old.arrived = null;
    }
  },

  async newestPage(roomId) {
    const page = await api.get(`/history/room/${roomId}?limit=${PAGE}`);
    return [page.messages, { hasOlder: page.has_more, hasNewer: false }];
  },

  loadLatest(roomId) {
    return this.resetWindow(roomId, () => this.newestPage(roomId));
  },

  // Open a room at my first unread message: the oldest unread page after my read pointer,
  // then the page before it (my read pointer's message and what precedes it). Without a
  // pointer every message is unread: the history from its very first message.
  loadUnread(roomId, lastRead) {
    return this.resetWindow(roomId, async () => {
      const newer = await api.get(`/history/room/${roomId}?after=${lastRead || BEFORE_ALL}&limit=${PAGE}`);
      if (!newer.messages.length) return this.newestPage(roomId); // nothing after it after all
      const first = newer.messages[newer.messages.length - 1].id; // pages are newest-first
      const older = lastRead
        ? await api.get(`/history/room/${roomId}?before=${first}&limit=${PAGE}`)
        : { messages: [], has_more: false };
      return [[...older.messages, ...newer.messages], { hasOlder: older.has_more, hasNewer: newer.has_more }];
    });
  },

  async loadOlder(roomId) {
    const w = this.win(roomId);
    if (!w.hasOlder || w.loadingOlder) return false;
    const ids = [...w.byId.keys()].sort(cmpId);
    if (!ids.length) return false;
    w.loadingOlder = true;
    try {
      const page = await api.get(`/history/room/${roomId}?before=${ids[0]}&limit=${PAGE}`);
      if (this.windows.get(roomId) !== w) return false; // reset meanwhile
      w.hasOlder = page.has_more;
      for (const m of page.messages) w.byId.set(m.id, m);
      this.confirmDelivery(page.messages);
      this.emit('messages', { roomId, prepended: true });
      return page.messages.length > 0;
    } finally {
      w.loadingOlder = false;
    }
  },

  async loadNewer(roomId) {
    const w = this.win(roomId);
    if (!w.hasNewer || w.loadingNewer) return false;
    const ids = [...w.byId.keys()].sort(cmpId);
    if (!ids.length) return false;
    w.loadingNewer = true;
    try {
      const page = await api.get(`/history/room/${roomId}?after=${ids[ids.length - 1]}&limit=${PAGE}`);
      if (this.windows.get(roomId) !== w) return false;
      w.hasNewer = page.has_more;
      for (const m of page.messages) w.byId.set(m.id, m);
      this.confirmDelivery(page.messages);
      this.emit('messages', { roomId, appended: true });
      return page.messages.length > 0;
    } finally {
      w.loadingNewer = false;
    }
  },

  // Load the history around one message (search results jump here).
  loadAround(roomId, msg) {
    return this.resetWindow(roomId, async () => {
      const [older, newer] = await Promise.all([
        api.get(`/history/room/${roomId}?before=${msg.id}&limit=20`),
        api.get(`/history/room/${roomId}?after=${msg.id}&limit=20`),
      ]);
      return [[...older.messages, msg, ...newer.messages], { hasOlder: older.has_more, hasNewer: newer.has_more, focus: msg.id }];
    });
  },

  findMessage(roomId, id) {
    return this.windows.get(roomId)?.byId.get(id);
  },
};
