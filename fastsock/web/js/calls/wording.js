// Words for calls, from the viewer's side (caller or callee): timeline entries, room-list
// previews, notifications, and the final line of the call screen. Group calls (`kind:
// "group"`) are worded for everyone alike: "Group call · 12 min · 4 people".

export const mediaWord = (media) => (media === 'video' ? 'video' : 'voice');
const Media = (media) => (media === 'video' ? 'Video' : 'Voice');

// 65 -> "1:05", 3725 -> "1:02:05".
export function fmtDuration(seconds) {
  const s = Math.max(0, Math.floor(seconds || 0));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return hh ? `${hh}:${String(mm).padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
}

// 45 -> "45 s", 720 -> "12 min", 3900 -> "1 h 5 min" (a group call's length in words).
export function fmtSpan(seconds) {
  const s = Math.max(0, Math.round(seconds || 0));
  if (s < 60) return `${s} s`;
  const minutes = Math.round(s / 60);
  if (minutes < 60) return `${minutes} min`;
  const m = minutes % 60;
  return m ? `${Math.floor(minutes / 60)} h ${m} min` : `${minutes / 60} h`;
}

export const people = (n) => `${n} ${n === 1 ? 'person' : 'people'}`;

// Why the server ended a 1:1 call (`end_reason`): a device's connection dropped, or the call
// server restarted and could not carry the call on (`server_lost`).
const END_REASONS = { connection_lost: 'connection lost', server_lost: 'the call server restarted' };

// `text`, then the reason the call ended after `sep`, if it is worth saying: an unanswered
// call is worded by its outcome, so of those only a restart is said.
function withReason(text, sep, call, { answered }) {
  const reason = call?.end_reason;
  const words = answered || reason === 'server_lost' ? END_REASONS[reason] : undefined;
  return words ? `${text}${sep}${words}` : text;
}
export const isGroupCall = (call) => call?.kind === 'group';

// The person a call entry is about: the other side of a 1:1 call, the starter of a group call.
export function callPartnerId(call, meId) {
  if (isGroupCall(call)) return call.caller_id;
  return call.caller_id === meId ? call.callee_id : call.caller_id;
}

// A finished group call: nobody missed it (there was a "Join" all along), so never red.
function groupSummary(call, meId, starterName) {
  const count = (call.participant_ids || []).length;
  const text = `Group call · ${fmtSpan(call.duration_s)} · ${people(count)}`;
  const started = call.caller_id === meId ? `You started a ${mediaWord(call.media)} call` : `${Media(call.media)} call started by ${starterName}`;
  const bits = [started];
  if (meId && call.participant_ids && !call.participant_ids.includes(meId)) bits.push("you weren't in it");
  if (call.end_reason === 'worker_lost') bits.push('its call server stopped');
  if (call.end_reason === 'no_worker') bits.push('its call server shut down');
  return { text, detail: bits.join(' · '), missed: false };
}

// A finished call as the viewer sees it: {text, detail, missed} where `missed` marks the
// calls shown in red (a call the viewer missed, or that did not get through). `partnerName`:
// the other side of a 1:1 call, the starter of a group call.
export function callSummary(call, meId, partnerName) {
  if (isGroupCall(call)) return groupSummary(call, meId, partnerName);
  const outgoing = call.caller_id === meId;
  const kind = mediaWord(call.media);
  const direction = `${outgoing ? 'Outgoing' : 'Incoming'} ${kind} call`;
  switch (call.outcome) {
    case 'completed':
      return { text: `${Media(call.media)} call · ${fmtDuration(call.duration_s)}`, detail: withReason(direction, ' · ', call, { answered: true }), missed: false };
    case 'declined':
      return outgoing
        ? { text: 'Call declined', detail: `${partnerName} declined your ${kind} call`, missed: true }
        : { text: `Declined ${kind} call`, detail: `You declined ${partnerName}'s call`, missed: false };
    case 'missed':
      return outgoing
        ? { text: 'No answer', detail: `${partnerName} didn't answer your ${kind} call`, missed: true }
        : { text: `Missed ${kind} call`, detail: `${partnerName} called you`, missed: true };
    case 'cancelled':
      return outgoing
        ? { text: `Cancelled ${kind} call`, detail: withReason(direction, ' · ', call, { answered: false }), missed: false }
        : { text: `Missed ${kind} call`, detail: withReason(`${partnerName} called you`, ' · ', call, { answered: false }), missed: true };
    case 'busy':
      return outgoing
        ? { text: `${partnerName} was busy`, detail: `They were in another call`, missed: true }
        : { text: `Missed ${kind} call`, detail: `${partnerName} called while you were in another call`, missed: true };
    case 'unavailable':
      return outgoing
        ? { text: `${partnerName} was unavailable`, detail: `They were not connected`, missed: true }
        : { text: `Missed ${kind} call`, detail: `${partnerName} called while you were away`, missed: true };
    default:
      return { text: `${Media(call.media)} call`, detail: direction, missed: false };
  }
}

// The room-list line for a call entry.
export function callPreview(call, meId, partnerName) {
  const { text } = callSummary(call, meId, partnerName);
  return `${call.media === 'video' ? '🎥' : '📞'} ${text}`;
}

// The last words of the call screen (or the incoming dialog) when a call ends.
export function finalText(type, call, { meId, partnerName, here }) {
  const outgoing = call ? call.caller_id === meId : true;
  switch (type) {
    case 'call.declined': return outgoing ? `${partnerName} declined the call` : (here ? 'Call declined' : 'Declined on another device');
    case 'call.cancelled': return withReason(outgoing ? 'Call cancelled' : `Missed call from ${partnerName}`, ' — ', call, { answered: false });
    case 'call.missed': return outgoing ? 'No answer' : `Missed call from ${partnerName}`;
    case 'call.busy': return `${partnerName} is in another call`;
    case 'call.unavailable': return `${partnerName} is unavailable — they'll see a missed call`;
    case 'call.ended':
      return `${withReason('Call ended', ' — ', call, { answered: true })} · ${fmtDuration(call?.duration_s || 0)}`;
    default: return 'Call ended';
  }
}

// `call.invite` refused (an `error` reply, or no reply).
export function inviteErrorText(err) {
  switch (err.code) {
    case 'conflict': return "You're already in a call (perhaps on another device).";
    case 'rate_limited': return `Too many calls in a short time — try again in ${Math.ceil(err.retryAfter || 60)} s.`;
    case 'offline': return "You're offline — the call was not placed.";
    case 'connection_lost': return 'The connection dropped — the call was not placed. Try again.';
    default: return `The call could not be placed: ${err.message}`;
  }
}

// --- group calls: joining, the worker, the end ----------------------------------------------

// `call.unavailable {room_id, reason}`: why no call server took the call.
export function unavailableText(reason) {
  switch (reason) {
    case 'no_worker': return 'No call server is available right now. Try again in a moment.';
    case 'worker_full': return 'The call servers are full right now. Try again later.';
    case 'call_full': return 'This call is full: no one else can join it.';
    case 'not_configured': return 'Group calls are not set up on this server.';
    default: return 'The call is not available right now.';
  }
}

// `call.join` refused (an `error` reply, or no reply).
export function joinErrorText(err) {
  switch (err.code) {
    case 'conflict': return "You're already in a call (perhaps on another device).";
    case 'not_a_member': return "You're not a member of this group.";
    case 'rate_limited': return `Too many attempts in a short time — try again in ${Math.ceil(err.retryAfter || 60)} s.`;
    case 'offline': return "You're offline — you did not join the call.";
    case 'connection_lost': return 'The connection dropped — you did not join the call. Try again.';
    case 'unavailable': return 'The server is restarting — try again in a moment.';
    default: return `Couldn't join the call: ${err.message}`;
  }
}

export const CALL_OVER = 'The call is over.';

// The worker closed my socket with this code: the words when that ends my call (null: it
// does not, reconnect). 4403 ends it only when the call is known to be over (group.js).
export function workerClosedText(code) {
  switch (code) {
    case 4000: return "You're no longer in this call.";
    case 4403: return CALL_OVER;
    case 4410: return 'You joined this call from another tab or device.';
    case 4413: return 'The call server is full. Try again later.';
    default: return null;
  }
}

// The page cannot open a socket to the worker's address (`new WebSocket` threw).
export function workerUrlText(url) {
  if (window.location.protocol === 'https:' && /^ws:/i.test(String(url))) {
    return "The call server's address is not secure (ws:// on an https page): ask your admin.";
  }
  return "The call server's address is not valid: ask your admin.";
}

// `call.ended` of the group call I am in.
export function groupEndedText({ reason, duration_s: duration }) {
  if (reason === 'worker_lost') return 'The call ended: its call server stopped and no other could take it over.';
  if (reason === 'no_worker') return 'The call ended: its call server shut down and no other could take it over.';
  return `Call ended · ${fmtDuration(duration || 0)}`;
}
