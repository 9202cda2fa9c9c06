// Avatars: the uploaded image (fetched with auth, shown via a blob: URL) or initials.
import { h } from '../dom.js';
import { blobUrl } from '../api.js';

// Twelve hues 30° apart in OKLCH, alternating two lightnesses so that neighbours differ in
// lightness too (no two closer than ΔE(OKLab) 0.089). Each keeps white initials at a
// contrast of at least 4.8:1; the same colours serve both themes.
export const AVATAR_COLORS = [
  '#c84341', '#864404', '#8f6b02', '#535a02', '#028321', '#036150',
  '#017e88', '#015b80', '#416bd5', '#633cac', '#a74dad', '#9f2061',
];

// FNV-1a over the UTF-16 units, then MurmurHash3's finaliser so that keys differing only in
// their last characters (usernames like alice1/alice2, sequential ids) spread over all colours.
function hash(key) {
  let x = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) x = Math.imul(x ^ key.charCodeAt(i), 0x01000193);
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

// The colour for a person: keyed by the username (unique and never changes), else the id.
export function avatarColor(user) {
  const key = user?.username || user?.id || '';
  return AVATAR_COLORS[hash(key) % AVATAR_COLORS.length];
}

export function avatar(user, size = 'md', { presence = false } = {}) {
  const name = user ? (user.display_name || user.username || '?') : '?';
  const initials = name.split(/\s+/).filter(Boolean).slice(0, 2).map((w) => [...w][0]).join('').toUpperCase() || '?';
  const el = h('span', { class: `avatar avatar-${size}`, 'aria-hidden': 'true' }, h('span', { class: 'avatar-initials', text: initials }));
  el.style.backgroundColor = avatarColor(user);
  if (user?.avatar_url) {
    blobUrl(user.avatar_url).then((url) => {
      el.replaceChildren(h('img', { src: url, alt: '' }));
      if (presence) el.append(dot);
    }).catch(() => {});
  }
  // online: null while our socket is down (state/users.js): unknown, not as it last was.
  const state = user?.online === null ? 'unknown' : user?.online ? 'online' : 'offline';
  const dot = h('span', { class: `presence ${state}` });
  if (presence) el.append(dot);
  return el;
}
