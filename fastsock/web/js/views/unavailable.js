// The screen for a sign-in that could not be completed because the server did not answer as
// it should (down, restarting, a proxy error): the login itself is still good, so it says so
// and tries again, rather than asking for the password.
import { h } from '../dom.js';

export function renderUnavailable(root, { reason, retryIn, onRetry }) {
  const again = h('button', {
    class: 'btn btn-primary btn-block', type: 'button', 'data-testid': 'unavailable-retry',
    onclick: () => { again.disabled = true; onRetry(); },
  }, 'Try again now');
  root.replaceChildren(h('main', { class: 'auth-screen', 'data-testid': 'unavailable' },
    h('div', { class: 'auth-card stack', role: 'alert' },
      h('div', { class: 'brand' }, h('span', { class: 'brand-mark', 'aria-hidden': 'true', text: '⚡' }), h('h1', { text: 'FastSock' })),
      h('p', { 'data-testid': 'unavailable-text', text: `Couldn't reach the server (${reason}). You are still signed in; trying again in ${Math.round(retryIn / 1000)} s.` }),
      again)));
  again.focus();
}
