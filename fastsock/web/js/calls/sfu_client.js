// The connection to an SFU worker for one group call (docs/calls.md, "Group calls"): a
// WebSocket carrying the signaling and one RTCPeerConnection carrying the media. The worker is
// the only offerer: each offer maps its m-lines (by mid) to a participant and a kind, and
// marks this device's own publishing slots `send: true`; the client answers, attaching its
// microphone and camera to those slots. The worker recycles slots (an m-line may carry someone
// else after a re-offer), so the remote media is regrouped per participant from the
// transceivers after every offer: `remote` maps a user id to a MediaStream of their tracks.
// Offers are applied one at a time, in arrival order. The worker's candidates are in its SDP
// (it sends no `candidate` frames); this device's are trickled to it.

import { cleanCandidate } from './peer.js';

const JOIN_TIMEOUT = 10000; // from opening the socket to `joined`
const PING_EVERY = 25000;
const PONG_TIMEOUT = 10000;

// Handlers (each optional): joined(data), peer(type, data) for peer.joined / peer.left /
// peer.state, speaker(userId | null), media() when the remote tracks change or a track starts
// or stops receiving, state(pcState), error(data), closed({code, reason, expected}) once.
export class WorkerConnection {
  constructor({ url, token, ice, local, publish, handlers }) {
    this.url = url;
    this.handlers = handlers;
    this.local = local;
    this.slots = {}; // mid -> {user_id, kind, send?} from the latest offer
    this.remote = new Map(); // user id -> MediaStream
    this.watched = new WeakSet(); // remote tracks whose mute/unmute we listen to
    this.chain = Promise.resolve();
    this.refs = 0;
    this.done = false;
    // First, as it throws on an address this page cannot open (malformed, ws:// from https):
    // then the caller has nothing to close.
    this.ws = new WebSocket(url);
    this.pc = new RTCPeerConnection({
      iceServers: ice.iceServers,
      iceTransportPolicy: ice.iceTransportPolicy,
      bundlePolicy: 'max-bundle',
    });
    this.pc.onicecandidate = (ev) => {
      const c = ev.candidate;
      this.send('candidate', { candidate: c && c.candidate ? cleanCandidate(c.toJSON()) : null });
    };
    this.pc.onconnectionstatechange = () => { if (!this.done) this.handlers.state?.(this.pc.connectionState); };
    this.ws.onopen = () => this.send('join', { token, publish });
    this.ws.onmessage = (ev) => this.onFrame(ev.data);
    this.ws.onclose = (ev) => this.end({ code: ev.code, reason: ev.reason || '', expected: false });
    this.ws.onerror = () => { /* onclose follows */ };
    this.joinTimer = setTimeout(() => this.drop('join_timeout'), JOIN_TIMEOUT);
  }

  send(type, data) {
    if (this.done || this.ws.readyState !== WebSocket.OPEN) return;
    this.ws.send(JSON.stringify({ type, data, ref: `w${(this.refs += 1)}` }));
  }

  onFrame(raw) {
    if (this.done) return;
    let frame;
    try { frame = JSON.parse(raw); } catch { return; }
    const data = frame.data || {};
    switch (frame.type) {
      case 'joined':
        clearTimeout(this.joinTimer);
        this.pingTimer = setInterval(() => this.ping(), PING_EVERY);
        this.handlers.joined?.(data);
        break;
      case 'offer':
        this.run(() => this.answer(data));
        break;
      case 'peer.joined':
      case 'peer.left':
      case 'peer.state':
        this.handlers.peer?.(frame.type, data);
        break;
      case 'speaker':
        this.handlers.speaker?.(data.user_id ?? null);
        break;
      case 'pong':
        clearTimeout(this.pongTimer);
        break;
      case 'error':
        this.handlers.error?.(data);
        break;
      default:
        break;
    }
  }

  run(step) {
    this.chain = this.chain.then(step).catch((err) => {
      if (!this.done) console.warn('group call signaling:', err);
    });
    return this.chain;
  }

  localTrack(kind) {
    const tracks = kind === 'video' ? this.local?.getVideoTracks() : this.local?.getAudioTracks();
    return tracks?.[0] || null;
  }

  async answer({ revision, sdp, streams }) {
    if (this.done) return;
    const pc = this.pc;
    this.slots = streams || {};
    await pc.setRemoteDescription({ type: 'offer', sdp: sdp.sdp });
    await this.attachLocal();
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    this.send('answer', { revision, sdp: { type: answer.type, sdp: answer.sdp } });
    this.regroup();
  }

  // My publishing slots send my microphone / camera (nothing if I have none of that kind);
  // every other slot receives. Also run when my camera is added without a new offer.
  async attachLocal() {
    for (const t of this.pc.getTransceivers()) {
      const slot = t.mid === null ? null : this.slots[t.mid];
      if (!slot || t.stopped) continue;
      if (slot.send) {
        const track = this.localTrack(slot.kind);
        t.direction = track ? 'sendonly' : 'inactive';
        if (t.sender.track !== track) await t.sender.replaceTrack(track);
      } else if (t.direction !== 'recvonly') {
        t.direction = 'recvonly';
        if (t.sender.track) await t.sender.replaceTrack(null);
      }
    }
  }

  // Each participant's MediaStream holds the receiving tracks the latest offer maps to them.
  regroup() {
    const want = new Map(); // user id -> Set(track)
    for (const t of this.pc.getTransceivers()) {
      const slot = t.mid === null ? null : this.slots[t.mid];
      if (!slot || slot.send || t.stopped || !t.currentDirection || t.currentDirection === 'inactive') continue;
      if (!want.has(slot.user_id)) want.set(slot.user_id, new Set());
      const track = t.receiver.track;
      want.get(slot.user_id).add(track);
      if (!this.watched.has(track)) {
        this.watched.add(track);
        const tell = () => { if (!this.done) this.handlers.media?.(); };
        track.addEventListener('mute', tell);
        track.addEventListener('unmute', tell);
      }
    }
    for (const [userId, stream] of this.remote) {
      const tracks = want.get(userId);
      for (const track of stream.getTracks()) if (!tracks?.has(track)) stream.removeTrack(track);
      if (!tracks) this.remote.delete(userId);
    }
    for (const [userId, tracks] of want) {
      let stream = this.remote.get(userId);
      if (!stream) {
        stream = new MediaStream();
        this.remote.set(userId, stream);
      }
      for (const track of tracks) if (!stream.getTracks().includes(track)) stream.addTrack(track);
    }
    this.handlers.media?.();
  }

  // My local stream changed (a camera turned on): attach what the current slots allow now,
  // and tell the worker what I publish so that it offers a slot for the new kind.
  publish(local, what) {
    this.local = local;
    this.run(() => this.attachLocal());
    this.send('publish', what);
  }

  sendState(state) { this.send('state', state); }

  ping() {
    if (this.done) return;
    this.send('ping', {});
    clearTimeout(this.pongTimer);
    this.pongTimer = setTimeout(() => this.drop('ping_timeout'), PONG_TIMEOUT);
  }

  // Fresh TURN credentials during a long call.
  setConfiguration({ iceServers, iceTransportPolicy }) {
    if (this.done) return;
    this.pc.setConfiguration({ ...this.pc.getConfiguration(), iceServers, iceTransportPolicy });
  }

  // The worker did not answer in time: give up on this socket as if it had dropped.
  drop(reason) {
    if (this.done) return;
    try { this.ws.close(4000, reason); } catch { /* already closing */ }
    this.end({ code: 0, reason, expected: false });
  }

  // Leaving the call: say so to the worker, then close.
  leave() {
    this.send('leave', {});
    this.close();
  }

  // Closing without leaving (moving to another worker, the call ended).
  close() {
    if (this.done) return;
    try { this.ws.close(1000); } catch { /* already closing */ }
    this.end({ code: 1000, reason: '', expected: true });
  }

  end(info) {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.joinTimer);
    clearInterval(this.pingTimer);
    clearTimeout(this.pongTimer);
    this.ws.onopen = null;
    this.ws.onmessage = null;
    this.ws.onclose = null;
    this.pc.onicecandidate = null;
    this.pc.onconnectionstatechange = null;
    this.pc.close();
    for (const stream of this.remote.values()) stream.getTracks().forEach((t) => t.stop());
    this.handlers.closed?.(info);
  }
}
