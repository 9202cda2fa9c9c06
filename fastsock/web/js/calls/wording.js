// Words for calls, from the viewer's side (caller or callee): timeline entries, room-list
// previews, notifications, and the final line of the call screen.

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

// A finished call as the viewer sees it: {text, detail, missed} where `missed` marks the
// calls shown in red (a call the viewer missed, or that did not get through).
export function callSummary(call, meId, partnerName) {
  const outgoing = call.caller_id === meId;
  const kind = mediaWord(call.media);
  const direction = `${outgoing ? 'Outgoing' : 'Incoming'} ${kind} call`;
  switch (call.outcome) {
    case 'completed': {
      const lost = call.end_reason === 'connection_lost' ? ' · connection lost' : '';
      return { text: `${Media(call.media)} call · ${fmtDuration(call.duration_s)}`, detail: `${direction}${lost}`, missed: false };
    }
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
        ? { text: `Cancelled ${kind} call`, detail: direction, missed: false }
        : { text: `Missed ${kind} call`, detail: `${partnerName} called you`, missed: true };
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
    case 'call.cancelled': return outgoing ? 'Call cancelled' : `Missed call from ${partnerName}`;
    case 'call.missed': return outgoing ? 'No answer' : `Missed call from ${partnerName}`;
    case 'call.busy': return `${partnerName} is in another call`;
    case 'call.unavailable': return `${partnerName} is unavailable — they'll see a missed call`;
    case 'call.ended': {
      const lost = call?.end_reason === 'connection_lost' ? ' — connection lost' : '';
      return `Call ended${lost} · ${fmtDuration(call?.duration_s || 0)}`;
    }
    default: return 'Call ended';
  }
}
