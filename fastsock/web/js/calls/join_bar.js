// A group conversation's "Call in progress · 3 · Join" bar (for a call that started before the
// room was opened too: room views carry `active_call`), and the room list's in-call mark.
// The header's call buttons (buttons.js) own the bar and update it.
import { h, icon } from '../dom.js';
import { store } from '../store.js';
import { groupCalls } from './group.js';
import { mediaWord, people } from './wording.js';

export function joinBar(getRoomId) {
  // The live region is the text alone (not the buttons), rewritten only when it changes.
  const text = h('span', { class: 'group-call-bar-text', role: 'status', 'data-testid': 'group-call-bar-text' });
  const join = h('button', { type: 'button', class: 'btn btn-small btn-primary', 'data-testid': 'group-call-join', onclick: () => onJoin() }, 'Join');
  const show = h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'group-call-show', onclick: () => groupCalls.join(getRoomId()) }, 'Show call');
  const mark = h('span', { class: 'group-call-bar-icon', 'aria-hidden': 'true' });
  const el = h('div', { class: 'group-call-bar', 'data-testid': 'group-call-bar', hidden: true }, mark, text, join, show);

  function onJoin() {
    const roomId = getRoomId();
    if (groupCalls.blockedReason(roomId)) { update(); return; }
    const call = groupCalls.callIn(roomId);
    groupCalls.join(roomId, call ? call.media : 'video');
  }

  function update() {
    const roomId = getRoomId();
    const room = store.rooms.get(roomId);
    const call = room && room.kind === 'group' ? groupCalls.callIn(roomId) : null;
    const here = groupCalls.inRoom(roomId);
    el.hidden = !call && !here;
    if (el.hidden) return;
    const count = call ? call.present_ids.length : 0;
    const media = call ? call.media : groupCalls.session.media;
    mark.replaceChildren(icon(media === 'video' ? 'video' : 'phone'));
    // No one in it yet: its starter is still connecting.
    let words = count ? `Call in progress · ${count}` : 'Call in progress';
    if (here) words = `You're in this call · ${people(count || 1)}`;
    if (text.textContent !== words) text.textContent = words;
    el.dataset.count = String(count);
    join.hidden = here;
    show.hidden = !here;
    if (here) return;
    const reason = groupCalls.blockedReason(roomId);
    join.replaceChildren('Join');
    const label = `Join the ${mediaWord(media)} call in ${store.roomName(room)}`;
    join.setAttribute('aria-disabled', String(Boolean(reason)));
    join.setAttribute('aria-label', reason ? `${label} — not available: ${reason}` : label);
    join.title = reason || label;
  }

  return { el, update };
}

// The room list's mark for a group room with a call in progress (null: no call).
export function callMark(roomId) {
  const call = groupCalls.callIn(roomId);
  if (!call && !groupCalls.inRoom(roomId)) return null;
  const here = groupCalls.inRoom(roomId);
  const count = call ? call.present_ids.length : 1;
  const label = here ? `You're in this call (${people(count)})` : `Call in progress (${people(count)})`;
  return h('span', { class: `room-call-mark${here ? ' here' : ''}`, 'data-testid': 'room-call-mark', title: label, 'aria-label': label, role: 'img' },
    icon((call?.media || 'video') === 'video' ? 'video' : 'phone'));
}

// For the room list's label (read by screen readers).
export function callWords(roomId) {
  if (groupCalls.inRoom(roomId)) return ", you're in its call";
  return groupCalls.callIn(roomId) ? ', call in progress' : '';
}
