// The WebRTC connection of an accepted 1:1 call: the Peer (peer.js) wired to `call.signal`,
// ICE restart and giving up when the connection fails, TURN credential refresh (ice.js) and
// connection-quality sampling (stats.js). `m` is the call manager (manager.js).
import { store } from '../store.js';
import { keepIceFresh } from './ice.js';
import { sendMediaState } from './media_state.js';
import { Peer } from './peer.js';
import { pollQuality, watchQuality } from './stats.js';
import { fmtDuration } from './wording.js';

const FAILED_GIVE_UP_MS = 20000; // ICE failed and a restart did not help: the call is over

const peerOf = (s) => s.peer; // what stats.js samples

export function startPeer(m, s) {
  if (s.peer) return;
  const peer = new Peer({
    config: s.ice,
    local: s.local,
    send: (signal) => {
      if (m.session !== s || !m.live(s)) return;
      store.socket.request('call.signal', { call_id: s.id, ...signal }).catch((err) => {
        if (m.live(s)) console.warn('call.signal refused:', err.message);
      });
    },
    onTrack: (track) => {
      track.addEventListener('mute', () => m.changed());
      track.addEventListener('unmute', () => m.changed());
      m.changed();
    },
    onState: (state) => onPeerState(m, s, state),
  });
  s.peer = peer;
  s.remote = peer.remote;
  for (const signal of s.early) peer.handle(signal);
  s.early = [];
  if (s.role === 'caller') peer.offer();
  // Muted (or no camera) before the call was answered: the other side learns it now.
  sendMediaState(m, s, { onlyIfOff: true });
  s.stopIce = keepIceFresh(s.ice.ttl, {
    alive: () => m.session === s && m.live(s) && Boolean(s.peer),
    apply: (ice) => {
      s.peer.setConfiguration(ice);
      s.ice = ice;
      s.iceRefreshes += 1;
    },
  });
  watchQuality(m, s, peerOf);
}

export function onPeerState(m, s, state) {
  if (m.session !== s || !m.live(s) || state === s.peerState) return;
  s.peerState = state;
  if (state === 'connected') {
    clearTimeout(s.failTimer);
    s.failTimer = null;
    s.phase = 'active';
    if (!s.connectedAt) {
      s.connectedAt = Date.now();
      s.setupMs = s.connectedAt - s.acceptedAt;
    }
    pollQuality(m, s, peerOf);
  } else if (state === 'disconnected') {
    if (s.phase === 'active') s.phase = 'reconnecting';
  } else if (state === 'failed') {
    s.phase = s.connectedAt ? 'reconnecting' : 'connecting';
    // The caller restarts ICE (a new offer); the callee answers it as usual.
    if (s.role === 'caller') s.peer.offer({ iceRestart: true });
    if (!s.failTimer) {
      s.failTimer = setTimeout(() => {
        if (m.session !== s || !m.live(s) || s.peerState === 'connected') return;
        store.socket.request('call.hangup', { call_id: s.id }).catch(() => {});
        m.finish(s, s.connectedAt
          ? `Call ended — connection lost · ${fmtDuration(m.elapsed(s))}`
          : 'Could not connect the call — the network between you may block it');
      }, FAILED_GIVE_UP_MS);
    }
  }
  m.changed();
}
