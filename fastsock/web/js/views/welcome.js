// The pane shown while no conversation is open: a greeting and the two ways in for someone
// with nothing to pick yet (message a person, join a public group).
import { h, icon } from '../dom.js';
import { store } from '../store.js';

export function welcomePane({ onNewChat, onBrowse }) {
  const hint = h('p', { 'data-testid': 'welcome-hint' });
  const update = () => {
    hint.textContent = store.rooms.size
      ? 'Pick a conversation on the left, or start a new one.'
      : "You're not in any conversation yet. Message someone, or join a public group.";
  };
  const el = h('div', { class: 'empty-state', 'data-testid': 'empty-state' },
    h('div', { class: 'empty-icon', 'aria-hidden': 'true', text: '💬' }),
    h('h2', { text: 'Welcome to FastSock' }),
    hint,
    h('div', { class: 'welcome-actions' },
      h('button', { type: 'button', class: 'btn btn-primary', 'data-testid': 'welcome-new-chat', onclick: onNewChat }, icon('chat'), 'New chat'),
      h('button', { type: 'button', class: 'btn', 'data-testid': 'welcome-browse-public', onclick: onBrowse },
        h('span', { class: 'browse-mark', 'aria-hidden': 'true', text: '#' }), 'Browse public groups')));
  update();
  store.on('rooms', update);
  return el;
}
