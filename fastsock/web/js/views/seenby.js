// "Seen by": in a group, a row of small avatars under the latest message each member has
// seen, so that everyone appears once, under the message they have read up to. Like Element:
// every member but me, the message's sender included, and sending a message counts as having
// seen it (the server moves no read pointer on a send). DMs have none: their ticks say Read.
import { h, listNames } from '../dom.js';
import { store } from '../store.js';
import { avatar } from './avatar.js';

const MAX_AVATARS = 5; // then "+N"
const MAX_NAMED = 3; // a label past this names two: "Seen by Alice, Bob and 3 others"

// Message id -> the ids of the members whose latest seen message it is, among `messages`
// (the room's loaded window, oldest first); empty unless the room is a group. A member whose
// position lies beyond the loaded window (newer pages not loaded) is left out rather than
// shown under the last loaded message.
export function seenBy(roomId, messages) {
  const out = new Map();
  const room = store.rooms.get(roomId);
  const loaded = messages.filter((m) => m.id);
  if (room?.kind !== 'group' || !loaded.length) return out;
  const pointers = store.readPointers.get(roomId);
  const newest = loaded[loaded.length - 1].id;
  const beyond = store.windows.get(roomId)?.hasNewer;
  for (const member of store.roomMembers(roomId)) {
    const userId = member.user_id;
    if (userId === store.me.id) continue;
    const ptr = pointers?.get(userId);
    if (beyond && ptr && ptr > newest) continue;
    let at = null;
    // A member starts "caught up" at the newest message when they (re)join: their pointer
    // says nothing of what was sent before (store.memberWhenSent). A history line's actor has
    // not seen it for having acted (and may have left).
    for (const m of loaded) {
      const seen = ptr && m.id <= ptr && store.memberWhenSent(member, m);
      if (seen || (m.sender_id === userId && m.type !== 'system')) at = m.id;
    }
    if (!at) continue;
    if (!out.has(at)) out.set(at, []);
    out.get(at).push(userId);
  }
  for (const ids of out.values()) ids.sort((a, b) => store.displayName(a).localeCompare(store.displayName(b)));
  return out;
}

// What the row shows: re-rendered when a reader, a name or an avatar changes.
export function seenSignature(userIds) {
  return JSON.stringify(userIds.map((id) => {
    const u = store.user(id);
    return [id, store.displayName(id), u?.avatar_url];
  }));
}

export function seenLabel(names) {
  if (names.length <= MAX_NAMED) return `Seen by ${listNames(names)}`;
  const others = names.length - 2;
  return `Seen by ${names.slice(0, 2).join(', ')} and ${others} others`;
}

export function renderSeenBy(userIds) {
  const names = userIds.map((id) => store.displayName(id));
  const shown = Math.min(userIds.length, MAX_AVATARS);
  const extra = userIds.length - shown;
  return h('div', {
    class: 'seen-by', role: 'img', 'data-testid': 'seen-by',
    'aria-label': seenLabel(names), title: `Seen by ${listNames(names)}`,
  },
  userIds.slice(0, shown).map((id) => {
    const el = avatar(store.user(id) || { id, display_name: store.displayName(id) }, 'sm');
    el.dataset.user = id;
    el.dataset.testid = 'seen-by-avatar';
    return el;
  }),
  extra ? h('span', { class: 'seen-by-more', 'aria-hidden': 'true', 'data-testid': 'seen-by-more', text: `+${extra}` }) : null);
}
