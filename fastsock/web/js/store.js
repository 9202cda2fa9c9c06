// Application state and its event stream. Views subscribe with store.on(name, fn).
// Server frames and REST pages are applied here; the rules follow tests/sync_client.py:
// upsert by version, tombstones on delete, read pointers only move forward, and the per-room
// sync point advances only from `changed_after` pages.

import * as api from './api.js';
import { Socket } from './socket.js';

const PAGE = 40;
const cmpId = (a, b) => (a < b ? -1 : a > b ? 1 : 0);
const uid = () => (crypto.randomUUID ? crypto.randomUUID().replace(/-/g, '') : `${Date.now()}${Math.random()}`.replace('.', ''));

class Store extends EventTarget {
  constructor() {
    super();
    this.socket = new Socket();
    this.reset();
    this.socket.addEventListener('frame', (ev) => this.onFrame(ev.detail));
    this.socket.addEventListener('ready', (ev) => this.onReady(ev.detail));
    this.socket.addEventListener('status', (ev) => this.emit('connection', ev.detail));
    this.socket.addEventListener('authlost', () => this.emit('authlost'));
    api.onAuthLost(() => this.emit('authlost'));
    this.deliverQueue = new Set();
    this.deliverTimer = null;
  }

  reset() {
    this.me = null;
    this.users = new Map(); // id -> user
    this.userFetchedAt = new Map();
    this.userPending = new Map();
    this.rooms = new Map(); // id -> room (from GET /rooms, kept up to date)
    this.details = new Map(); // id -> GET /rooms/{id}
    this.windows = new Map(); // room id -> {byId, hasOlder, hasNewer, loaded}
    this.pending = new Map(); // client_msg_id -> local message (sending/failed)
    this.readPointers = new Map(); // room id -> Map(user id -> message id)
    this.deliveredTo = new Map(); // message id -> Set(user ids)
    this.typing = new Map(); // room id -> Map(user id -> expiry timer)
    this.synced = new Map(); // room id -> version
    this.confirmed = new Set(); // message ids we already confirmed delivery of
    this.currentRoom = null;
  }

  on(name, fn) {
    const h = (ev) => fn(ev.detail);
    this.addEventListener(name, h);
    return () => this.removeEventListener(name, h);
  }

  emit(name, detail) { this.dispatchEvent(new CustomEvent(name, { detail })); }

  // --- session ------------------------------------------------------------------------------

  async start(me) {
    this.me = me;
    this.users.set(me.id, me);
    this.userFetchedAt.set(me.id, Date.now());
    await this.loadRooms();
    this.restoreOutbox();
    this.socket.start();
    clearInterval(this.refreshTimer);
    // The server has no `user.updated` event: refresh the people on screen periodically.
    this.refreshTimer = setInterval(() => this.refreshVisibleUsers(), 30000);
  }

  stop() {
    clearInterval(this.refreshTimer);
    this.socket.stop();
    this.reset();
  }

  // --- users --------------------------------------------------------------------------------

  user(id) { return this.users.get(id); }

  displayName(id) {
    const u = this.users.get(id);
    if (u) return u.display_name || u.username;
    this.fetchUser(id);
    return '…';
  }

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
  }

  refreshVisibleUsers() {
    const ids = new Set();
    const room = this.rooms.get(this.currentRoom);
    if (room) room.member_ids.forEach((id) => ids.add(id));
    for (const r of this.rooms.values()) if (r.kind === 'direct') r.member_ids.forEach((id) => ids.add(id));
    ids.delete(this.me?.id);
    [...ids].slice(0, 50).forEach((id) => this.fetchUser(id, { maxAge: 20000 }));
  }

  // --- rooms --------------------------------------------------------------------------------

  async loadRooms() {
    const { rooms } = await api.get('/rooms');
    const seen = new Set();
    for (const r of rooms) {
      seen.add(r.id);
      // A live message may have arrived while this list was in flight: keep what is newer.
      const known = this.rooms.get(r.id);
      if (known && (known.version || 0) > r.version) {
        r.last_activity_at = known.last_activity_at;
        r.last_message = known.last_message;
        r.unread_count = known.unread_count;
        r.version = known.version;
      }
      this.rooms.set(r.id, r);
      if (!this.synced.has(r.id)) this.synced.set(r.id, r.version);
      for (const id of r.member_ids) if (!this.users.has(id) && r.kind === 'direct') this.fetchUser(id);
      this.setReadPointer(r.id, this.me.id, r.last_read_message_id);
    }
    for (const id of [...this.rooms.keys()]) if (!seen.has(id)) this.dropRoom(id);
    this.emit('rooms');
    this.confirmUnread(rooms);
  }

  // Messages that reached this device through the room list count as delivered: confirm the
  // unread ones of each room (the ones the sender is waiting on), not only opened rooms.
  async confirmUnread(rooms) {
    const todo = rooms.filter((r) => r.unread_count > 0 && r.last_message).slice(0, 20);
    for (const r of todo) {
      if (r.unread_count === 1 || !r.last_read_message_id) {
        this.confirmDelivery([r.last_message]);
        if (r.unread_count === 1) continue;
      }
      const after = r.last_read_message_id ? `&after=${r.last_read_message_id}` : '';
      try {
        const page = await api.get(`/history/room/${r.id}?limit=${Math.min(100, r.unread_count)}${after}`);
        this.confirmDelivery(page.messages);
      } catch { /* best effort */ }
    }
  }

  dropRoom(id) {
    this.rooms.delete(id);
    this.windows.delete(id);
    this.details.delete(id);
    if (this.currentRoom === id) {
      this.currentRoom = null;
      this.emit('room-closed', { id });
    }
    this.emit('rooms');
  }

  sortedRooms() {
    return [...this.rooms.values()].sort((a, b) => cmpId(b.last_activity_at, a.last_activity_at));
  }

  roomName(room) {
    if (!room) return '';
    if (room.kind === 'direct') {
      const other = room.member_ids.find((id) => id !== this.me.id) || this.me.id;
      return this.displayName(other);
    }
    return room.name || 'Untitled group';
  }

  dmPartner(room) {
    return room.kind === 'direct' ? room.member_ids.find((id) => id !== this.me.id) : null;
  }

  unreadTotal() {
    let n = 0;
    for (const r of this.rooms.values()) n += r.unread_count || 0;
    return n;
  }

  async loadDetail(roomId) {
    const detail = await api.get(`/rooms/${roomId}`);
    this.details.set(roomId, detail);
    for (const m of detail.members) {
      if (m.last_read_message_id) this.setReadPointer(roomId, m.user_id, m.last_read_message_id);
      if (!this.users.has(m.user_id)) this.fetchUser(m.user_id);
    }
    this.emit('messages', { roomId });
    return detail;
  }

  setReadPointer(roomId, userId, messageId) {
    if (!messageId) return false;
    let map = this.readPointers.get(roomId);
    if (!map) { map = new Map(); this.readPointers.set(roomId, map); }
    const cur = map.get(userId);
    if (cur && cur >= messageId) return false;
    map.set(userId, messageId);
    return true;
  }

  readersOf(msg) {
    const map = this.readPointers.get(msg.room_id);
    const out = [];
    if (!map) return out;
    for (const [userId, ptr] of map) if (userId !== msg.sender_id && ptr >= msg.id) out.push(userId);
    return out;
  }

  // --- message windows ------------------------------------------------------------------------

  win(roomId) {
    let w = this.windows.get(roomId);
    if (!w) {
      w = { byId: new Map(), hasOlder: true, hasNewer: false, loaded: false };
      this.windows.set(roomId, w);
    }
    return w;
  }

  messagesOf(roomId) {
    const w = this.windows.get(roomId);
    const list = w ? [...w.byId.values()].sort((a, b) => cmpId(a.id, b.id)) : [];
    if (!w || !w.hasNewer) {
      for (const p of this.pending.values()) if (p.room_id === roomId) list.push(p);
    }
    return list;
  }

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
  }

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
  }

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
  }

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
  }

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
  }

  // Delivery receipts for my recent messages not yet read by everyone (after a load).
  async loadReceipts(roomId) {
    const room = this.rooms.get(roomId);
    if (!room) return;
    const mine = this.messagesOf(roomId).filter((m) => m.id && m.sender_id === this.me.id && !m.deleted);
    const others = room.member_count - 1;
    const todo = mine.filter((m) => this.readersOf(m).length < others).slice(-5);
    await Promise.all(todo.map(async (m) => {
      try {
        const { receipts } = await api.get(`/messages/${m.id}/receipts`);
        const set = this.deliveredTo.get(m.id) || new Set();
        for (const r of receipts) {
          if (r.delivered_at) set.add(r.user_id);
        }
        this.deliveredTo.set(m.id, set);
      } catch { /* receipts are a nicety */ }
    }));
    if (todo.length) this.emit('messages', { roomId });
  }

  confirmDelivery(messages) {
    for (const m of messages) {
      if (m.sender_id !== this.me.id && !m.deleted && !this.confirmed.has(m.id)) {
        this.deliverQueue.add(m.id);
      }
    }
    if (this.deliverQueue.size && !this.deliverTimer) {
      this.deliverTimer = setTimeout(() => this.flushDelivered(), 150);
    }
  }

  flushDelivered() {
    this.deliverTimer = null;
    const ids = [...this.deliverQueue];
    this.deliverQueue.clear();
    for (let i = 0; i < ids.length; i += 100) {
      const chunk = ids.slice(i, i + 100);
      chunk.forEach((id) => this.confirmed.add(id));
      this.socket.request('message.delivered', { message_ids: chunk }).catch(() => {});
    }
  }

  // --- actions ------------------------------------------------------------------------------

  sendMessage(roomId, text, attachments = []) {
    const cid = uid();
    const local = {
      id: null,
      client_msg_id: cid,
      room_id: roomId,
      sender_id: this.me.id,
      text,
      attachments,
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
  }

  // Unanswered sends survive a reload: they are kept in localStorage and sent again (with the
  // same client_msg_id, so the server deduplicates) when the app starts.
  outboxKey() { return `fs.outbox.${this.me.id}`; }

  persistOutbox() {
    if (!this.me) return;
    const items = [...this.pending.values()].map(({ client_msg_id, room_id, text, attachments, created_at, state }) => ({ client_msg_id, room_id, text, attachments, created_at, state }));
    if (items.length) localStorage.setItem(this.outboxKey(), JSON.stringify(items));
    else localStorage.removeItem(this.outboxKey());
  }

  restoreOutbox() {
    let items = [];
    try { items = JSON.parse(localStorage.getItem(this.outboxKey()) || '[]'); } catch { /* ignore */ }
    for (const item of items) {
      if (!this.rooms.has(item.room_id) || this.pending.has(item.client_msg_id)) continue;
      const local = { ...item, id: null, sender_id: this.me.id, deleted: false, reactions: {}, version: 0 };
      this.pending.set(local.client_msg_id, local);
      if (local.state !== 'failed') { local.state = 'sending'; this.dispatchSend(local); }
    }
    this.persistOutbox();
  }

  dispatchSend(local) {
    const data = { room_id: local.room_id, client_msg_id: local.client_msg_id, text: local.text };
    if (local.attachments.length) data.attachment_ids = local.attachments.map((a) => a.id);
    this.socket.request('message.send', data).catch((err) => {
      const p = this.pending.get(local.client_msg_id);
      if (!p) return;
      p.state = 'failed';
      p.error = err.message;
      this.persistOutbox();
      this.emit('messages', { roomId: local.room_id });
    });
  }

  retrySend(cid) {
    const p = this.pending.get(cid);
    if (!p) return;
    p.state = 'sending';
    p.error = null;
    this.persistOutbox();
    this.emit('messages', { roomId: p.room_id });
    this.dispatchSend(p);
  }

  discardSend(cid) {
    const p = this.pending.get(cid);
    if (!p) return;
    this.pending.delete(cid);
    this.persistOutbox();
    this.emit('messages', { roomId: p.room_id });
  }

  findMessage(roomId, id) {
    return this.windows.get(roomId)?.byId.get(id);
  }

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
  }

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
  }

  // An optimistic change the server refused: restore the message unless a newer version
  // arrived meanwhile, and say so.
  rollBack(w, before, verb, err) {
    const cur = w.byId.get(before.id);
    if (cur && cur.version === before.version) w.byId.set(before.id, before);
    this.emit('messages', { roomId: before.room_id });
    this.emit('toast', { kind: 'error', text: `Couldn't ${verb} the message: ${err.message}` });
  }

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
  }

  applyReactions(data) {
    const w = this.windows.get(data.room_id);
    const msg = w?.byId.get(data.message_id);
    if (!msg || data.version < msg.version) return;
    w.byId.set(msg.id, { ...msg, reactions: data.reactions, version: data.version });
    this.emit('messages', { roomId: data.room_id });
  }

  markRead(roomId) {
    const list = this.messagesOf(roomId).filter((m) => m.id);
    const w = this.windows.get(roomId);
    if (!list.length || (w && w.hasNewer)) return;
    const newest = list[list.length - 1].id;
    const room = this.rooms.get(roomId);
    const mine = this.readPointers.get(roomId)?.get(this.me.id);
    if (mine && mine >= newest && !(room && room.unread_count)) return;
    this.setReadPointer(roomId, this.me.id, newest);
    if (room) { room.unread_count = 0; room.last_read_message_id = newest; }
    this.emit('rooms');
    this.socket.request('message.read', { room_id: roomId, message_id: newest }).then((res) => {
      const r = this.rooms.get(roomId);
      if (r && typeof res.unread_count === 'number') { r.unread_count = res.unread_count; this.emit('rooms'); }
    }).catch(() => {});
  }

  // --- typing -------------------------------------------------------------------------------

  typingUsers(roomId) {
    return [...(this.typing.get(roomId)?.keys() || [])];
  }

  setTyping(roomId, userId, active) {
    let map = this.typing.get(roomId);
    if (!map) { map = new Map(); this.typing.set(roomId, map); }
    clearTimeout(map.get(userId));
    if (active) {
      map.set(userId, setTimeout(() => this.setTyping(roomId, userId, false), 7000));
    } else {
      map.delete(userId);
    }
    this.emit('typing', { roomId });
  }

  // --- socket -------------------------------------------------------------------------------

  async onReady({ resume }) {
    // "ok": the missed frames follow. Otherwise (a new session, also on the first connection,
    // which may have missed events since the REST load) refetch what may have changed.
    if (resume === 'ok') return;
    await this.resync();
  }

  // Refetch what changed while away: rooms, every change since each loaded room's sync point
  // (changed_after pages, lowest version first), and the read pointers.
  async resync() {
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
  }

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
        // read pointer past it); missed calls count as unread like messages.
        const seenCall = m.type === 'call' && ['completed', 'declined'].includes(m.call?.outcome);
        if (!mine) {
          this.confirmDelivery([m]);
          this.setTyping(m.room_id, m.sender_id, false);
          this.fetchUser(m.sender_id, { maxAge: 2000 });
          const room = this.rooms.get(m.room_id);
          if (room && !seenCall) room.unread_count = (room.unread_count || 0) + 1;
          if (!seenCall) this.emit('incoming', { message: m });
        }
        this.emit('messages', { roomId: m.room_id, added, incoming: !mine });
        this.emit('rooms');
        break;
      }
      case 'message.updated':
        this.upsert(data.message);
        this.refreshPreview(data.message);
        this.emit('messages', { roomId: data.message.room_id });
        break;
      case 'message.deleted': {
        const w = this.windows.get(data.room_id);
        const m = w?.byId.get(data.message_id);
        if (m) w.byId.set(m.id, { ...m, deleted: true, text: '', reactions: {}, attachments: [] });
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
      case 'message.delivered': {
        const set = this.deliveredTo.get(data.message_id) || new Set();
        set.add(data.user_id);
        this.deliveredTo.set(data.message_id, set);
        this.emit('messages', { roomId: data.room_id });
        break;
      }
      case 'message.read':
        if (this.setReadPointer(data.room_id, data.user_id, data.message_id)) {
          this.emit('messages', { roomId: data.room_id });
        }
        break;
      case 'unread': {
        const room = this.rooms.get(data.room_id);
        if (room) { room.unread_count = data.unread_count; this.emit('rooms'); }
        break;
      }
      case 'typing':
        if (data.user_id !== this.me.id) {
          this.setTyping(data.room_id, data.user_id, data.active);
          if (data.active) this.fetchUser(data.user_id, { maxAge: 5000 });
        }
        break;
      case 'presence': {
        // No `user.updated` event exists: presence is our cue to refetch the profile.
        const u = this.users.get(data.user_id);
        if (u) { u.online = data.online; this.emit('users', { id: data.user_id }); }
        this.fetchUser(data.user_id, { maxAge: 0 });
        break;
      }
      case 'room.created':
      case 'room.updated':
      case 'room.member_added':
        // Room events are also a cue to refresh the people involved (no user.updated event).
        (data.user_ids || []).forEach((id) => this.fetchUser(id, { maxAge: 0 }));
        this.loadRooms().then(() => {
          if (this.details.has(data.room.id)) this.loadDetail(data.room.id).catch(() => {});
        }).catch(() => {});
        break;
      case 'room.member_removed':
        if (data.user_id === this.me.id) this.dropRoom(data.room.id);
        else this.loadRooms().catch(() => {});
        break;
      default:
        break;
    }
  }

  touchRoom(m) {
    const room = this.rooms.get(m.room_id);
    if (!room) { this.loadRooms().catch(() => {}); return; }
    if (!room.last_message || room.last_message.id <= m.id) room.last_message = m;
    if (room.last_activity_at < m.created_at) room.last_activity_at = m.created_at;
    if (m.version > (room.version || 0)) room.version = m.version;
    this.emit('rooms');
  }

  refreshPreview(m) {
    const room = this.rooms.get(m.room_id);
    if (room && room.last_message && room.last_message.id === m.id) {
      room.last_message = m;
      this.emit('rooms');
    }
  }

  // --- receipts -----------------------------------------------------------------------------

  // 'sending' | 'failed' | 'sent' | 'delivered' | 'read' and the people who read it.
  tickOf(msg) {
    if (!msg.id) return { state: msg.state || 'sending', readers: [] };
    const room = this.rooms.get(msg.room_id);
    const readers = this.readersOf(msg);
    const others = room ? room.member_count - 1 : 1;
    if (others > 0 && readers.length >= others) return { state: 'read', readers };
    const delivered = this.deliveredTo.get(msg.id);
    if (readers.length || (delivered && delivered.size)) return { state: 'delivered', readers, partial: readers.length > 0 };
    return { state: 'sent', readers };
  }
}

export const store = new Store();
window.__fs = { store };
