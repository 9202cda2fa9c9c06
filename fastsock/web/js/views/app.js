// The signed-in layout: sidebar (rooms, search, actions) + conversation (or the welcome pane),
// banner, toasts.
import { h, icon } from '../dom.js';
import { store } from '../store.js';
import { renderRoomList, shownCount } from './roomlist.js';
import { Conversation } from './conversation.js';
import { renderBanner } from './banner.js';
import { setupNotifications, notificationButton } from './notifications.js';
import { openGroupModal } from './groupmodal.js';
import { openDmModal } from './dmmodal.js';
import { openPublicGroups } from './groupinfo.js';
import { welcomePane } from './welcome.js';
import { openProfile } from './profile.js';
import { SearchPanel } from './search.js';
import { toggleTheme, currentTheme } from './theme.js';
import { avatar } from './avatar.js';
import { toast } from './toast.js';
import { mountCalls } from '../calls/view.js';

// Why the open conversation closed: I left it, or an admin removed me (named when known).
function closedNote({ name, actorId }) {
  const group = name || 'the conversation';
  if (actorId === store.me.id) return `You left ${group}.`;
  if (actorId && store.user(actorId)) return `${store.displayName(actorId)} removed you from ${group}.`;
  return `You are no longer a member of ${group}.`;
}

export function renderApp(root, { onLogout }) {
  const layout = h('div', { class: 'layout', 'data-testid': 'app' });
  const meButton = h('button', { class: 'me-btn', type: 'button', 'aria-label': 'Your profile', 'data-testid': 'profile-button', onclick: () => openProfile({ onLogout }) });
  const themeBtn = h('button', { class: 'icon-btn', type: 'button', 'aria-label': 'Toggle dark mode', 'data-testid': 'theme-toggle', onclick: () => { toggleTheme(); themeBtn.setAttribute('aria-pressed', String(currentTheme() === 'dark')); } }, icon('moon'));
  themeBtn.setAttribute('aria-pressed', String(currentTheme() === 'dark'));
  const renderMe = () => {
    const me = store.me;
    meButton.replaceChildren(avatar(me, 'sm'), h('span', { class: 'me-name', text: me.display_name || me.username }));
  };
  renderMe();
  store.on('users', (d) => { if (d.id === store.me?.id) renderMe(); });

  const roomList = h('nav', { class: 'room-list', 'aria-label': 'Conversations', 'data-testid': 'room-list' });
  const newChat = () => openDmModal({ onOpen: openRoom });
  const browseGroups = () => openPublicGroups({ onOpen: openRoom });
  const conversation = new Conversation({
    onBack: () => layout.classList.remove('show-conversation'),
    empty: welcomePane({ onNewChat: newChat, onBrowse: browseGroups }),
  });
  const search = new SearchPanel({
    onJump: (result) => { openRoom(result.room_id, result); },
  });
  const searchInput = h('input', {
    type: 'search', class: 'search-input', placeholder: 'Search messages', 'aria-label': 'Search messages', 'data-testid': 'search-input',
    onkeydown: (ev) => {
      if (ev.key === 'Enter') { ev.preventDefault(); search.run(searchInput.value); sidebarBody.classList.add('searching'); }
      if (ev.key === 'Escape') { searchInput.value = ''; closeSearch(); }
    },
    oninput: () => { if (!searchInput.value) closeSearch(); },
  });
  const closeSearch = () => { sidebarBody.classList.remove('searching'); search.clear(); };
  search.onClose = () => { searchInput.value = ''; closeSearch(); searchInput.focus(); };
  const sidebarBody = h('div', { class: 'sidebar-body' }, roomList, search.el);

  const sidebar = h('aside', { class: 'sidebar', 'aria-label': 'Sidebar' },
    h('header', { class: 'sidebar-header' }, meButton, h('div', { class: 'sidebar-actions' }, notificationButton(), themeBtn)),
    h('div', { class: 'sidebar-search' }, icon('search'), searchInput),
    h('div', { class: 'sidebar-new' },
      h('button', { class: 'btn btn-small', type: 'button', 'data-testid': 'new-dm', onclick: newChat }, icon('chat'), 'New chat'),
      h('button', { class: 'btn btn-small', type: 'button', 'data-testid': 'new-group', onclick: () => openGroupModal({ onOpen: openRoom }) }, icon('group'), 'New group'),
      h('button', { class: 'btn btn-small browse-btn', type: 'button', 'data-testid': 'sidebar-browse-public', onclick: browseGroups },
        h('span', { class: 'browse-mark', 'aria-hidden': 'true', text: '#' }), 'Browse public groups')),
    sidebarBody);

  const banner = renderBanner();
  const main = h('section', { class: 'main' }, banner, conversation.el);
  layout.append(sidebar, main);
  root.replaceChildren(layout);

  function openRoom(roomId, focusMessage) {
    conversation.open(roomId, focusMessage);
    layout.classList.add('show-conversation');
    renderList();
  }

  const renderList = () => renderRoomList(roomList, { current: store.currentRoom, onOpen: openRoom });
  renderList();
  store.on('rooms', renderList);
  store.on('users', renderList);
  store.on('room-closed', async (why) => {
    layout.classList.remove('show-conversation');
    conversation.showEmpty();
    if (why.actorId) await store.fetchUser(why.actorId); // the remover's name, if not held
    toast(closedNote(why), 'info');
  });
  store.on('toast', (t) => toast(t.text, t.kind));

  const updateTitle = () => {
    const n = store.unreadTotal();
    document.title = n ? `(${shownCount(n)}) FastSock` : 'FastSock';
  };
  store.on('rooms', updateTitle);
  updateTitle();
  setupNotifications({ openRoom });
  mountCalls();

  // Keyboard: Alt+ArrowUp/Down moves between conversations; Ctrl/Cmd+K focuses search.
  document.addEventListener('keydown', (ev) => {
    if (ev.altKey && (ev.key === 'ArrowUp' || ev.key === 'ArrowDown')) {
      const rooms = store.sortedRooms();
      const i = rooms.findIndex((r) => r.id === store.currentRoom);
      const next = rooms[ev.key === 'ArrowUp' ? Math.max(0, i - 1) : Math.min(rooms.length - 1, i + 1)];
      if (next) { ev.preventDefault(); openRoom(next.id); }
    } else if ((ev.ctrlKey || ev.metaKey) && ev.key.toLowerCase() === 'k') {
      ev.preventDefault();
      searchInput.focus();
    }
  });
}
