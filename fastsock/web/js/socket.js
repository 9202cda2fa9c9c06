// The WebSocket: auth (+ resume), seq tracking, an outbox of requests awaiting a reply that is
// re-sent after every reconnect (the server deduplicates by client_msg_id), exponential
// backoff with equal jitter (capped), a keep-alive ping, and status events for the banner.
// While waiting to reconnect, a cheap probe (GET /healthz) notices the server coming back, so
// the client connects then rather than when its backoff runs out. Mirrors tests/sync_client.py.

import { ensureAccess, refreshAccess } from './api.js';

const BASE_DELAY = 1000;
const MAX_DELAY = 10000;
// One probe per wait of at least PROBE_MIN_WAIT (a shorter one ends before a probe could
// help), at a random moment of its middle half, given up after PROBE_TIMEOUT. After
// PROBE_ANSWERS answers while the socket still fails (a proxy refusing WebSockets), no more.
const PROBE_MIN_WAIT = 2000;
const PROBE_TIMEOUT = 2000;
const PROBE_ANSWERS = 3;
const CONNECT_TIMEOUT = 10000; // from opening the socket to `ready`
const PING_EVERY = 25000;
const PONG_TIMEOUT = 10000;
// A tab coming into view pings, unless a ping went out this recently: the server allows a
// burst of 10, then 1 a second.
const PING_MIN_GAP = 5000;
// A refusal for speed (`rate_limited`) asking to wait up to this long is retried by itself;
// a longer wait (the hourly `@room` limit) fails the request, whose caller says when to retry.
const AUTO_RETRY_MAX_S = 10;

export class Socket extends EventTarget {
  constructor() {
    super();
    this.ws = null;
    this.session = null;
    this.lastSeq = 0;
    this.outbox = new Map(); // ref -> {type, data, resolve, reject}
    this.attempt = 0;
    this.state = 'idle'; // idle | connecting | open | waiting | offline
    this.retryAt = 0;
    this.timer = null;
    this.probeTimer = null;
    this.serverDown = false; // the last probe got no answer
    this.probeAnswers = 0; // probes answered since the socket last got to `ready`
    this.connectTimer = null;
    this.connects = 0; // numbers each connect(): a newer one (or stop) makes an older one give up
    this.pingTimer = null;
    this.pongTimer = null;
    this.pingRef = null; // the ref of the ping awaiting its reply
    this.pingAt = 0;
    this.stopped = true;
    this.everConnected = false;
    this.refCounter = 0;
    window.addEventListener('online', () => { if (!this.stopped) this.connectNow(); });
    window.addEventListener('offline', () => { if (!this.stopped) this.drop(); });
    // Back to the tab (a laptop waking up, a phone unlocked): retry now if waiting, and make
    // sure an open socket still answers. Hidden tabs do not probe.
    document.addEventListener('visibilitychange', () => {
      if (this.stopped || document.hidden) return;
      if (this.state !== 'open') this.connectNow();
      else if (Date.now() - this.pingAt >= PING_MIN_GAP) this.ping(this.ws);
    });
  }

  setState(state) {
    this.state = state;
    if (state !== 'waiting') clearTimeout(this.probeTimer);
    this.dispatchEvent(new CustomEvent('status', { detail: { state, retryAt: this.retryAt } }));
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    this.connects += 1;
    clearTimeout(this.timer);
    clearTimeout(this.connectTimer);
    this.stopPing();
    if (this.ws) this.ws.close(1000);
    this.ws = null;
    this.session = null;
    this.lastSeq = 0;
    for (const out of this.outbox.values()) out.reject?.(new Error('logged out'));
    this.outbox.clear();
    this.setState('idle');
  }

  connectNow() {
    clearTimeout(this.timer);
    if (this.state === 'waiting' || this.state === 'offline') this.connect();
  }

  async connect() {
    if (this.stopped) return;
    const mine = ++this.connects;
    clearTimeout(this.timer);
    this.setState('connecting');
    let token;
    try {
      token = await ensureAccess();
    } catch (err) {
      if (mine !== this.connects) return;
      if (err.status === 401) { this.dispatchEvent(new Event('authlost')); return; }
      this.scheduleReconnect();
      return;
    }
    // Stopped, or stopped and started again, meanwhile: that connect() opens the socket.
    if (mine !== this.connects) return;
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(`${proto}//${location.host}/ws`);
    this.ws = ws;
    // A handshake that never completes (a half-dead network) must not leave us "Reconnecting…".
    clearTimeout(this.connectTimer);
    this.connectTimer = setTimeout(() => { if (ws === this.ws && this.state === 'connecting') this.drop(); }, CONNECT_TIMEOUT);
    ws.onopen = () => {
      const auth = { token };
      if (this.session) auth.resume = { session: this.session, last_seq: this.lastSeq };
      ws.send(JSON.stringify({ type: 'auth', data: auth }));
    };
    ws.onmessage = (ev) => this.onFrame(ws, ev.data);
    ws.onclose = (ev) => this.onClose(ws, ev);
    ws.onerror = () => { /* onclose follows */ };
  }

  onClose(ws, ev) {
    if (ws !== this.ws) return;
    this.ws = null;
    clearTimeout(this.connectTimer);
    this.stopPing();
    if (this.stopped) return;
    if (ev.code === 4403) { // the account was deactivated: signed out, nothing to retry
      this.dispatchEvent(new CustomEvent('authlost', { detail: { reason: 'deactivated' } }));
      return;
    }
    if (ev.code === 4401) {
      // The access token expired (or was refused): rotate, then try again at once (once; a
      // second refusal in a row waits for the backoff like any failure).
      this.authFailures = (this.authFailures || 0) + 1;
      if (this.authFailures > 1) { this.scheduleReconnect(); return; }
      refreshAccess().then(() => this.connect(), (err) => {
        if (err.status === 401) this.dispatchEvent(new Event('authlost'));
        else this.scheduleReconnect();
      });
      return;
    }
    if (!navigator.onLine) {
      this.retryAt = 0;
      this.setState('offline');
      return;
    }
    this.scheduleReconnect();
  }

  scheduleReconnect() {
    // Equal jitter: a random delay in [cap/2, cap], cap = min(MAX, BASE * 2^attempt).
    const cap = Math.min(MAX_DELAY, BASE_DELAY * 2 ** this.attempt);
    const delay = cap / 2 + Math.random() * (cap / 2);
    this.attempt += 1;
    this.retryAt = Date.now() + delay;
    this.setState('waiting');
    this.timer = setTimeout(() => this.connect(), delay);
    // The probe's moment is as random as the backoff: the clients of a restarted server
    // still come back spread over seconds, not in the same instant.
    clearTimeout(this.probeTimer);
    if (delay >= PROBE_MIN_WAIT && this.probeAnswers < PROBE_ANSWERS && !document.hidden) {
      this.probeTimer = setTimeout(() => this.probe(), delay * (0.25 + Math.random() / 2));
    }
  }

  // Connect at once when the server answers again after not answering. A server that answers
  // all along while the socket fails (a proxy refusing WebSockets) gets the plain backoff.
  async probe() {
    let up = false;
    try {
      up = (await fetch('/healthz', { cache: 'no-store', signal: AbortSignal.timeout(PROBE_TIMEOUT) })).ok;
    } catch { /* no answer in time */ }
    if (up) this.probeAnswers += 1;
    const cameBack = up && this.serverDown;
    this.serverDown = !up;
    if (cameBack && this.state === 'waiting') this.connectNow();
  }

  onFrame(ws, raw) {
    if (ws !== this.ws) return; // a socket already given up on
    let frame;
    try { frame = JSON.parse(raw); } catch { return; }
    if (frame.type === 'ready') {
      this.onReady(ws, frame.data);
      return;
    }
    if (typeof frame.seq === 'number') this.lastSeq = frame.seq;
    const { type, ref } = frame;
    const data = frame.data || {};
    if (ref !== undefined && ref !== null) {
      // Any frame carrying the ref of a request is its reply: usually `ack`, `message.ack` or
      // `error`, but `call.invite` is answered by `call.created` (or busy / unavailable).
      // A ping's reply proves the socket alive, be it `pong` or a refusal (rate_limited).
      if (ref === this.pingRef) { clearTimeout(this.pongTimer); this.pingRef = null; }
      const out = this.outbox.get(ref);
      if (out) {
        if (type === 'error' && data.code === 'rate_limited' && !out.once && (data.retry_after || 1) <= AUTO_RETRY_MAX_S) {
          // Keep it; ask again after the server's delay.
          setTimeout(() => this.write(ref, out), Math.max(250, (data.retry_after || 1) * 1000));
        } else {
          this.outbox.delete(ref);
          if (type === 'error') {
            const err = new Error(data.message || data.code);
            err.code = data.code;
            err.retryAfter = data.retry_after;
            out.reject?.(err);
          } else {
            out.resolve?.(out.once ? { type, data } : data);
          }
        }
      }
    }
    this.dispatchEvent(new CustomEvent('frame', { detail: { type, data, ref } }));
  }

  async onReady(ws, data) {
    const outcome = data.resume;
    if (outcome !== 'ok') {
      this.session = data.session;
      this.lastSeq = 0;
    }
    const wasReconnect = this.everConnected;
    this.everConnected = true;
    clearTimeout(this.connectTimer);
    this.serverDown = false;
    this.probeAnswers = 0;
    this.attempt = 0;
    this.authFailures = 0;
    this.setState('open');
    this.startPing(ws);
    this.dispatchEvent(new CustomEvent('ready', { detail: { user: data.user, resume: outcome, reconnect: wasReconnect } }));
    // Requests that got no answer before the drop go again (same refs, same client_msg_ids),
    // except the `once` ones (placing a call): those fail rather than happen late.
    for (const [ref, out] of this.outbox) {
      if (out.once) {
        this.outbox.delete(ref);
        const err = new Error('The connection dropped');
        err.code = 'connection_lost';
        out.reject?.(err);
      } else {
        this.write(ref, out);
      }
    }
  }

  startPing(ws) {
    this.stopPing();
    this.pingTimer = setInterval(() => this.ping(ws), PING_EVERY);
  }

  // No pong within PONG_TIMEOUT: the socket is dead, whatever the browser thinks.
  ping(ws) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    this.pingRef = `p${++this.refCounter}`;
    this.pingAt = Date.now();
    ws.send(JSON.stringify({ type: 'ping', ref: this.pingRef }));
    clearTimeout(this.pongTimer);
    this.pongTimer = setTimeout(() => { if (ws === this.ws) this.drop(); }, PONG_TIMEOUT);
  }

  stopPing() {
    clearInterval(this.pingTimer);
    clearTimeout(this.pongTimer);
  }

  write(ref, out) {
    if (this.state !== 'open' || !this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    this.ws.send(JSON.stringify({ type: out.type, data: out.data, ref }));
  }

  // A request that stays in the outbox until its reply (ack or error) arrives.
  // `once`: sent now or never (refused while offline, not re-sent after a reconnect, no retry
  // on rate_limited); it resolves with the whole reply {type, data}.
  request(type, data, { once = false } = {}) {
    const ref = `r${Date.now().toString(36)}${(++this.refCounter).toString(36)}`;
    return new Promise((resolve, reject) => {
      const out = { type, data, resolve, reject, once };
      if (once && !this.isOpen()) {
        const err = new Error('You are offline');
        err.code = 'offline';
        reject(err);
        return;
      }
      this.outbox.set(ref, out);
      this.write(ref, out);
    });
  }

  isOpen() {
    return this.state === 'open' && Boolean(this.ws) && this.ws.readyState === WebSocket.OPEN;
  }

  // Fire and forget (typing): dropped when offline.
  send(type, data) {
    if (this.state === 'open' && this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ type, data }));
    }
  }

  // Give up on the current socket now (offline, no pong): a dead network may take long to
  // report the close, so detach it and go through the close logic at once.
  drop() {
    const ws = this.ws;
    if (!ws) return;
    ws.onclose = null;
    ws.onmessage = null;
    ws.onerror = null;
    try { ws.close(4000, 'dropped'); } catch { /* already closing */ }
    this.onClose(ws, { code: 4000 });
  }

  // Test/debug hook: lose the connection abruptly, like a network failure.
  simulateDrop() { this.drop(); }
}
