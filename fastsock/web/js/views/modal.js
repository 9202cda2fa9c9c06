// Modal dialogs: focus moves in, Tab is trapped, Escape closes, focus returns to the opener.
import { h, icon } from '../dom.js';

const FOCUSABLE = 'button:not([disabled]), [href], input:not([disabled]), select, textarea, [tabindex]:not([tabindex="-1"])';
// Open dialogs, innermost last: only that one answers keys (a confirmation over group details
// must not let Escape close both).
const stack = [];

export function openModal({ title, body, footer, testid, onClose, wide = false }) {
  const opener = document.activeElement;
  const titleId = `modal-title-${Math.random().toString(36).slice(2)}`;
  const close = () => {
    const at = stack.indexOf(backdrop);
    if (at < 0) return; // already closed
    stack.splice(at, 1);
    backdrop.remove();
    document.removeEventListener('keydown', onKey, true);
    onClose?.();
    if (opener && opener.isConnected) opener.focus();
  };
  const dialog = h('div', { class: `modal${wide ? ' modal-wide' : ''}`, role: 'dialog', 'aria-modal': 'true', 'aria-labelledby': titleId, 'data-testid': testid },
    h('header', { class: 'modal-header' },
      h('h2', { id: titleId, text: title }),
      h('button', { class: 'icon-btn', type: 'button', 'aria-label': 'Close', onclick: close }, icon('close'))),
    h('div', { class: 'modal-body' }, body),
    footer ? h('footer', { class: 'modal-footer' }, footer) : null);
  const backdrop = h('div', { class: 'backdrop', onmousedown: (ev) => { if (ev.target === backdrop) close(); } }, dialog);
  function onKey(ev) {
    if (!backdrop.isConnected || stack[stack.length - 1] !== backdrop) return;
    if (ev.key === 'Escape') {
      if (document.querySelector('.popover')) return;
      ev.preventDefault();
      ev.stopPropagation();
      close();
    } else if (ev.key === 'Tab') {
      const items = [...dialog.querySelectorAll(FOCUSABLE)].filter((el) => el.offsetParent !== null);
      if (!items.length) return;
      const first = items[0];
      const last = items[items.length - 1];
      if (ev.shiftKey && document.activeElement === first) { ev.preventDefault(); last.focus(); }
      else if (!ev.shiftKey && document.activeElement === last) { ev.preventDefault(); first.focus(); }
    }
  }
  document.addEventListener('keydown', onKey, true);
  document.body.append(backdrop);
  stack.push(backdrop);
  const autofocus = dialog.querySelector('[autofocus]') || dialog.querySelector('.modal-body ' + FOCUSABLE.split(',')[2]) || dialog.querySelector(FOCUSABLE);
  autofocus?.focus();
  return { close, dialog };
}

// A confirmation dialog in the page (never the browser one). Resolves true/false. The focus
// starts on the confirm button, or for a destructive action (`danger`) on Cancel: a second
// Enter (a key repeat, a double press) must not remove or delete anything.
export function confirmDialog({ title, text, confirmLabel = 'OK', danger = false }) {
  return new Promise((resolve) => {
    let result = false;
    const ok = h('button', { class: `btn ${danger ? 'btn-danger' : 'btn-primary'}`, type: 'button', onclick: () => { result = true; m.close(); } }, confirmLabel);
    const cancel = h('button', { class: 'btn', type: 'button', onclick: () => m.close() }, 'Cancel');
    const m = openModal({ title, body: h('p', { text }), footer: [cancel, ok], testid: 'confirm-dialog', onClose: () => resolve(result) });
    (danger ? cancel : ok).focus();
  });
}
