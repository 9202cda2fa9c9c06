// Popovers: context menus (role=menu, arrow keys) and the reaction picker.
import { h } from '../dom.js';

let current = null;

export function closePopover() {
  if (current) current.close();
}

function place(el, anchor) {
  document.body.append(el);
  const rect = el.getBoundingClientRect();
  let x; let y;
  if (anchor instanceof Element) {
    const a = anchor.getBoundingClientRect();
    x = a.right - rect.width;
    y = a.bottom + 4;
    if (y + rect.height > innerHeight - 8) y = a.top - rect.height - 4;
  } else {
    ({ x, y } = anchor);
    if (y + rect.height > innerHeight - 8) y = y - rect.height;
  }
  x = Math.max(8, Math.min(x, innerWidth - rect.width - 8));
  y = Math.max(8, Math.min(y, innerHeight - rect.height - 8));
  el.style.left = `${x}px`;
  el.style.top = `${y}px`;
}

function popover(el, anchor, itemsSelector, { horizontal = false, onClose } = {}) {
  closePopover();
  const opener = document.activeElement;
  const items = () => [...el.querySelectorAll(itemsSelector)];
  const onKey = (ev) => {
    const list = items();
    const i = list.indexOf(document.activeElement);
    const next = horizontal ? ['ArrowRight', 'ArrowDown'] : ['ArrowDown'];
    const prev = horizontal ? ['ArrowLeft', 'ArrowUp'] : ['ArrowUp'];
    if (ev.key === 'Escape') { ev.preventDefault(); ev.stopPropagation(); close(); }
    else if (next.includes(ev.key)) { ev.preventDefault(); list[(i + 1) % list.length]?.focus(); }
    else if (prev.includes(ev.key)) { ev.preventDefault(); list[(i - 1 + list.length) % list.length]?.focus(); }
    else if (ev.key === 'Tab') { close(); }
  };
  const onDown = (ev) => { if (!el.contains(ev.target)) close(false); };
  function close(restore = true) {
    if (current !== api) return;
    current = null;
    el.remove();
    document.removeEventListener('mousedown', onDown, true);
    document.removeEventListener('touchstart', onDown, true);
    el.removeEventListener('keydown', onKey);
    onClose?.();
    if (restore && opener && opener.isConnected) opener.focus();
  }
  const api = { close, el };
  current = api;
  el.addEventListener('keydown', onKey);
  place(el, anchor);
  setTimeout(() => {
    document.addEventListener('mousedown', onDown, true);
    document.addEventListener('touchstart', onDown, true);
  });
  items()[0]?.focus();
  return api;
}

// items: [{label, icon?, danger?, action, testid}]; anchor: an element or a point {x, y}.
export function openMenu(anchor, items, label = 'Message actions', { onClose } = {}) {
  const el = h('div', { class: 'popover menu', role: 'menu', 'aria-label': label, 'data-testid': 'context-menu' },
    items.map((it) => h('button', {
      type: 'button', role: 'menuitem', class: `menu-item${it.danger ? ' danger' : ''}`, 'data-testid': it.testid,
      onclick: () => { api.close(false); it.action(); },
    }, it.icon || null, it.label)));
  const api = popover(el, anchor, '[role=menuitem]', { onClose });
  return api;
}

export const COMMON_EMOJI = ['👍', '❤️', '😂', '🎉', '😮', '😢', '🙏', '👀'];

export function openReactionPicker(anchor, onPick) {
  const el = h('div', { class: 'popover emoji-picker', role: 'menu', 'aria-label': 'Add reaction', 'data-testid': 'reaction-picker' },
    COMMON_EMOJI.map((e) => h('button', {
      type: 'button', role: 'menuitem', class: 'emoji-btn', 'aria-label': `React with ${e}`, text: e,
      onclick: () => { api.close(); onPick(e); },
    })));
  const api = popover(el, anchor, '[role=menuitem]', { horizontal: true });
  return api;
}
