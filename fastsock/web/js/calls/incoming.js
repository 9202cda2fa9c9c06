// The callee's side of a 1:1 call on this device: `call.ringing` opens a ringing session;
// answering it (the camera failing falls back to the microphone only), declining it, or
// silencing the ringtone. `m` is the call manager (manager.js).
import { store } from '../store.js';
import { getLocalMedia, stopStream } from './media.js';

// `call.ringing` for a call that is not this device's session yet.
export function ring(m, call) {
  const s = m.session;
  if (m.live(s)) {
    // In a call on this device: nothing rings. (Calling each other at the same moment, the
    // server turns our invite into an answer to theirs: call.accepted follows.)
    return;
  }
  if (s) m.dismiss(s);
  m.session = m.newSession({
    id: call.id, call, role: 'callee', phase: 'incoming', media: call.media,
    roomId: call.room_id, partnerId: call.caller_id,
  });
  store.fetchUser(call.caller_id);
  m.changed();
}

export async function accept(m, video) {
  const s = m.session;
  if (!s || s.phase !== 'incoming') return;
  s.phase = 'accepting';
  s.error = null;
  m.changed();
  let [local, ice] = await Promise.allSettled([getLocalMedia(video), m.fetchIce()]);
  if (m.session !== s || s.phase !== 'accepting') {
    if (local.status === 'fulfilled') stopStream(local.value);
    return;
  }
  if (local.status === 'rejected' && video) {
    // The camera failed: answer with the microphone only, and say why.
    const cameraError = local.reason.message;
    [local] = await Promise.allSettled([getLocalMedia(false)]);
    if (local.status === 'fulfilled') store.emit('toast', { kind: 'info', text: `${cameraError} Answering with audio only.` });
    if (m.session !== s || s.phase !== 'accepting') {
      if (local.status === 'fulfilled') stopStream(local.value);
      return;
    }
  }
  if (local.status === 'rejected' || ice.status === 'rejected') {
    if (local.status === 'fulfilled') stopStream(local.value);
    // Still ringing elsewhere and here (silently): they can fix it and retry, or decline.
    s.phase = 'incoming';
    s.silenced = true;
    s.error = local.status === 'rejected' ? local.reason.message : `Couldn't get the call servers: ${ice.reason.message}`;
    m.changed();
    return;
  }
  s.local = local.value;
  s.ice = ice.value;
  s.cameraOff = false;
  m.changed();
  store.socket.request('call.accept', { call_id: s.id }).catch((err) => {
    if (m.session !== s || s.phase !== 'accepting') return;
    m.finish(s, err.code === 'not_found' || err.code === 'conflict' ? 'The call is no longer available' : `Couldn't answer: ${err.message}`);
  });
}

export function decline(m) {
  const s = m.session;
  if (!s || (s.phase !== 'incoming' && s.phase !== 'accepting')) return;
  store.socket.request('call.reject', { call_id: s.id }).catch(() => {});
  m.finish(s, 'Call declined', { linger: 0 });
}

// Stop the ringtone on this device without declining (Escape on the dialog).
export function silence(m) {
  const s = m.session;
  if (!s || s.phase !== 'incoming' || s.silenced) return;
  s.silenced = true;
  m.changed();
}
