// Message windows: the loaded slice of each room's history and the pages that extend it.
// Methods of the Store (store.js), mixed into its prototype.

import * as api from '../api.js';
import { cmpId, PAGE } from './util.js';

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

  async loadLatest(roomId) {
    const w = this.win(roomId);
    const page = await api.get(`/history/room/${roomId}?limit=${PAGE}`);
    w.byId.clear();
    w.loaded = true;
    w.hasOlder = page.has_more;
    w.hasNewer = false;
    for (const m of page.messages) w.byId.set(m.id, m);
    this.confirmDelivery(page.messages);
    this.loadReceipts(roomId);
    this.emit('messages', { roomId, reset: true });
  },

  async loadOlder(roomId) {
    const w = this.win(roomId);
    if (!w.hasOlder || w.loadingOlder) return false;
    const ids = [...w.byId.keys()].sort(cmpId);
    if (!ids.length) return false;
    w.loadingOlder = true;
    try {
      const page = await api.get(`/history/room/${roomId}?before=${ids[0]}&limit=${PAGE}`);
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
    w.loadingNewer = true;
    try {
      const page = await api.get(`/history/room/${roomId}?after=${ids[ids.length - 1]}&limit=${PAGE}`);
      w.hasNewer = page.has_more;
      for (const m of page.messages) w.byId.set(m.id, m);
      this.confirmDelivery(page.messages);
      this.emit('messages', { roomId });
      return true;
    } finally {
      w.loadingNewer = false;
    }
  },

  // Load the history around one message (search results jump here).
  async loadAround(roomId, msg) {
    const w = this.win(roomId);
    const [older, newer] = await Promise.all([
      api.get(`/history/room/${roomId}?before=${msg.id}&limit=20`),
      api.get(`/history/room/${roomId}?after=${msg.id}&limit=20`),
    ]);
    w.byId.clear();
    w.loaded = true;
    w.hasOlder = older.has_more;
    w.hasNewer = newer.has_more;
    w.byId.set(msg.id, msg);
    for (const m of [...older.messages, ...newer.messages]) w.byId.set(m.id, m);
    this.confirmDelivery([...older.messages, ...newer.messages]);
    this.emit('messages', { roomId, reset: true, focus: msg.id });
  },

  findMessage(roomId, id) {
    return this.windows.get(roomId)?.byId.get(id);
  },
};
