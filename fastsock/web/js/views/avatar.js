// Avatars: the uploaded image (fetched with auth, shown via a blob: URL) or initials.
import { h } from '../dom.js';
import { blobUrl } from '../api.js';

const COLORS = ['#e8590c', '#2b8a3e', '#1971c2', '#9c36b5', '#c2255c', '#0c8599', '#5f3dc4', '#a61e4d'];

export function avatar(user, size = 'md', { presence = false } = {}) {
  const name = user ? (user.display_name || user.username || '?') : '?';
  const initials = name.split(/\s+/).filter(Boolean).slice(0, 2).map((w) => [...w][0]).join('').toUpperCase() || '?';
  let hash = 0;
  for (const ch of (user?.id || name)) hash = (hash * 31 + ch.charCodeAt(0)) >>> 0;
  const el = h('span', { class: `avatar avatar-${size}`, 'aria-hidden': 'true' }, h('span', { class: 'avatar-initials', text: initials }));
  el.style.backgroundColor = COLORS[hash % COLORS.length];
  if (user?.avatar_url) {
    blobUrl(user.avatar_url).then((url) => {
      el.replaceChildren(h('img', { src: url, alt: '' }));
      if (presence) el.append(dot);
    }).catch(() => {});
  }
  const dot = h('span', { class: `presence ${user?.online ? 'online' : 'offline'}` });
  if (presence) el.append(dot);
  return el;
}
