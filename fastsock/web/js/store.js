// Application state and its event stream. Views subscribe with store.on(name, fn).
// Server frames and REST pages are applied here; the rules follow tests/sync_client.py:
// upsert by version, tombstones on delete, read pointers only move forward, and the per-room
// sync point advances only from `changed_after` pages. The methods live in state/, one module
// per concern, mixed into the Store's prototype below.

import * as api from './api.js';
import { Socket } from './socket.js';
import { drafts } from './state/drafts.js';
import { edits } from './state/edits.js';
import { history } from './state/history.js';
import { live } from './state/live.js';
import { outbox } from './state/outbox.js';
import { receipts } from './state/receipts.js';
import { rooms } from './state/rooms.js';
import { typing } from './state/typing.js';
import { users } from './state/users.js';

class Store extends EventTarget {
  constructor() {
    super();
    this.socket = new Socket();
    this.reset();
    this.socket.addEventListener('frame', (ev) => this.onFrame(ev.detail));
    this.socket.addEventListener('ready', (ev) => this.onReady(ev.detail));
    this.socket.addEventListener('status', (ev) => {
      this.onConnection(ev.detail.state); // while down, others' presence and typing are unknown
      this.emit('connection', ev.detail);
    });
    this.socket.addEventListener('authlost', (ev) => this.emit('authlost', ev.detail));
    api.onAuthLost(() => this.emit('authlost'));
    this.on('rooms', () => this.pruneDrafts());
    this.deliverQueue = new Set();
    this.deliverTimer = null;
  }

  reset() {
    this.run = null; // the current start(): a stop() meanwhile makes it start nothing more
    this.me = null;
    this.serverAdmin = false; // from my own view: `user.updated` carries only the public one
    this.users = new Map(); // id -> user
    this.userFetchedAt = new Map();
    this.userPending = new Map();
    this.rooms = new Map(); // id -> room (from GET /rooms, kept up to date)
    this.details = new Map(); // id -> GET /rooms/{id}
    this.windows = new Map(); // room id -> message window (state/history.js: win())
    this.pending = new Map(); // client_msg_id -> local message (sending/failed)
    this.readPointers = new Map(); // room id -> Map(user id -> message id)
    this.deliveredPointers = new Map(); // room id -> Map(user id -> message id)
    this.typing = new Map(); // room id -> Map(user id -> expiry timer)
    this.synced = new Map(); // room id -> version
    this.confirmed = new Set(); // message ids we already confirmed delivery of
    this.currentRoom = null;
    this.peersUnknown = false; // the socket is down: others' presence and typing are unknown
    this.presenceBefore = null; // user id -> online, as it was when the socket went down
  }

  on(name, fn) {
    const h = (ev) => fn(ev.detail);
    this.addEventListener(name, h);
    return () => this.removeEventListener(name, h);
  }

  emit(name, detail) { this.dispatchEvent(new CustomEvent(name, { detail })); }

  // --- session ------------------------------------------------------------------------------

  // Resolves true once started, false if stop() came first.
  async start(me) {
    const run = Symbol('run');
    this.run = run;
    this.me = me;
    this.serverAdmin = me.server_admin === true;
    this.users.set(me.id, me);
    this.userFetchedAt.set(me.id, Date.now());
    try {
      await this.loadRooms();
    } catch (err) {
      if (this.run === run) throw err; // else it failed for want of the session that ended
    }
    if (this.run !== run) return false; // no socket for a session that ended meanwhile
    this.restoreOutbox();
    this.socket.start();
    return true;
  }

  stop() {
    this.socket.stop();
    this.reset();
  }
}

Object.assign(Store.prototype, users, rooms, receipts, history, outbox, drafts, edits, typing, live);

export const store = new Store();
window.__fs = { store };
