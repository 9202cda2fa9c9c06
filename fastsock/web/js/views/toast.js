// Toasts: short, visible status and error messages (role=status / role=alert).
import { h } from '../dom.js';

let host;
export function toast(text, kind = 'info', ms = 6000) {
  if (!host) {
    host = h('div', { class: 'toasts', 'aria-live': 'polite' });
    document.body.append(host);
  }
  const el = h('div', { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : 'status', 'data-testid': 'toast', text });
  host.append(el);
  setTimeout(() => el.remove(), ms);
}
