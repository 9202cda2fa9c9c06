// Group calls on this device (docs/calls.md, "Group calls"): the call I am in, from
// `call.join` -> `call.sfu` to the worker (sfu_client.js), moves to another worker, leaving;
// and one ring when a call starts in one of my groups (room_calls.js knows which rooms have
// a call). Views listen to 'change' and read `session`.
//
// session.phase:
//   joining     getting the microphone (and camera), then `call.join`
//   connecting  admitted: connecting to the worker, joining, negotiating the media
//   active      the media connection to the worker is up
//   moving      the worker went away (`call.sfu_moved`), or my connection to it failed and we
//               said `call.sfu_lost`: connecting to the call's (next) worker
//   ended       over (left, ended, refused): `final` says why; the screen closes shortly

import { store } from '../store.js';
import { isMuted } from '../views/notifications.js';
import { keepIceFresh } from './ice.js';
import {
  addCallBlocker, calls, dismissSession, endSession, FINAL_MS,
} from './manager.js';
import { getCamera, getLocalMedia, stopStream } from './media.js';
import * as localMedia from './media_state.js';
import { Ringtone } from './ringtone.js';
import { callInfo, roomCalls } from './room_calls.js';
import { WorkerConnection } from './sfu_client.js';
import { pollQuality, watchQuality } from './stats.js';
import {
  CALL_OVER, groupEndedText, joinErrorText, mediaWord, unavailableText, workerClosedText, workerUrlText,
} from './wording.js';

const MOVE_JITTER_MS = 300; // a dead worker's participants do not all rejoin at once
const MOVE_WAIT_MS = 10000; // no `call.sfu_moved` by then: ask for the call's worker again
const READMITS = 3; // `call.sfu_lost` asked per session without getting connected in between

const connOf = (s) => s.conn; // what stats.js samples

// What only a group call holds, closed at its end (manager.js endSession).
function dropConn(s) {
  clearTimeout(s.moveTimer);
  s.conn?.close();
  s.conn = null;
}

// My microphone and camera, for the worker to tell the others.
function tellWorker(s) {
  s.conn?.sendState({ audio_muted: s.micMuted, video_muted: s.cameraOff || !localMedia.hasVideo(s) });
}

class GroupCallManager extends EventTarget {
  constructor() {
    super();
    this.session = null;
    this.rings = 0; // rings played (tests/e2e/test_group_calls.py reads it)
    this.chime = new Ringtone('ring');
    store.socket.addEventListener('frame', (ev) => this.onFrame(ev.detail));
    store.socket.addEventListener('status', () => this.changed());
    roomCalls.addEventListener('change', () => this.changed());
    roomCalls.addEventListener('started', (ev) => this.announce(ev.detail));
    calls.on(() => this.changed());
    window.addEventListener('pagehide', () => this.onPageHide());
    addCallBlocker(() => (this.live() ? "You're in a group call" : null));
  }

  on(fn) {
    this.addEventListener('change', fn);
    return () => this.removeEventListener('change', fn);
  }

  changed() { this.dispatchEvent(new Event('change')); }

  live(s = this.session) { return Boolean(s && s.phase !== 'ended'); }

  // The call in progress in a group room, or null.
  callIn(roomId) { return roomCalls.get(roomId); }

  // Am I in this room's call (on this device)?
  inRoom(roomId) { return this.live() && this.session.roomId === roomId; }

  // Why I cannot join a call in this room now (null: I can).
  blockedReason(roomId) {
    if (!store.socket.isOpen()) return "You're offline";
    const one = calls.session;
    if (calls.live(one)) return one.phase === 'incoming' ? 'A call is ringing' : "You're already in a call";
    if (calls.elsewhere) return "You're in a call on another device";
    if (this.live() && this.session.roomId !== roomId) return "You're already in a group call";
    return null;
  }

  // --- server events -------------------------------------------------------------------------

  onFrame({ type, data }) {
    const s = this.session;
    if (!this.live(s) || s.callId !== data.call_id) return;
    // The call I am in: over (room_calls.js has already noted it), or moved to another worker.
    if (type === 'call.ended') this.finish(s, groupEndedText(data), { linger: FINAL_MS });
    else if (type === 'call.sfu_moved') this.move(s, data);
  }

  // A call started in one of my groups: ring once, unless I started it, the room is muted, or
  // I am in a call already. In the background, a system notification too.
  announce(call) {
    if (call.caller_id === store.me?.id || isMuted(call.room_id)) return;
    if (calls.live() || this.live()) return;
    const who = store.displayName(call.caller_id);
    const room = store.roomName(store.rooms.get(call.room_id));
    const text = `${who} started a ${mediaWord(call.media)} call in ${room}`;
    this.rings += 1;
    this.chime.once();
    store.emit('toast', { kind: 'info', text });
    if (!('Notification' in window) || Notification.permission !== 'granted') return;
    if (document.visibilityState === 'visible' && document.hasFocus()) return;
    try {
      const n = new Notification(text, { body: 'Open the group to join.', tag: `call-${call.id}` });
      n.onclick = () => { window.focus(); n.close(); };
    } catch { /* some platforms only allow service-worker notifications */ }
  }

  // --- the user's actions ----------------------------------------------------------------------

  newSession(fields) {
    return {
      roomId: null,
      callId: null,
      phase: 'joining',
      media: 'video',
      local: null,
      conn: null,
      ice: null,
      peers: new Map(), // user id -> {audio_muted, video_muted}, from the worker
      speaker: null,
      micMuted: false,
      cameraOff: false,
      cameraBusy: false,
      quality: null,
      mediaTrouble: false, // the media connection to the worker is disconnected
      joinedAt: null,
      moves: 0,
      readmits: 0,
      final: null,
      finalError: false,
      ...fields,
    };
  }

  // Start a call in a group room (`media`: what I start it with) or join the one in progress
  // (then its media decides: a voice call joins with the microphone only).
  async join(roomId, media = 'video') {
    if (this.inRoom(roomId)) { this.dispatchEvent(new Event('show')); return; }
    const reason = this.blockedReason(roomId);
    if (reason) {
      store.emit('toast', { kind: 'info', text: `${reason}.` });
      return;
    }
    const room = store.rooms.get(roomId);
    if (!room || room.kind !== 'group') return;
    if (this.session) this.dismiss(this.session);
    const current = roomCalls.get(roomId);
    const s = this.newSession({ roomId, media: current ? current.media : media });
    this.session = s;
    this.changed();
    const video = s.media === 'video';
    let local;
    try {
      local = await getLocalMedia(video);
    } catch (err) {
      if (!video) { this.refuse(s, err.message); return; }
      // No camera: join with the microphone only, and say why.
      try {
        local = await getLocalMedia(false);
        store.emit('toast', { kind: 'info', text: `${err.message} Joining with audio only.` });
      } catch (err2) {
        this.refuse(s, err2.message);
        return;
      }
    }
    if (this.session !== s || s.phase !== 'joining') { stopStream(local); return; }
    s.local = local;
    this.changed();
    this.admit(s);
  }

  refuse(s, text) {
    if (this.session === s && this.live(s)) this.finish(s, text, { error: true, linger: 6000 });
  }

  // `call.join` (once per session: it starts a call if the room has none): answered by
  // `call.sfu` (admitted: a worker and a token) or `call.unavailable`.
  async admit(s) {
    let reply;
    try {
      reply = await store.socket.request('call.join', { room_id: s.roomId, media: s.media }, { once: true });
    } catch (err) {
      this.refuse(s, joinErrorText(err));
      return;
    }
    const { type, data } = reply;
    if (type === 'call.unavailable') { this.refuse(s, unavailableText(data.reason)); return; }
    if (type !== 'call.sfu') { this.refuse(s, 'The server gave an unexpected answer.'); return; }
    if (this.session !== s || !this.live(s)) {
      // Left meanwhile: out of the call this admission was for.
      store.socket.request('call.leave', { call_id: data.call_id }).catch(() => {});
      return;
    }
    // The room's call is this one now (its call.started may still be on the way).
    const info = callInfo(s.roomId, data.call || { id: data.call_id, media: s.media });
    if (data.call || roomCalls.get(s.roomId)?.id !== data.call_id) roomCalls.set(s.roomId, info, { fromEvent: true });
    this.connect(s, data);
  }

  // Connect to the worker a `call.sfu` or `call.sfu_moved` names.
  connect(s, grant) {
    s.callId = grant.call_id;
    s.ice = {
      iceServers: grant.ice_servers || [],
      iceTransportPolicy: grant.ice_transport_policy === 'relay' ? 'relay' : 'all',
      ttl: Number(grant.ttl) || 3600,
    };
    if (s.phase === 'joining') s.phase = 'connecting';
    s.conn?.close();
    s.quality = null;
    let conn;
    try {
      conn = new WorkerConnection({
        url: grant.worker_url,
        token: grant.token,
        ice: s.ice,
        local: s.local,
        publish: { audio: true, video: this.hasVideo(s) },
        handlers: this.handlersFor(s, () => s.conn === conn),
      });
    } catch (err) {
      // No socket to that address from this page (malformed, or ws:// on an https page).
      console.warn('call worker address refused:', grant.worker_url, err.message);
      store.socket.request('call.leave', { call_id: s.callId }).catch(() => {});
      this.finish(s, workerUrlText(grant.worker_url), { error: true, linger: 6000 });
      return;
    }
    s.conn = conn;
    s.stopIce?.();
    s.stopIce = keepIceFresh(s.ice.ttl, {
      alive: () => this.session === s && this.live(s),
      apply: (ice) => {
        s.ice = ice;
        s.conn?.setConfiguration(ice);
      },
    });
    watchQuality(this, s, connOf);
    this.changed();
  }

  handlersFor(s, current) {
    const ok = () => current() && this.session === s && this.live(s);
    return {
      joined: (data) => {
        if (!ok()) return;
        s.peers = new Map((data.peers || []).filter((p) => p.user_id !== store.me?.id)
          .map((p) => [p.user_id, { audio_muted: Boolean(p.audio_muted), video_muted: Boolean(p.video_muted) }]));
        s.peers.forEach((_, id) => store.fetchUser(id));
        s.speaker = null;
        if (s.micMuted || s.cameraOff) tellWorker(s);
        this.changed();
      },
      peer: (type, data) => {
        if (!ok() || data.user_id === store.me?.id) return;
        if (type === 'peer.joined') {
          if (!s.peers.has(data.user_id)) this.tellPresence(data.user_id, true);
          s.peers.set(data.user_id, { audio_muted: false, video_muted: false });
          store.fetchUser(data.user_id);
        } else if (type === 'peer.left') {
          if (s.peers.delete(data.user_id)) this.tellPresence(data.user_id, false);
          if (s.speaker === data.user_id) s.speaker = null;
        } else {
          s.peers.set(data.user_id, { audio_muted: Boolean(data.audio_muted), video_muted: Boolean(data.video_muted) });
        }
        this.changed();
      },
      speaker: (userId) => {
        if (!ok() || s.speaker === userId) return;
        s.speaker = userId;
        this.changed();
      },
      media: () => { if (ok()) this.changed(); },
      state: (state) => {
        if (!ok()) return;
        if (state === 'connected') {
          s.phase = 'active';
          s.mediaTrouble = false;
          s.readmits = 0;
          if (!s.joinedAt) s.joinedAt = Date.now();
          pollQuality(this, s, connOf);
        } else if (state === 'disconnected') {
          s.mediaTrouble = true;
        } else if (state === 'failed') {
          // The worker is the only offerer, so no ICE restart from here: a fresh token makes
          // a new connection (the worker replaces the old one).
          this.lost(s);
        }
        this.changed();
      },
      error: (data) => console.warn('call worker refused a request:', data.code, data.message),
      closed: ({ code, expected }) => {
        if (expected || !ok()) return;
        this.onWorkerClosed(s, code);
      },
    };
  }

  onWorkerClosed(s, code) {
    // 4403 also closes the sockets of a call the worker was told to end because FastSock moved
    // it (the move's `call.sfu_moved` may come later): the call is over only if we know it is.
    if (code === 4403 && !roomCalls.ended(s.callId)) { this.lost(s); return; }
    const text = workerClosedText(code);
    if (text) {
      // 4410: my newer join elsewhere holds my place in the call: do not leave it.
      if (code === 4413) store.socket.request('call.leave', { call_id: s.callId }).catch(() => {});
      this.finish(s, text, { error: code !== 4410 && code !== 4000, linger: 6000 });
      return;
    }
    // Anything else (a token refused, the worker gave up on my media connection, its socket
    // dropped, it drains): FastSock decides where I go.
    this.lost(s);
  }

  // My connection to the call's worker is gone: `call.sfu_lost` asks FastSock for a fresh token
  // (never `call.join`, which would start a new call if this one ended meanwhile). It checks
  // the worker and answers `call.sfu_moved` for it or for the call's next worker (move()), or
  // `not_found` when I am in no such call in progress. No move within MOVE_WAIT_MS: ask again.
  lost(s) {
    if (this.session !== s || !this.live(s)) return;
    clearTimeout(s.moveTimer);
    s.conn?.close();
    s.conn = null;
    // Over (ended, or another call in the room now): nothing to go back to.
    if (roomCalls.ended(s.callId) || roomCalls.get(s.roomId)?.id !== s.callId) {
      this.finish(s, CALL_OVER, { linger: FINAL_MS });
      return;
    }
    if (s.readmits >= READMITS) { this.finish(s, 'Lost the connection to the call.', { error: true, linger: 6000 }); return; }
    s.readmits += 1;
    s.phase = 'moving';
    store.socket.request('call.sfu_lost', { call_id: s.callId }).catch((err) => {
      if (err.code !== 'not_found' || this.session !== s || !this.live(s)) return;
      // Over, or FastSock no longer counts me in it: the room's bar offers Join if it goes on.
      if (roomCalls.ended(s.callId)) this.finish(s, CALL_OVER, { linger: FINAL_MS });
      else this.finish(s, workerClosedText(4000), { error: true, linger: 6000 });
    });
    s.moveTimer = setTimeout(() => this.lost(s), MOVE_WAIT_MS);
    this.changed();
  }

  move(s, grant) {
    // Already on that worker: a `call.sfu_lost` of mine crossed the move that sent me there, and
    // FastSock, seeing the call's (new) worker alive, re-admitted me to it. Keep the connection.
    if (s.conn && !s.conn.done && s.conn.url === grant.worker_url) return;
    s.phase = 'moving';
    s.moves += 1;
    s.conn?.close();
    s.conn = null;
    clearTimeout(s.moveTimer);
    s.moveTimer = setTimeout(() => {
      if (this.session === s && this.live(s)) this.connect(s, grant);
    }, Math.random() * MOVE_JITTER_MS);
    this.changed();
  }

  leave() {
    const s = this.session;
    if (!this.live(s)) return;
    s.conn?.leave();
    s.conn = null;
    if (s.callId) store.socket.request('call.leave', { call_id: s.callId }).catch(() => {});
    this.finish(s, 'You left the call', { linger: 0 });
  }

  hasVideo(s) { return localMedia.hasVideo(s); } // grid.js reads it

  // Someone joined or left my call after I got in: the call screen says so (grid.js).
  tellPresence(userId, joined) {
    this.dispatchEvent(new CustomEvent('presence', { detail: { userId, joined } }));
  }

  toggleMic() { localMedia.toggleMic(this, tellWorker); }

  // Camera off/on is a disabled track (the worker tells the others); a call joined without a
  // camera gets one here, published to the worker (which offers a slot for it).
  async toggleCamera() {
    const s = this.session;
    if (!s?.local || s.cameraBusy || !this.live(s)) return;
    if (this.hasVideo(s)) { localMedia.toggleCamera(this, tellWorker); return; }
    s.cameraBusy = true;
    this.changed();
    try {
      const camera = await getCamera();
      if (this.session !== s || !this.live(s)) { stopStream(camera); return; }
      camera.getVideoTracks().forEach((t) => s.local.addTrack(t));
      s.cameraOff = false;
      s.conn?.publish(s.local, { audio: true, video: true });
      tellWorker(s);
    } catch (err) {
      store.emit('toast', { kind: 'error', text: err.message });
    } finally {
      s.cameraBusy = false;
      this.changed();
    }
  }

  // Close the screen of a call that is over.
  dismiss(s = this.session) { dismissSession(this, s); }

  elapsed(s = this.session) {
    if (!s?.joinedAt) return 0;
    return Math.floor(((s.endedAt || Date.now()) - s.joinedAt) / 1000);
  }

  // Leaving the page leaves the call now (fire and forget: the page is going away), and ends
  // the session: microphone and camera off, nothing live if the page comes back from bfcache.
  onPageHide() {
    const s = this.session;
    if (!this.live(s)) return;
    if (s.callId) {
      s.conn?.leave();
      store.socket.send('call.leave', { call_id: s.callId });
    }
    this.finish(s, 'You left the call', { linger: 0 });
  }

  // --- the end ----------------------------------------------------------------------------------

  finish(s, text, { linger = FINAL_MS, error = false } = {}) {
    if (!this.live(s)) return;
    s.final = text;
    s.finalError = error;
    if (endSession(this, s, linger, dropConn) && this.session === s) this.changed();
  }
}

export const groupCalls = new GroupCallManager();
window.__fs = { ...(window.__fs || {}), groupCalls };
