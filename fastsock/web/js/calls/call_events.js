// What the server and the page tell a 1:1 call on this device: the `call.*` events (group
// calls' are group.js's), a new WebSocket session that could not resume, leaving the page.
// `m` is the call manager (manager.js).
import { store } from '../store.js';
import { startPeer } from './connection.js';
import { ring } from './incoming.js';
import { receiveMediaState } from './media_state.js';
import { stopStream } from './media.js';
import { finalText } from './wording.js';

const END_EVENTS = ['call.declined', 'call.cancelled', 'call.missed', 'call.busy', 'call.unavailable', 'call.ended'];

export function onFrame(m, { type, data }) {
  if (!type || !type.startsWith('call.')) return;
  // Group calls are group.js's: their call.ended carries a group call, their
  // call.unavailable a reason instead of a call.
  if (data.call?.kind === 'group' || (type === 'call.unavailable' && !data.call)) return;
  const call = data.call || null;
  const callId = call?.id || data.call_id;
  const s = m.session;
  const mine = s && s.id && s.id === callId ? s : null;
  switch (type) {
    case 'call.created':
      onCreated(m, call, data.here, mine);
      break;
    case 'call.ringing':
      if (!mine) ring(m, call);
      break;
    case 'call.accepted':
      onAccepted(m, call, callId, data.here, mine);
      break;
    case 'call.signal':
      if (!mine) break;
      if (mine.peer) mine.peer.handle(data);
      else mine.early.push(data);
      break;
    case 'call.media_state':
      if (mine) receiveMediaState(m, mine, data);
      break;
    default:
      if (END_EVENTS.includes(type)) onEnd(m, type, data, callId, mine);
      break;
  }
}

// The answer to my `call.invite`: the call now rings on the callee's devices.
function onCreated(m, call, here, mine) {
  const s = m.session;
  if (s && s.role === 'caller' && !s.id && s.inviteSent && here) {
    s.id = call.id;
    s.call = call;
    if (s.cancelWhenCreated || !m.live(s)) {
      store.socket.request('call.cancel', { call_id: call.id }).catch(() => {});
    } else {
      s.phase = 'outgoing';
    }
    m.changed();
  } else if (here && !mine) {
    // Created from this device but no longer wanted (e.g. the page state was reset).
    store.socket.request('call.cancel', { call_id: call.id }).catch(() => {});
  }
}

function onAccepted(m, call, callId, here, mine) {
  const s = m.session;
  let target = mine;
  if (!target && here && s && m.live(s) && s.role === 'caller' && !s.accepted
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
  if (here) {
    if (!target || !m.live(target)) {
      // Accepted on this device, but we are no longer in it: leave at once.
      store.socket.request('call.hangup', { call_id: callId }).catch(() => {});
      return;
    }
    target.call = call;
    target.accepted = true;
    target.acceptedAt = Date.now();
    target.phase = 'connecting';
    startPeer(m, target);
    m.changed();
    return;
  }
  m.elsewhere = call;
  if (target && target.phase === 'incoming') {
    m.finish(target, 'Answered on another device', { linger: 3000 });
  } else if (target && target.phase === 'accepting') {
    stopStream(target.local);
    m.finish(target, 'Answered on another device', { linger: 3000 });
  } else {
    m.changed();
  }
}

function onEnd(m, type, data, callId, mine) {
  const s = m.session;
  if (m.elsewhere && m.elsewhere.id === callId) {
    m.elsewhere = null;
    m.changed();
  }
  // busy / unavailable answer the invite directly (no call.created first).
  const target = mine || (s && s.role === 'caller' && !s.id && s.inviteSent && data.here
    && (type === 'call.busy' || type === 'call.unavailable') ? s : null);
  if (!target) return;
  const call = data.call || null;
  target.id = callId;
  target.call = call || target.call;
  const words = { ...m.words(target), here: data.here };
  const endedCall = type === 'call.ended' ? { ...call, duration_s: data.duration_s ?? call?.duration_s, end_reason: data.reason ?? call?.end_reason } : call;
  const text = finalText(type, endedCall, words);
  const error = ['call.busy', 'call.unavailable', 'call.declined', 'call.missed'].includes(type) && target.role === 'caller';
  // Declined on this device: its dialog closes at once; any other outcome stays up a while.
  const quick = type === 'call.declined' && target.role === 'callee' && data.here;
  m.finish(target, text, quick ? { linger: 0, error } : { error });
}

export function onReady(m, { resume }) {
  const s = m.session;
  if (resume !== 'ok' && m.elsewhere) {
    // Events may have been missed: do not keep the buttons off for a call that may be over
    // (if it is not, the server answers an invite with `conflict`, which is explained).
    m.elsewhere = null;
    m.changed();
  }
  if (resume === 'ok' || !s || !s.id || !m.live(s)) return;
  // A new WebSocket session: this device is no longer the call's device on the server, so
  // signals cannot reach it. End the call now rather than after the server's grace period.
  if (['incoming', 'accepting'].includes(s.phase)) return; // still ringing: other events follow
  store.socket.request('call.hangup', { call_id: s.id }).catch(() => {});
  m.finish(s, finalText('call.ended', { duration_s: m.elapsed(s), end_reason: 'connection_lost' }, m.words(s)));
}

export function onPageHide(m) {
  const s = m.session;
  if (!s || !s.id || !m.live(s) || s.phase === 'incoming') return;
  // Leaving the page ends the call now (fire and forget: the page is going away).
  store.socket.send('call.hangup', { call_id: s.id });
}
