// Browser notifications for new messages while the tab is hidden or unfocused, per-room mute
// (stored locally), and the permission request from a user gesture.
import { h, icon } from '../dom.js';
import { store } from '../store.js';
import { callSummary } from '../calls/wording.js';

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

export function notificationButton() {
  const supported = 'Notification' in window;
  const btn = h('button', { class: 'icon-btn', type: 'button', 'data-testid': 'enable-notifications' }, icon('bell'));
  const sync = () => {
    const p = supported ? Notification.permission : 'denied';
    btn.hidden = p !== 'default';
    btn.setAttribute('aria-label', 'Enable desktop notifications');
    btn.title = 'Enable desktop notifications';
  };
  btn.addEventListener('click', async () => {
    if (!supported) return;
    await Notification.requestPermission(); // from a click: a user gesture
    sync();
  });
  sync();
  return btn;
}

export function setupNotifications({ openRoom }) {
  store.on('incoming', ({ message }) => {
    if (!('Notification' in window) || Notification.permission !== 'granted') return;
    const away = document.visibilityState === 'hidden' || !document.hasFocus();
    if (!away || isMuted(message.room_id)) return;
    const room = store.rooms.get(message.room_id);
    const sender = store.displayName(message.sender_id);
    const title = room && room.kind === 'group' ? `${sender} in ${store.roomName(room)}` : sender;
    let body = message.text || (message.attachments?.length ? `📎 ${message.attachments[0].name}` : '');
    if (message.type === 'call' && message.call) body = callSummary(message.call, store.me.id, sender).text;
    try {
      const n = new Notification(title, { body, tag: message.room_id });
      n.onclick = () => { window.focus(); openRoom(message.room_id); n.close(); };
    } catch { /* some platforms only allow service-worker notifications */ }
  });
}
