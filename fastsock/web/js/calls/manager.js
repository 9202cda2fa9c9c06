// 1:1 calls on this device (docs/calls.md): the call's session and state machine, placing a
// call, hanging up, the ringtones and the end of a call. Views listen to 'change' and read
// `session`. The rest of the 1:1 call, by concern (each takes this manager as `m`):
//   incoming.js     ringing on this device: answer, decline, silence
//   call_events.js  the server's `call.*` events, a WebSocket session that did not resume, pagehide
//   connection.js   the WebRTC connection: signals, ICE restart, TURN refresh, quality sampling
//   media_state.js  mute and camera, sent to the other side and theirs received (`call.media_state`)
//
// session.phase:
//   preparing    caller: getting the microphone/camera, then `call.invite`
//   outgoing     caller: the callee's devices ring
//   incoming     callee: this device rings
//   accepting    callee: getting media, then `call.accept`
//   connecting   accepted (this device takes part): WebRTC negotiating
//   active       media flowing
//   reconnecting ICE disconnected/failed; the caller restarts ICE
//   ended        over: `final` says why; the screen closes after a few seconds

import { store } from '../store.js';
import { onFrame, onPageHide, onReady } from './call_events.js';
import * as connection from './connection.js';
import { fetchIceConfig } from './ice.js';
import * as incoming from './incoming.js';
import { getLocalMedia, stopStream } from './media.js';
import * as mediaState from './media_state.js';
import { Ringtone } from './ringtone.js';
import { finalText, inviteErrorText } from './wording.js';

export const FINAL_MS = 4000; // how long the screen of a call that is over stays (group.js too)
const LIVE = ['preparing', 'outgoing', 'incoming', 'accepting', 'connecting', 'active', 'reconnecting'];

// The end of a call on this device, 1:1 or group (group.js): the session is over (the phase it
// ended from, and when), its timers and TURN refresh stop, `drop(s)` closes what only that kind
// of call holds (its connection; after the phase, so the connection's own close handlers see the
// call over), my microphone and camera are released, and the screen closes after `linger` ms.
// Returns false when it closed at once.
export function endSession(m, s, linger, drop) {
  s.endedFrom = s.phase;
  s.phase = 'ended';
  s.endedAt = Date.now();
  clearInterval(s.statsTimer);
  s.stopIce?.();
  drop(s);
  stopStream(s.local);
  s.local = null;
  clearTimeout(s.closeTimer);
  if (linger <= 0) { m.dismiss(s); return false; }
  s.closeTimer = setTimeout(() => m.dismiss(s), linger);
  return true;
}

// Close the screen of a call that is over (not while it is live), 1:1 or group.
export function dismissSession(m, s) {
  if (!s) return;
  clearTimeout(s.closeTimer);
  if (m.live(s)) return;
  if (m.session === s) {
    m.session = null;
    m.changed();
  }
}

// What only a 1:1 call holds, closed at its end.
function dropPeer(s) {
  clearTimeout(s.failTimer);
  s.peer?.close();
  s.peer = null;
}

// Other calls on this device that keep a 1:1 call from starting (group.js registers one):
// each returns the reason, or null.
const blockers = [];
export function addCallBlocker(reason) { blockers.push(reason); }

class CallManager extends EventTarget {
  constructor() {
    super();
    this.session = null;
    this.elsewhere = null; // a call another device of mine takes part in
    this.ringBlocked = false;
    this.ring = new Ringtone('ring', { onBlocked: (blocked) => { this.ringBlocked = blocked; this.changed(); } });
    this.ringback = new Ringtone('ringback');
    store.socket.addEventListener('frame', (ev) => onFrame(this, ev.detail));
    store.socket.addEventListener('status', () => this.changed());
    store.socket.addEventListener('ready', (ev) => onReady(this, ev.detail));
    window.addEventListener('pagehide', () => onPageHide(this));
  }

  on(fn) {
    this.addEventListener('change', fn);
    return () => this.removeEventListener('change', fn);
  }

  changed() {
    this.syncTones();
    this.dispatchEvent(new Event('change'));
  }

  // The ringtone plays exactly while this device rings; the ringback while the callee rings.
  syncTones() {
    const s = this.session;
    if (s && s.phase === 'incoming' && !s.silenced) this.ring.start(); else this.ring.stop();
    if (s && s.phase === 'outgoing') this.ringback.start(); else this.ringback.stop();
  }

  live(s = this.session) { return Boolean(s && LIVE.includes(s.phase)); }

  // Why a call cannot be placed now (null: it can).
  blockedReason() {
    if (!store.socket.isOpen()) return "You're offline";
    const s = this.session;
    if (this.live(s)) return s.phase === 'incoming' ? 'A call is ringing' : "You're already in a call";
    if (this.elsewhere) return "You're in a call on another device";
    for (const other of blockers) {
      const reason = other();
      if (reason) return reason;
    }
    return null;
  }

  partnerName(s = this.session) { return s ? store.displayName(s.partnerId) : ''; }

  newSession(fields) {
    return {
      id: null,
      call: null,
      role: 'caller',
      phase: 'preparing',
      media: 'audio',
      accepted: false,
      local: null,
      remote: null,
      peer: null,
      ice: null,
      micMuted: false,
      cameraOff: false,
      remoteMedia: null, // the other side's {audio, video} from call.media_state
      quality: null,
      acceptedAt: null,
      connectedAt: null,
      setupMs: null,
      final: null,
      error: null,
      early: [],
      iceRefreshes: 0,
      ...fields,
    };
  }

  async fetchIce() {
    return fetchIceConfig();
  }

  // --- the user's actions ---------------------------------------------------------------------

  async start(roomId, media) {
    const reason = this.blockedReason();
    if (reason) {
      store.emit('toast', { kind: 'info', text: `${reason}.` });
      return;
    }
    const room = store.rooms.get(roomId);
    const partnerId = room && store.dmPartner(room);
    if (!partnerId) return;
    if (this.session) this.dismiss(this.session);
    const s = this.newSession({ role: 'caller', roomId, partnerId, media, phase: 'preparing' });
    this.session = s;
    this.changed();
    const [local, ice] = await Promise.allSettled([getLocalMedia(media === 'video'), this.fetchIce()]);
    if (this.session !== s || s.phase !== 'preparing') {
      if (local.status === 'fulfilled') stopStream(local.value);
      return; // cancelled meanwhile
    }
    if (local.status === 'rejected' || ice.status === 'rejected') {
      if (local.status === 'fulfilled') stopStream(local.value);
      const err = local.status === 'rejected' ? local.reason : ice.reason;
      const text = local.status === 'rejected' ? err.message : `Couldn't get the call servers: ${err.message}`;
      this.finish(s, text, { error: true, linger: 6000 });
      return;
    }
    s.local = local.value;
    s.ice = ice.value;
    s.inviteSent = true;
    this.changed();
    try {
      // Answered by call.created (or call.busy / call.unavailable, or call.accepted when the
      // callee was calling us at the same moment); call_events.js handles those.
      await store.socket.request('call.invite', { room_id: roomId, media }, { once: true });
    } catch (err) {
      if (this.session === s && !s.id && this.live(s)) this.finish(s, inviteErrorText(err), { error: true, linger: 6000 });
    }
  }

  accept(video) { return incoming.accept(this, video); }

  decline() { incoming.decline(this); }

  silence() { incoming.silence(this); }

  // Cancel a call I am placing, or hang up one in progress.
  hangup() {
    const s = this.session;
    if (!this.live(s)) return;
    if (s.phase === 'incoming' || s.phase === 'accepting') { this.decline(); return; }
    if (s.role === 'caller' && !s.accepted) {
      if (s.id) store.socket.request('call.cancel', { call_id: s.id }).catch(() => {});
      else if (s.inviteSent) s.cancelWhenCreated = true;
      this.finish(s, 'Call cancelled', { linger: 1500 });
      return;
    }
    if (s.id) store.socket.request('call.hangup', { call_id: s.id }).catch(() => {});
    this.finish(s, finalText('call.ended', { duration_s: this.elapsed(s) }, this.words(s)));
  }

  toggleMic() { mediaState.toggleMic(this); }

  toggleCamera() { mediaState.toggleCamera(this); }

  // The connection's state changes (tests drive it directly to simulate a network drop).
  onPeerState(s, state) { connection.onPeerState(this, s, state); }

  // Close the screen of a call that is over.
  dismiss(s = this.session) { dismissSession(this, s); }

  elapsed(s = this.session) {
    if (!s?.acceptedAt) return 0;
    return Math.floor(((s.endedAt || Date.now()) - s.acceptedAt) / 1000);
  }

  words(s) { return { meId: store.me?.id, partnerName: this.partnerName(s), here: true }; }

  // --- the end ----------------------------------------------------------------------------------

  finish(s, text, { linger = FINAL_MS, error = false } = {}) {
    const wasLive = this.live(s);
    if (text) s.final = text;
    s.finalError = error;
    if (wasLive && !endSession(this, s, linger, dropPeer)) return;
    if (this.session === s) this.changed();
  }
}

export const calls = new CallManager();
window.__fs = { ...(window.__fs || {}), calls };
