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
    if (fromLive && w?.catching) for (const list of w.catching) list.push(msg);
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

  // Live messages that arrive while a page of `w` is in flight, to be merged once it is in:
  // the server may have read the page before they were stored. `done()` stops collecting.
  catchLive(w) {
    const list = [];
    w.catching ??= new Set();
    w.catching.add(list);
    return { list, done: () => w.catching.delete(list) };
  },

  // Replace a room's window with a freshly loaded slice (newest page, first unread, search
  // jump): `fetch` returns [messages, {hasOlder, hasNewer, focus?}]. Live messages arriving
  // meanwhile are merged in (a reply sent right before "jump to latest"). Only the latest
  // reset of a room lands: an earlier one still in flight (the room opened, left and opened
  // again) is dropped, as are pages still in flight for the old window.
  async resetWindow(roomId, fetch) {
    const old = this.win(roomId);
    const run = {};
    old.latestReset = run;
    const live = this.catchLive(old);
    try {
      const [messages, { hasOlder, hasNewer, focus }] = await fetch();
      if (old.latestReset !== run || this.windows.get(roomId) !== old) return;
      const w = { byId: new Map(), hasOlder, hasNewer, loaded: true };
      for (const m of messages) w.byId.set(m.id, m);
      this.windows.set(roomId, w);
      for (const m of live.list) this.upsert(m); // where they fall inside the new window
      this.confirmDelivery(messages);
      this.emit('messages', { roomId, reset: true, focus });
    } finally {
      live.done();
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

  loadOlder(roomId) {
    return this.extend(roomId, 'older');
  },

  loadNewer(roomId) {
    return this.extend(roomId, 'newer');
  },

  // Load the next page at one end of the window; resolves true if it brought messages.
  async extend(roomId, end) {
    const w = this.win(roomId);
    const older = end === 'older';
    const flag = older ? 'loadingOlder' : 'loadingNewer';
    if (!(older ? w.hasOlder : w.hasNewer) || w[flag]) return false;
    const ids = [...w.byId.keys()].sort(cmpId);
    if (!ids.length) return false;
    w[flag] = true;
    const live = this.catchLive(w);
    try {
      const cursor = older ? `before=${ids[0]}` : `after=${ids[ids.length - 1]}`;
      const page = await api.get(`/history/room/${roomId}?${cursor}&limit=${PAGE}`);
      if (this.windows.get(roomId) !== w) return false; // reset meanwhile
      if (older) w.hasOlder = page.has_more; else w.hasNewer = page.has_more;
      for (const m of page.messages) w.byId.set(m.id, m);
      // What the window left out while the page was in flight may belong to it now (a live
      // message after its newest one, when this was the last newer page), or be newer than
      // the page (read before the message was stored or changed).
      for (const m of live.list) {
        const known = w.byId.get(m.id);
        if (!known || m.version > known.version) this.upsert(m);
      }
      this.confirmDelivery(page.messages);
      this.emit('messages', { roomId, [older ? 'prepended' : 'appended']: true });
      return page.messages.length > 0;
    } finally {
      w[flag] = false;
      live.done();
    }
  },

  // Load the history around one message (`target`: it, or just its {id}), in place of the
  // window: a search result or the original of a reply far back. Paging goes on from there
  // both ways (has_more, has_newer); pending sends show again once the newest page is in.
  loadAround(roomId, target) {
    return this.resetWindow(roomId, async () => {
      const page = await api.get(`/history/room/${roomId}?around=${target.id}&limit=${PAGE}`);
      return [page.messages, { hasOlder: page.has_more, hasNewer: page.has_newer, focus: target.id }];
    });
  },

  // Show one message of a room (a reply's original): a loaded one at once, the conversation
  // scrolling to and highlighting the `focus` as after a reset; else the history around it.
  async showMessage(roomId, id) {
    if (this.findMessage(roomId, id)) this.emit('messages', { roomId, reset: true, focus: id });
    else await this.loadAround(roomId, { id });
  },

  // The loaded replies to `original` quote it as it is now (edited, deleted): the server
  // resolves `reply_to` when read, and announces only the original's own change.
  refreshQuotes(original) {
    const w = this.windows.get(original.room_id);
    for (const [id, m] of w?.byId || []) {
      if (m.reply_to?.id !== original.id) continue;
      const text = original.deleted ? '' : (original.text || '').slice(0, 200);
      w.byId.set(id, { ...m, reply_to: { ...m.reply_to, text, deleted: Boolean(original.deleted) } });
    }
  },

  findMessage(roomId, id) {
    return this.windows.get(roomId)?.byId.get(id);
  },
};
