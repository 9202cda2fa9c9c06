// Mute and camera: my tracks turned off and on (nothing is renegotiated) and the others told.
// A 1:1 call tells the other side with `call.media_state` and receives theirs here; a group
// call (group.js) tells the worker. `m` is the call manager (manager.js or group.js).
import { store } from '../store.js';

export function hasVideo(s) { return Boolean(s.local && s.local.getVideoTracks().length); }

// `tell(s)` lets the others know (by default the 1:1 call's `call.media_state`).
export function toggleMic(m, tell = (s) => sendMediaState(m, s)) {
  const s = m.session;
  if (!s?.local) return;
  s.micMuted = !s.micMuted;
  s.local.getAudioTracks().forEach((t) => { t.enabled = !s.micMuted; });
  tell(s);
  m.changed();
}

export function toggleCamera(m, tell = (s) => sendMediaState(m, s)) {
  const s = m.session;
  if (!s || !hasVideo(s)) return;
  s.cameraOff = !s.cameraOff;
  s.local.getVideoTracks().forEach((t) => { t.enabled = !s.cameraOff; });
  tell(s);
  m.changed();
}

// Tell the other side that my microphone or camera is off (it would see black frames and
// hear silence otherwise). Only once the call is accepted: the server relays it to the
// other device in the call.
export function sendMediaState(m, s, { onlyIfOff = false } = {}) {
  if (!s.id || !s.accepted || !m.live(s)) return;
  const audio = !s.micMuted;
  const video = hasVideo(s) && !s.cameraOff;
  if (onlyIfOff && audio && (video || s.media !== 'video')) return;
  store.socket.request('call.media_state', { call_id: s.id, audio, video }).catch((err) => {
    if (m.live(s)) console.warn('call.media_state refused:', err.message);
  });
}

// The other side's `call.media_state` for session `s` (mine are echoed: ignored).
export function receiveMediaState(m, s, data) {
  if (data.from === store.me?.id) return;
  s.remoteMedia = { audio: data.audio !== false, video: data.video !== false };
  m.changed();
}
