// Connection banner: "Disconnected — reconnecting in Ns" / "Reconnecting…" / "Back online".
import { h } from '../dom.js';
import { store } from '../store.js';

export function renderBanner() {
  const text = h('span', { 'data-testid': 'banner-text' });
  const retry = h('button', { class: 'link-btn', type: 'button', onclick: () => store.socket.connectNow() }, 'Retry now');
  const el = h('div', { class: 'banner', role: 'status', 'aria-live': 'polite', 'data-testid': 'connection-banner', hidden: true }, text, retry);
  let tick = null;
  let hideTimer = null;
  let wasDown = false;
  const show = (kind, msg, canRetry) => {
    clearTimeout(hideTimer);
    el.hidden = false;
    el.className = `banner banner-${kind}`;
    text.textContent = msg;
    retry.hidden = !canRetry;
  };
  store.on('connection', ({ state, retryAt }) => {
    clearInterval(tick);
    if (state === 'waiting') {
      wasDown = true;
      const update = () => {
        const s = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
        show('down', `Disconnected — reconnecting in ${s}s`, true);
      };
      update();
      tick = setInterval(update, 500);
    } else if (state === 'offline') {
      wasDown = true;
      show('down', 'Disconnected — waiting for the network', false);
    } else if (state === 'connecting') {
      if (wasDown) show('busy', 'Reconnecting…', false);
    } else if (state === 'open') {
      if (wasDown) {
        wasDown = false;
        show('ok', 'Back online', false);
        hideTimer = setTimeout(() => { el.hidden = true; }, 2500);
      }
    } else {
      el.hidden = true;
    }
  });
  return el;
}
