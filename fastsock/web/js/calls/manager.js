// 1:1 calls on this device (docs/calls.md): the call's state machine, driven by the user's
// actions and the server's `call.*` events, the WebRTC connection, ringtones, TURN credential
// refresh and connection-quality sampling. Views listen to 'change' and read `session`.
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

import * as api from '../api.js';
import { store } from '../store.js';
import { getLocalMedia, stopStream } from './media.js';
import { Peer } from './peer.js';
import { sample } from './stats.js';
import { Ringtone } from './ringtone.js';
import { finalText, fmtDuration } from './wording.js';

const FINAL_MS = 4000;
const STATS_EVERY_MS = 2000;
const FAILED_GIVE_UP_MS = 20000; // ICE failed and a restart did not help: the call is over
const END_EVENTS = ['call.declined', 'call.cancelled', 'call.missed', 'call.busy', 'call.unavailable', 'call.ended'];
const LIVE = ['preparing', 'outgoing', 'incoming', 'accepting', 'connecting', 'active', 'reconnecting'];

export async function fetchIceConfig() {
  const body = await api.get('/calls/ice-servers');
  return {
    iceServers: body.ice_servers || [],
    iceTransportPolicy: body.ice_transport_policy === 'relay' ? 'relay' : 'all',
    ttl: Number(body.ttl) || 3600,
  };
}

// Refresh TURN credentials when 3/4 of their lifetime has passed (at least 5 s from now).
export const refreshDelayMs = (ttl) => Math.max(5, ttl * 0.75) * 1000;

function inviteError(err) {
  switch (err.code) {
    case 'conflict': return "You're already in a call (perhaps on another device).";
    case 'rate_limited': return `Too many calls in a short time — try again in ${Math.ceil(err.retryAfter || 60)} s.`;
    case 'offline': return "You're offline — the call was not placed.";
    case 'connection_lost': return 'The connection dropped — the call was not placed. Try again.';
    default: return `The call could not be placed: ${err.message}`;
  }
}

class CallManager extends EventTarget {
  constructor() {
    super();
    this.session = null;
    this.elsewhere = null; // a call another device of mine takes part in
    this.ringBlocked = false;
    this.ring = new Ringtone('ring', { onBlocked: (blocked) => { this.ringBlocked = blocked; this.changed(); } });
    this.ringback = new Ringtone('ringback');
    this.iceFetches = 0;
    store.socket.addEventListener('frame', (ev) => this.onFrame(ev.detail));
    store.socket.addEventListener('status', () => this.changed());
    store.socket.addEventListener('ready', (ev) => this.onReady(ev.detail));
    window.addEventListener('pagehide', () => this.onPageHide());
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
    const [m, i] = await Promise.allSettled([getLocalMedia(media === 'video'), this.fetchIce()]);
    if (this.session !== s || s.phase !== 'preparing') {
      if (m.status === 'fulfilled') stopStream(m.value);
      return; // cancelled meanwhile
    }
    if (m.status === 'rejected' || i.status === 'rejected') {
      if (m.status === 'fulfilled') stopStream(m.value);
      const err = m.status === 'rejected' ? m.reason : i.reason;
      const text = m.status === 'rejected' ? err.message : `Couldn't get the call servers: ${err.message}`;
      this.finish(s, text, { error: true, linger: 6000 });
      return;
    }
    s.local = m.value;
    s.ice = i.value;
    s.inviteSent = true;
    this.changed();
    try {
      // Answered by call.created (or call.busy / call.unavailable, or call.accepted when the
      // callee was calling us at the same moment); onFrame handles those.
      await store.socket.request('call.invite', { room_id: roomId, media }, { once: true });
    } catch (err) {
      if (this.session === s && !s.id && this.live(s)) this.finish(s, inviteError(err), { error: true, linger: 6000 });
    }
  }

  async accept(video) {
    const s = this.session;
    if (!s || s.phase !== 'incoming') return;
    s.phase = 'accepting';
    s.error = null;
    this.changed();
    let [m, i] = await Promise.allSettled([getLocalMedia(video), this.fetchIce()]);
    if (this.session !== s || s.phase !== 'accepting') {
      if (m.status === 'fulfilled') stopStream(m.value);
      return;
    }
    if (m.status === 'rejected' && video) {
      // The camera failed: answer with the microphone only, and say why.
      const cameraError = m.reason.message;
      [m] = await Promise.allSettled([getLocalMedia(false)]);
      if (m.status === 'fulfilled') store.emit('toast', { kind: 'info', text: `${cameraError} Answering with audio only.` });
      if (this.session !== s || s.phase !== 'accepting') {
        if (m.status === 'fulfilled') stopStream(m.value);
        return;
      }
    }
    if (m.status === 'rejected' || i.status === 'rejected') {
      if (m.status === 'fulfilled') stopStream(m.value);
      // Still ringing elsewhere and here (silently): they can fix it and retry, or decline.
      s.phase = 'incoming';
      s.silenced = true;
      s.error = m.status === 'rejected' ? m.reason.message : `Couldn't get the call servers: ${i.reason.message}`;
      this.changed();
      return;
    }
    s.local = m.value;
    s.ice = i.value;
    s.cameraOff = false;
    this.changed();
    store.socket.request('call.accept', { call_id: s.id }).catch((err) => {
      if (this.session !== s || s.phase !== 'accepting') return;
      this.finish(s, err.code === 'not_found' || err.code === 'conflict' ? 'The call is no longer available' : `Couldn't answer: ${err.message}`);
    });
  }

  decline() {
    const s = this.session;
    if (!s || (s.phase !== 'incoming' && s.phase !== 'accepting')) return;
    store.socket.request('call.reject', { call_id: s.id }).catch(() => {});
    this.finish(s, 'Call declined', { linger: 0 });
  }

  // Ringing: stop the ringtone on this device without declining (Escape on the dialog).
  silence() {
    const s = this.session;
    if (!s || s.phase !== 'incoming' || s.silenced) return;
    s.silenced = true;
    this.changed();
  }

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

  toggleMic() {
    const s = this.session;
    if (!s?.local) return;
    s.micMuted = !s.micMuted;
    s.local.getAudioTracks().forEach((t) => { t.enabled = !s.micMuted; });
    this.changed();
  }

  toggleCamera() {
    const s = this.session;
    if (!s?.local || !s.local.getVideoTracks().length) return;
    s.cameraOff = !s.cameraOff;
    s.local.getVideoTracks().forEach((t) => { t.enabled = !s.cameraOff; });
    this.changed();
  }

  // Close the screen of a call that is over.
  dismiss(s = this.session) {
    if (!s) return;
    clearTimeout(s.closeTimer);
    if (this.live(s)) return;
    if (this.session === s) {
      this.session = null;
      this.changed();
    }
  }

  elapsed(s = this.session) {
    if (!s?.acceptedAt) return 0;
    return Math.floor(((s.endedAt || Date.now()) - s.acceptedAt) / 1000);
  }

  words(s) { return { meId: store.me?.id, partnerName: this.partnerName(s), here: true }; }

  // --- server events --------------------------------------------------------------------------

  onFrame({ type, data }) {
    if (!type || !type.startsWith('call.')) return;
    const call = data.call || null;
    const callId = call?.id || data.call_id;
    const s = this.session;
    const mine = s && s.id && s.id === callId ? s : null;
    switch (type) {
      case 'call.created': {
        if (s && s.role === 'caller' && !s.id && s.inviteSent && data.here) {
          s.id = call.id;
          s.call = call;
          if (s.cancelWhenCreated || !this.live(s)) {
            store.socket.request('call.cancel', { call_id: call.id }).catch(() => {});
          } else {
            s.phase = 'outgoing';
          }
          this.changed();
        } else if (data.here && !mine) {
          // Created from this device but no longer wanted (e.g. the page state was reset).
          store.socket.request('call.cancel', { call_id: call.id }).catch(() => {});
        }
        break;
      }
      case 'call.ringing': {
        if (mine) break;
        if (this.live(s)) {
          // Calling each other at the same moment: the server turns our invite into an
          // answer to theirs (call.accepted follows); do not ring meanwhile.
          if (s.role === 'caller' && s.partnerId === call.caller_id) s.glareId = call.id;
          break;
        }
        if (s) this.dismiss(s);
        this.session = this.newSession({
          id: call.id, call, role: 'callee', phase: 'incoming', media: call.media,
          roomId: call.room_id, partnerId: call.caller_id,
        });
        store.fetchUser(call.caller_id);
        this.changed();
        break;
      }
      case 'call.accepted': {
        let target = mine;
        if (!target && data.here && s && this.live(s) && s.role === 'caller' && !s.accepted
          && call.callee_id === store.me?.id && call.caller_id === s.partnerId) {
          // Glare: our invite answered their call. We are the callee of that call.
          target = s;
          target.id = call.id;
          target.role = 'callee';
          if (call.media === 'audio' && s.local) {
            s.local.getVideoTracks().forEach((t) => { t.stop(); s.local.removeTrack(t); });
          }
          target.media = call.media;
        }
        if (data.here) {
          if (!target || !this.live(target)) {
            // Accepted on this device, but we are no longer in it: leave at once.
            store.socket.request('call.hangup', { call_id: callId }).catch(() => {});
            break;
          }
          target.call = call;
          target.accepted = true;
          target.acceptedAt = Date.now();
          target.phase = 'connecting';
          this.startPeer(target);
          this.changed();
        } else {
          this.elsewhere = call;
          if (target && target.phase === 'incoming') {
            this.finish(target, 'Answered on another device', { linger: 3000 });
          } else if (target && target.phase === 'accepting') {
            stopStream(target.local);
            this.finish(target, 'Answered on another device', { linger: 3000 });
          } else {
            this.changed();
          }
        }
        break;
      }
      case 'call.signal':
        if (!mine) break;
        if (mine.peer) mine.peer.handle(data);
        else mine.early.push(data);
        break;
      default:
        if (!END_EVENTS.includes(type)) break;
        if (this.elsewhere && this.elsewhere.id === callId) {
          this.elsewhere = null;
          this.changed();
        }
        if (s && s.glareId === callId) s.glareId = null;
        {
          // busy / unavailable answer the invite directly (no call.created first).
          const target = mine || (s && s.role === 'caller' && !s.id && s.inviteSent && data.here
            && (type === 'call.busy' || type === 'call.unavailable') ? s : null);
          if (!target) break;
          target.id = callId;
          target.call = call || target.call;
          const words = { ...this.words(target), here: data.here };
          const endedCall = type === 'call.ended' ? { ...call, duration_s: data.duration_s ?? call?.duration_s, end_reason: data.reason ?? call?.end_reason } : call;
          const text = finalText(type, endedCall, words);
          const quick = type === 'call.declined' && target.role === 'callee' && data.here;
          this.finish(target, text, { linger: quick ? 0 : FINAL_MS, error: ['call.busy', 'call.unavailable', 'call.declined', 'call.missed'].includes(type) && target.role === 'caller' });
        }
        break;
    }
  }

  onReady({ resume }) {
    const s = this.session;
    if (resume !== 'ok' && this.elsewhere) {
      // Events may have been missed: do not keep the buttons off for a call that may be over
      // (if it is not, the server answers an invite with `conflict`, which is explained).
      this.elsewhere = null;
      this.changed();
    }
    if (resume === 'ok' || !s || !s.id || !this.live(s)) return;
    // A new WebSocket session: this device is no longer the call's device on the server, so
    // signals cannot reach it. End the call now rather than after the server's grace period.
    if (['incoming', 'accepting'].includes(s.phase)) return; // still ringing: other events follow
    store.socket.request('call.hangup', { call_id: s.id }).catch(() => {});
    this.finish(s, finalText('call.ended', { duration_s: this.elapsed(s), end_reason: 'connection_lost' }, this.words(s)));
  }

  onPageHide() {
    const s = this.session;
    if (!s || !s.id || !this.live(s) || s.phase === 'incoming') return;
    // Leaving the page ends the call now (fire and forget: the page is going away).
    store.socket.send('call.hangup', { call_id: s.id });
  }

  // --- WebRTC -----------------------------------------------------------------------------------

  async fetchIce() {
    this.iceFetches += 1;
    return fetchIceConfig();
  }

  startPeer(s) {
    if (s.peer) return;
    const peer = new Peer({
      config: s.ice,
      local: s.local,
      send: (signal) => {
        if (this.session !== s || !this.live(s)) return;
        store.socket.request('call.signal', { call_id: s.id, ...signal }).catch((err) => {
          if (this.live(s)) console.warn('call.signal refused:', err.message);
        });
      },
      onTrack: (track) => {
        track.addEventListener('mute', () => this.changed());
        track.addEventListener('unmute', () => this.changed());
        this.changed();
      },
      onState: (state) => this.onPeerState(s, state),
    });
    s.peer = peer;
    s.remote = peer.remote;
    for (const signal of s.early) peer.handle(signal);
    s.early = [];
    if (s.role === 'caller') peer.offer();
    this.scheduleIceRefresh(s);
    s.statsTimer = setInterval(() => this.pollStats(s), STATS_EVERY_MS);
  }

  onPeerState(s, state) {
    if (this.session !== s || !this.live(s) || state === s.peerState) return;
    s.peerState = state;
    if (state === 'connected') {
      clearTimeout(s.failTimer);
      s.failTimer = null;
      s.phase = 'active';
      if (!s.connectedAt) {
        s.connectedAt = Date.now();
        s.setupMs = s.connectedAt - s.acceptedAt;
      }
      this.pollStats(s);
    } else if (state === 'disconnected') {
      if (s.phase === 'active') s.phase = 'reconnecting';
    } else if (state === 'failed') {
      s.phase = s.connectedAt ? 'reconnecting' : 'connecting';
      // The caller restarts ICE (a new offer); the callee answers it as usual.
      if (s.role === 'caller') s.peer.offer({ iceRestart: true });
      if (!s.failTimer) {
        s.failTimer = setTimeout(() => {
          if (this.session !== s || !this.live(s) || s.peerState === 'connected') return;
          store.socket.request('call.hangup', { call_id: s.id }).catch(() => {});
          this.finish(s, s.connectedAt
            ? `Call ended — connection lost · ${fmtDuration(this.elapsed(s))}`
            : 'Could not connect the call — the network between you may block it');
        }, FAILED_GIVE_UP_MS);
      }
    }
    this.changed();
  }

  scheduleIceRefresh(s) {
    clearTimeout(s.iceTimer);
    s.iceTimer = setTimeout(async () => {
      if (this.session !== s || !this.live(s)) return;
      let retryIn = null;
      try {
        const ice = await this.fetchIce();
        if (this.session !== s || !s.peer) return;
        s.peer.setConfiguration(ice);
        s.ice = ice;
        s.iceRefreshes += 1;
      } catch {
        retryIn = 30000;
      }
      if (this.session === s && this.live(s)) {
        if (retryIn) {
          s.iceTimer = setTimeout(() => this.scheduleIceRefresh(s), retryIn);
        } else {
          this.scheduleIceRefresh(s);
        }
      }
    }, refreshDelayMs(s.ice.ttl));
  }

  async pollStats(s) {
    if (!s.peer || s.polling) return;
    s.polling = true;
    try {
      s.quality = await sample(s.peer.pc, s.quality);
      if (this.session === s) this.dispatchEvent(new Event('stats'));
    } catch { /* closed meanwhile */ } finally {
      s.polling = false;
    }
  }

  // --- the end ----------------------------------------------------------------------------------

  finish(s, text, { linger = FINAL_MS, error = false } = {}) {
    const wasLive = this.live(s);
    if (text) s.final = text;
    s.finalError = error;
    if (wasLive) {
      s.endedFrom = s.phase;
      s.phase = 'ended';
      s.endedAt = Date.now();
      clearInterval(s.statsTimer);
      clearTimeout(s.iceTimer);
      clearTimeout(s.failTimer);
      s.peer?.close();
      s.peer = null;
      stopStream(s.local);
      s.local = null;
      clearTimeout(s.closeTimer);
      if (linger <= 0) { this.dismiss(s); return; }
      s.closeTimer = setTimeout(() => this.dismiss(s), linger);
    }
    if (this.session === s) this.changed();
  }
}

export const calls = new CallManager();
window.__fs = { ...(window.__fs || {}), calls };
