// The room list: DMs and groups, newest activity first, preview (or the unsent draft), unread
// and mention badges (the server's counts), mute and in-call marks.
import { h, fmtTime } from '../dom.js';
import { store } from '../store.js';
import { avatar } from './avatar.js';
import { isMuted } from './notifications.js';
import { plainWithNames } from './mentions.js';
import { callPartnerId, callPreview } from '../calls/wording.js';
import { callMark, callWords } from '../calls/join_bar.js';
import { isSystem, systemText } from './systemline.js';

// The server caps unread_count at 100 (docs/api.md): 100 means "100 or more".
export const shownCount = (n) => (n > 99 ? '99+' : String(n));

function preview(room) {
  const m = room.last_message;
  if (!m) return 'No messages yet';
  if (m.type === 'call' && m.call) {
    return callPreview(m.call, store.me.id, store.displayName(callPartnerId(m.call, store.me.id)));
  }
  if (isSystem(m)) return systemText(m);
  const who = m.sender_id === store.me.id ? 'You' : store.displayName(m.sender_id);
  // The markup stripped, as in notifications; of the text's start only (one line shows), as
  // this runs on every render of the list.
  let body = plainWithNames(m.text.slice(0, 300), m.mentions);
  if (!body && m.attachments?.length) body = `📎 ${m.attachments[0].name}`;
  return room.kind === 'direct' && m.sender_id !== store.me.id ? body : `${who}: ${body}`;
}

export function renderRoomList(el, { current, onOpen }) {
  const rooms = store.sortedRooms();
  if (!rooms.length) {
    el.replaceChildren(h('p', { class: 'empty-list', text: 'No conversations yet. Start one with “New chat” or “New group”, or join one from “Browse public groups”.' }));
    return;
  }
  const focused = document.activeElement?.closest?.('.room-item')?.dataset.roomId;
  const items = rooms.map((room) => {
    const name = store.roomName(room);
    const unread = room.unread_count || 0;
    const mentioned = room.mention_count || 0;
    const partnerId = store.dmPartner(room);
    const pic = room.kind === 'direct'
      ? avatar(store.user(partnerId) || { id: partnerId, display_name: name }, 'md', { presence: true })
      : h('span', { class: 'avatar avatar-md avatar-group', 'aria-hidden': 'true', text: '#' });
    const draft = store.draftPreview(room.id); // shown instead of the preview
    const label = `${name}${unread ? `, ${shownCount(unread)} unread` : ''}${mentioned ? `, ${shownCount(mentioned)} mentioning you` : ''}${isMuted(room.id) ? ', muted' : ''}${callWords(room.id)}. ${draft ? `Draft: ${draft}` : preview(room)}`;
    const btn = h('button', {
      type: 'button',
      class: `room-item${room.id === current ? ' active' : ''}${unread ? ' unread' : ''}`,
      'aria-current': room.id === current ? 'page' : undefined,
      'aria-label': label,
      'data-testid': 'room-item',
      dataset: { roomId: room.id },
      onclick: () => onOpen(room.id),
    },
    pic,
    h('span', { class: 'room-text' },
      h('span', { class: 'room-top' },
        h('span', { class: 'room-name', 'data-testid': 'room-name', text: name }),
        isMuted(room.id) ? h('span', { class: 'muted-mark', title: 'Muted', text: '🔕' }) : null,
        callMark(room.id),
        room.last_message ? h('time', { class: 'room-time', text: fmtTime(room.last_message.created_at) }) : null),
      h('span', { class: 'room-bottom' },
        draft
          ? h('span', { class: 'room-preview', 'data-testid': 'room-preview' }, h('span', { class: 'draft-mark', 'data-testid': 'draft-mark', text: 'Draft:' }), ` ${draft}`)
          : h('span', { class: 'room-preview', 'data-testid': 'room-preview', text: preview(room) }),
        mentioned ? h('span', { class: 'badge mention-badge', 'data-testid': 'mention-badge', title: `${shownCount(mentioned)} unread message${mentioned > 1 ? 's' : ''} mentioning you`, text: `@${shownCount(mentioned)}` }) : null,
        unread ? h('span', { class: 'badge', 'data-testid': 'unread-badge', text: shownCount(unread) }) : null)));
    return btn;
  });
  el.replaceChildren(...items);
  if (focused) el.querySelector(`[data-room-id="${focused}"]`)?.focus();
}
