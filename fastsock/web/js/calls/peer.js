// One RTCPeerConnection for a 1:1 call: the caller's device offers, the callee's answers, and
// both trickle ICE candidates (`candidate: null` when gathering ends). Remote candidates that
// arrive before the remote description are queued until it is set. Signals are applied one at
// a time, in arrival order.

// A candidate as sent over the wire: only the fields that are set.
export function cleanCandidate(c) {
  const out = {};
  for (const key of ['candidate', 'sdpMid', 'sdpMLineIndex', 'usernameFragment']) {
    if (c[key] !== null && c[key] !== undefined) out[key] = c[key];
  }
  return out;
}

export class Peer {
  // config: {iceServers, iceTransportPolicy}; send(signal) gets {sdp} or {candidate}.
  constructor({ config, local, send, onTrack, onState }) {
    this.send = send;
    this.onState = onState;
    this.pc = new RTCPeerConnection({
      iceServers: config.iceServers,
      iceTransportPolicy: config.iceTransportPolicy,
      bundlePolicy: 'max-bundle',
    });
    this.remote = new MediaStream();
    this.queue = [];
    this.chain = Promise.resolve();
    this.closed = false;
    if (local) for (const track of local.getTracks()) this.pc.addTrack(track, local);
    this.pc.ontrack = (ev) => {
      if (!this.remote.getTracks().includes(ev.track)) this.remote.addTrack(ev.track);
      onTrack?.(ev.track);
    };
    this.pc.onicecandidate = (ev) => {
      const c = ev.candidate;
      this.send({ candidate: c && c.candidate ? cleanCandidate(c.toJSON()) : null });
    };
    const report = () => { if (!this.closed) this.onState?.(this.state()); };
    this.pc.onconnectionstatechange = report;
    this.pc.oniceconnectionstatechange = report;
  }

  // 'new' | 'connecting' | 'connected' | 'disconnected' | 'failed' | 'closed'
  state() {
    const pc = this.pc;
    if (pc.connectionState) return pc.connectionState;
    return { checking: 'connecting', completed: 'connected' }[pc.iceConnectionState] || pc.iceConnectionState;
  }

  run(step) {
    this.chain = this.chain.then(step).catch((err) => {
      if (!this.closed) console.warn('call signaling:', err);
    });
    return this.chain;
  }

  // The caller's side: make and send an offer (iceRestart after the connection failed).
  offer({ iceRestart = false } = {}) {
    return this.run(async () => {
      if (this.closed) return;
      const offer = await this.pc.createOffer({ iceRestart });
      await this.pc.setLocalDescription(offer);
      this.send({ sdp: { type: offer.type, sdp: offer.sdp } });
    });
  }

  handle(signal) {
    return this.run(() => this.apply(signal));
  }

  async apply(signal) {
    const pc = this.pc;
    if (this.closed) return;
    if (signal.sdp) {
      const { type, sdp } = signal.sdp;
      if (type === 'offer') {
        if (pc.signalingState === 'have-local-offer') await pc.setLocalDescription({ type: 'rollback' });
        await pc.setRemoteDescription({ type, sdp });
        await this.flush();
        const answer = await pc.createAnswer();
        await pc.setLocalDescription(answer);
        this.send({ sdp: { type: answer.type, sdp: answer.sdp } });
      } else if (type === 'answer') {
        if (pc.signalingState !== 'have-local-offer') return; // a repeat (re-sent after a reconnect)
        await pc.setRemoteDescription({ type, sdp });
        await this.flush();
      }
    } else if ('candidate' in signal) {
      if (!pc.remoteDescription) this.queue.push(signal.candidate);
      else await this.addCandidate(signal.candidate);
    }
  }

  async flush() {
    const queued = this.queue;
    this.queue = [];
    for (const c of queued) await this.addCandidate(c);
  }

  async addCandidate(c) {
    try {
      // null: the other side has no more candidates (end-of-candidates).
      if (c === null) await this.pc.addIceCandidate();
      else await this.pc.addIceCandidate(c);
    } catch (err) {
      // A candidate from before an ICE restart, or end-of-candidates an older browser does not
      // take: neither matters to the connection.
      if (c !== null) console.debug('ICE candidate not added:', err.message);
    }
  }

  // Fresh TURN credentials during a long call.
  setConfiguration({ iceServers, iceTransportPolicy }) {
    if (this.closed) return;
    this.pc.setConfiguration({ ...this.pc.getConfiguration(), iceServers, iceTransportPolicy });
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    this.pc.ontrack = null;
    this.pc.onicecandidate = null;
    this.pc.onconnectionstatechange = null;
    this.pc.oniceconnectionstatechange = null;
    this.pc.close();
    this.remote.getTracks().forEach((t) => t.stop());
  }
}
