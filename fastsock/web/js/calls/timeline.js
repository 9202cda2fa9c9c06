// A call's entry in the conversation (`type: "call"` messages, whose `call` field is the call
// view): what happened, worded for this viewer, and a button to call again (a group call:
// start or join the room's call). Call entries have no edit / reaction / delete actions.
import { h, icon, fmtTime, fmtFull } from '../dom.js';
import { store } from '../store.js';
import { calls } from './manager.js';
import { groupCalls } from './group.js';
import { callPartnerId, callSummary, isGroupCall, mediaWord } from './wording.js';

export const isCall = (msg) => msg && msg.type === 'call' && Boolean(msg.call);

export function callPartner(call) {
  return callPartnerId(call, store.me.id);
}

export function callSignature(msg) {
  return JSON.stringify([msg.id, msg.version, msg.call, store.displayName(callPartner(msg.call))]);
}

export function renderCallEntry(msg) {
  const call = msg.call;
  const partnerId = callPartner(call);
  const name = store.displayName(partnerId);
  const { text, detail, missed } = callSummary(call, store.me.id, name);
  const outgoing = call.caller_id === store.me.id;
  const group = isGroupCall(call);
  const label = group || outgoing ? 'Call again' : 'Call back';
  const kindIcon = call.media === 'video' ? 'video' : 'phone';
  const what = group ? `${mediaWord(call.media)} call in ${store.roomName(store.rooms.get(msg.room_id))}` : `${mediaWord(call.media)} call with ${name}`;
  return h('div', {
    class: `call-entry${missed ? ' missed' : ''}${group ? ' group' : ''}`,
    role: 'article',
    'aria-label': `${text}. ${detail}, ${fmtTime(msg.created_at)}`,
    'data-testid': 'call-entry',
    dataset: { id: msg.id, outcome: call.outcome || '', media: call.media, direction: outgoing ? 'outgoing' : 'incoming', kind: group ? 'group' : 'direct' },
  },
  h('span', { class: 'call-entry-icon', 'aria-hidden': 'true' }, icon(missed ? 'phoneMissed' : kindIcon)),
  h('span', { class: 'call-entry-body' },
    h('span', { class: 'call-entry-text', 'data-testid': 'call-summary', text }),
    h('span', { class: 'call-entry-detail' },
      h('span', { text: `${detail} · ` }),
      h('time', { datetime: msg.created_at, title: fmtFull(msg.created_at), text: fmtTime(msg.created_at) }))),
  h('button', {
    type: 'button',
    class: 'btn btn-small call-back',
    'data-testid': 'call-back',
    'aria-label': `${label}: ${what}`,
    title: `${label} (${mediaWord(call.media)})`,
    onclick: () => (group ? groupCalls.join(msg.room_id, call.media) : calls.start(msg.room_id, call.media)),
  }, icon(kindIcon), label));
}
