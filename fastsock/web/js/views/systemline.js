// A room history line (`type: "system"` messages, docs/api.md "System lines"): what changed in
// a group, worded from the viewer's side ("You added Bob and Carol", "Alice added you", "Bob
// left"), centred and muted, with its time. Names come from the users state, so a renamed
// profile shows at once. History lines have no actions: no menu, reactions, ticks or replies.
import { h, fmtTime, fmtFull, listNames } from '../dom.js';
import { store } from '../store.js';

export const isSystem = (msg) => msg && msg.type === 'system' && Boolean(msg.system);

// Me as "You" starting a sentence and "you" inside one; anyone else by name.
function person(id, start = false) {
  if (id === store.me.id) return start ? 'You' : 'you';
  return store.displayName(id);
}

// The people a line is about, me first ("Alice added you and Bob").
function people(ids = []) {
  const mineFirst = [...ids].sort((a, b) => (b === store.me.id) - (a === store.me.id));
  return listNames(mineFirst.map((id) => person(id)));
}

export function systemText(msg) {
  const s = msg.system;
  const actor = person(s.actor_id, true);
  switch (s.event) {
    case 'member_added': return `${actor} added ${people(s.user_ids)}`;
    case 'member_joined': return `${actor} joined`;
    case 'member_left': return `${actor} left`;
    case 'member_removed': {
      // A removal bans (docs/api.md "Moderation"): the room's admins, who can lift it, are told.
      const admin = s.banned && store.rooms.get(msg.room_id)?.role === 'admin';
      return `${actor} removed ${people(s.user_ids)}${admin ? " (they can't rejoin until an admin lets them back in)" : ''}`;
    }
    case 'room_renamed': return `${actor} renamed the group from ${s.old_name} to ${s.name}`;
    case 'privacy_changed': return `${actor} made the group ${s.private ? 'private' : 'public'}`;
    case 'role_changed':
      return `${actor} made ${people(s.user_ids)} ${s.role === 'admin' ? 'an admin' : 'a regular member'}`;
    case 'member_unbanned': return `${actor} let ${people(s.user_ids)} back in`;
    default: return `${actor} changed the group`; // an event newer than this client
  }
}

export function systemSignature(msg, grouped) {
  return JSON.stringify([msg.id, msg.version, systemText(msg), grouped]);
}

// `grouped`: it follows another line closely (views/conversation.js), so a run of changes
// shows its time once, on its first line (the others keep it in their label and tooltip).
export function renderSystemLine(msg, grouped = false) {
  const text = systemText(msg);
  return h('div', {
    class: `system-line${grouped ? ' grouped' : ''}`,
    role: 'article',
    'aria-label': `${text}, ${fmtTime(msg.created_at)}`,
    title: grouped ? fmtFull(msg.created_at) : null,
    'data-testid': 'system-line',
    dataset: { id: msg.id, event: msg.system.event },
  },
  h('span', { class: 'system-line-text', 'data-testid': 'system-line-text', dir: 'auto', text }),
  grouped ? null : h('time', { class: 'system-line-time', datetime: msg.created_at, title: fmtFull(msg.created_at), text: fmtTime(msg.created_at) }));
}
