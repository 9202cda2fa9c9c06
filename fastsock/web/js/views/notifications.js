// Browser notifications for new messages while the tab is hidden or unfocused, per-room mute
// (stored locally; a message mentioning me or @room notifies all the same), and the
// permission request from a user gesture.
import { h, icon } from '../dom.js';
import { store } from '../store.js';
import { callSummary } from '../calls/wording.js';
import { openModal } from './modal.js';
import { mentionsMe, plainWithNames } from './mentions.js';

const muteKey = () => `fs.muted.${store.me?.id}`;
export function mutedRooms() {
  try { return new Set(JSON.parse(localStorage.getItem(muteKey()) || '[]')); } catch { return new Set(); }
}
export function isMuted(roomId) { return mutedRooms().has(roomId); }
export function setMuted(roomId, muted) {
  const set = mutedRooms();
  if (muted) set.add(roomId); else set.delete(roomId);
  localStorage.setItem(muteKey(), JSON.stringify([...set]));
  store.emit('rooms');
}

// The bell: asks for permission while the browser has not been asked, says why when it blocks
// notifications (only the user can lift that, in the site settings), hidden once granted.
export function notificationButton() {
  const supported = 'Notification' in window;
  const btn = h('button', { class: 'icon-btn', type: 'button', 'data-testid': 'notifications-button' });
  const sync = () => {
    const p = supported ? Notification.permission : 'unsupported';
    btn.hidden = p !== 'default' && p !== 'denied';
    const blocked = p === 'denied';
    btn.classList.toggle('blocked', blocked);
    btn.replaceChildren(icon(blocked ? 'bellOff' : 'bell'));
    btn.setAttribute('aria-label', blocked ? 'Notifications blocked: how to allow them' : 'Enable desktop notifications');
    btn.title = blocked
      ? 'Your browser blocks notifications from this site. Click to see how to allow them.'
      : 'Enable desktop notifications';
  };
  btn.addEventListener('click', async () => {
    if (Notification.permission === 'denied') { explainBlocked(); return; }
    await Notification.requestPermission(); // from a click: a user gesture
    sync();
  });
  // Allowing them in the site settings later shows up here without a reload.
  navigator.permissions?.query({ name: 'notifications' })
    .then((status) => status.addEventListener('change', sync))
    .catch(() => {});
  sync();
  return btn;
}

function explainBlocked() {
  const ok = h('button', { class: 'btn btn-primary', type: 'button', autofocus: true, onclick: () => m.close() }, 'OK');
  const body = h('div', { class: 'stack' },
    h('p', { text: `Your browser is set to block notifications from ${location.host}, so FastSock cannot ask again. To get them:` }),
    h('ol', { class: 'steps' },
      h('li', { text: 'Click the site information icon at the left of the address bar (a padlock or sliders).' }),
      h('li', { text: 'Open “Site settings” (or “Permissions”) and set Notifications to “Allow”.' }),
      h('li', { text: 'Come back to this page; reload it if the bell still shows as blocked.' })));
  const m = openModal({ title: 'Notifications are blocked', body, footer: [ok], testid: 'notifications-blocked' });
}

export function setupNotifications({ openRoom }) {
  store.on('incoming', ({ message }) => {
    if (!('Notification' in window) || Notification.permission !== 'granted') return;
    if (message.type === 'system') return; // history lines are never news
    const away = document.visibilityState === 'hidden' || !document.hasFocus();
    const mentioned = mentionsMe(message);
    if (!away || (isMuted(message.room_id) && !mentioned)) return;
    const room = store.rooms.get(message.room_id);
    const sender = store.displayName(message.sender_id);
    const who = !mentioned ? sender : `${sender} mentioned ${message.mentions?.includes(store.me.id) ? 'you' : '@room'}`;
    const title = room && room.kind === 'group' ? `${who} in ${store.roomName(room)}` : who;
    let body = message.text ? plainWithNames(message.text, message.mentions) : (message.attachments?.length ? `📎 ${message.attachments[0].name}` : '');
    if (message.type === 'call' && message.call) body = callSummary(message.call, store.me.id, sender).text;
    try {
      const n = new Notification(title, { body, tag: message.room_id });
      n.onclick = () => { window.focus(); openRoom(message.room_id); n.close(); };
    } catch { /* some platforms only allow service-worker notifications */ }
  });
}
