// The conversation: header, message list (grouping by sender and day, unread divider,
// infinite scroll both ways keeping position, jump to latest), typing line, composer.
import { h, icon, fmtDay, listNames } from '../dom.js';
import { store } from '../store.js';
import { avatar } from './avatar.js';
import { renderMessage, signature, startEdit } from './message.js';
import { Composer } from './composer.js';
import { isMuted, setMuted } from './notifications.js';
import { toast } from './toast.js';
import { openGroupInfo } from './groupinfo.js';
import { callButtons } from '../calls/buttons.js';

const GROUP_GAP_MS = 5 * 60 * 1000;

export class Conversation {
  constructor({ onBack }) {
    this.roomId = null;
    this.rows = new Map(); // key -> {sig, el}
    this.editing = null;
    this.newBelow = 0;
    this.title = h('h2', { class: 'conv-title', 'data-testid': 'conversation-title' });
    this.subtitle = h('p', { class: 'conv-subtitle', 'data-testid': 'conversation-subtitle' });
    this.headAvatar = h('span', { class: 'conv-avatar' });
    this.muteBtn = h('button', { type: 'button', class: 'icon-btn', 'data-testid': 'mute-toggle', onclick: () => this.toggleMute() });
    this.callBtns = callButtons(() => this.roomId);
    this.infoBtn = h('button', { type: 'button', class: 'icon-btn', 'aria-label': 'Group details', 'data-testid': 'group-info-button', onclick: () => openGroupInfo(this.roomId) }, icon('group'));
    this.header = h('header', { class: 'conv-header' },
      h('button', { type: 'button', class: 'icon-btn back-btn', 'aria-label': 'Back to conversations', 'data-testid': 'back-button', onclick: () => { onBack(); } }, icon('back')),
      this.headAvatar,
      h('div', { class: 'conv-heading' }, this.title, this.subtitle),
      ...this.callBtns.elements, this.muteBtn, this.infoBtn);
    this.list = h('div', { class: 'messages', role: 'log', 'aria-label': 'Messages', 'aria-live': 'polite', tabindex: '0', 'data-testid': 'message-list' });
    this.loader = h('div', { class: 'history-loader', 'aria-hidden': 'true' });
    this.jumpBtn = h('button', { type: 'button', class: 'jump-latest', hidden: true, 'data-testid': 'jump-latest', onclick: () => this.jumpToLatest() }, icon('down'), h('span', { text: 'Jump to latest' }));
    this.typingLine = h('div', { class: 'typing-line', 'aria-live': 'polite', 'data-testid': 'typing-indicator' });
    this.composer = new Composer({ onSent: () => this.scrollToBottom() });
    this.scroller = h('div', { class: 'messages-wrap' }, this.list, this.jumpBtn);
    this.view = h('div', { class: 'conversation', hidden: true, 'data-testid': 'conversation' }, this.header, this.scroller, this.typingLine, this.composer.el);
    this.empty = h('div', { class: 'empty-state', 'data-testid': 'empty-state' },
      h('div', { class: 'empty-icon', 'aria-hidden': 'true', text: '💬' }),
      h('h2', { text: 'Welcome to FastSock' }),
      h('p', { text: 'Pick a conversation on the left, or start a new one.' }));
    this.el = h('div', { class: 'conversation-host' }, this.empty, this.view);

    this.list.addEventListener('scroll', () => this.onScroll());
    store.on('messages', (d) => { if (d.roomId === this.roomId) this.render(d); });
    store.on('typing', (d) => { if (d.roomId === this.roomId) this.renderTyping(); });
    store.on('users', () => { if (this.roomId) { this.renderHeader(); this.render({}); this.renderTyping(); } });
    store.on('rooms', () => { if (this.roomId) this.renderHeader(); });
    store.on('resynced', () => { if (this.roomId) this.render({}); });
    const maybeRead = () => this.maybeMarkRead();
    window.addEventListener('focus', maybeRead);
    document.addEventListener('visibilitychange', maybeRead);
  }

  showEmpty() {
    this.roomId = null;
    this.view.hidden = true;
    this.empty.hidden = false;
  }

  async open(roomId, focusMessage) {
    const room = store.rooms.get(roomId);
    if (!room) return;
    const same = this.roomId === roomId;
    this.roomId = roomId;
    store.currentRoom = roomId;
    this.empty.hidden = true;
    this.view.hidden = false;
    if (!same) {
      this.rows.clear();
      this.list.replaceChildren();
      this.editing = null;
      this.newBelow = 0;
      // The unread divider goes after my read pointer as it was when the room opened.
      this.dividerAfter = room.unread_count ? (room.last_read_message_id || '0') : null;
      this.composer.setRoom(roomId);
    }
    this.renderHeader();
    this.renderTyping();
    store.loadDetail(roomId).catch(() => {});
    try {
      if (focusMessage) await store.loadAround(roomId, focusMessage);
      else if (!same || !store.win(roomId).loaded) await store.loadLatest(roomId);
    } catch (err) {
      toast(`Couldn't load messages: ${err.message}`, 'error');
    }
    if (!focusMessage) this.composer.focus();
  }

  toggleMute() {
    setMuted(this.roomId, !isMuted(this.roomId));
    this.renderHeader();
  }

  renderHeader() {
    const room = store.rooms.get(this.roomId);
    if (!room) return;
    this.title.textContent = store.roomName(room);
    if (room.kind === 'direct') {
      const other = store.user(store.dmPartner(room));
      this.headAvatar.replaceChildren(avatar(other, 'md', { presence: true }));
      const bits = [other?.online ? 'Online' : 'Offline'];
      if (other?.status_message) bits.push(other.status_message);
      this.subtitle.textContent = bits.join(' · ');
    } else {
      this.headAvatar.replaceChildren(h('span', { class: 'avatar avatar-md avatar-group', text: '#' }));
      const names = room.member_ids.slice(0, 4).map((id) => (id === store.me.id ? 'you' : store.displayName(id)));
      const extra = room.member_count > 4 ? ` and ${room.member_count - 4} more` : '';
      this.subtitle.textContent = `${room.member_count} members · ${room.private ? 'Private' : 'Public'} · ${names.join(', ')}${extra}`;
    }
    this.infoBtn.hidden = room.kind !== 'group';
    this.callBtns.update();
    const muted = isMuted(this.roomId);
    this.muteBtn.replaceChildren(icon(muted ? 'bellOff' : 'bell'));
    this.muteBtn.setAttribute('aria-pressed', String(muted));
    this.muteBtn.setAttribute('aria-label', muted ? 'Unmute notifications for this conversation' : 'Mute notifications for this conversation');
    this.muteBtn.title = muted ? 'Muted — click to unmute' : 'Mute notifications';
  }

  renderTyping() {
    const ids = store.typingUsers(this.roomId);
    const names = ids.map((id) => store.displayName(id));
    let text = '';
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length === 2) text = `${listNames(names)} are typing…`;
    else if (names.length > 2) text = 'Several people are typing…';
    this.typingLine.textContent = text;
    this.typingLine.classList.toggle('active', Boolean(text));
  }

  atBottom(slack = 80) {
    const l = this.list;
    return l.scrollHeight - l.scrollTop - l.clientHeight <= slack;
  }

  scrollToBottom() {
    this.list.scrollTop = this.list.scrollHeight;
    this.newBelow = 0;
    this.updateJump();
  }

  async jumpToLatest() {
    const w = store.win(this.roomId);
    if (w.hasNewer) await store.loadLatest(this.roomId);
    this.scrollToBottom();
    this.composer.focus();
  }

  updateJump() {
    const w = store.windows.get(this.roomId);
    const show = (w && w.hasNewer) || !this.atBottom(300);
    this.jumpBtn.hidden = !show;
    this.jumpBtn.querySelector('span').textContent = this.newBelow ? `${this.newBelow} new message${this.newBelow > 1 ? 's' : ''}` : 'Jump to latest';
  }

  async onScroll() {
    this.updateJump();
    const w = store.windows.get(this.roomId);
    if (!w || !w.loaded) return;
    if (this.list.scrollTop < 300 && w.hasOlder && !w.loadingOlder) {
      await store.loadOlder(this.roomId);
    }
    if (this.atBottom(300) && w.hasNewer && !w.loadingNewer) {
      await store.loadNewer(this.roomId);
    }
    if (this.atBottom()) { this.newBelow = 0; this.updateJump(); }
  }

  maybeMarkRead() {
    if (!this.roomId || this.view.hidden) return;
    if (document.visibilityState !== 'visible' || !document.hasFocus()) return;
    store.markRead(this.roomId);
  }

  onEdit(msg) {
    const key = msg.id;
    const entry = this.rows.get(key);
    if (!entry) return;
    this.editing = key;
    startEdit(entry.el, msg, () => { this.editing = null; this.render({}); });
  }

  render(detail) {
    const list = this.list;
    const wasAtBottom = this.atBottom();
    const fromBottom = list.scrollHeight - list.scrollTop;
    const messages = store.messagesOf(this.roomId);
    const nodes = [];
    const used = new Set();
    let prev = null;
    let dividerPlaced = false;
    const w = store.windows.get(this.roomId);
    if (w && w.loaded && !w.hasOlder) {
      const room = store.rooms.get(this.roomId);
      nodes.push(h('div', { class: 'room-start' },
        h('h3', { text: store.roomName(room) }),
        h('p', { text: room?.kind === 'direct' ? 'This is the beginning of your direct message history.' : 'This is the very beginning of the group.' })));
    } else if (w && w.hasOlder) {
      nodes.push(this.loader);
    }
    for (const msg of messages) {
      const day = new Date(msg.created_at).toDateString();
      const newDay = !prev || new Date(prev.created_at).toDateString() !== day;
      if (newDay) nodes.push(this.keyed(`day:${day}`, () => h('div', { class: 'day-divider', role: 'separator', 'data-testid': 'day-divider' }, h('span', { text: fmtDay(msg.created_at) }))));
      let divider = false;
      if (!dividerPlaced && this.dividerAfter !== null && msg.id && msg.id > this.dividerAfter && msg.sender_id !== store.me.id) {
        dividerPlaced = true;
        divider = true;
        nodes.push(this.keyed('unread-divider', () => h('div', { class: 'unread-divider', role: 'separator', 'aria-label': 'New messages', 'data-testid': 'unread-divider' }, h('span', { text: 'New' }))));
      }
      const grouped = !newDay && !divider && prev && prev.sender_id === msg.sender_id && !prev.deleted && !msg.deleted
        && prev.type !== 'call' && msg.type !== 'call'
        && new Date(msg.created_at) - new Date(prev.created_at) < GROUP_GAP_MS;
      const key = msg.id || `cid:${msg.client_msg_id}`;
      used.add(key);
      let entry = this.rows.get(key);
      // A pending row becomes a real one when acked: keep its element to avoid a flash.
      if (!entry && msg.id && msg.client_msg_id && this.rows.has(`cid:${msg.client_msg_id}`)) {
        entry = this.rows.get(`cid:${msg.client_msg_id}`);
        entry.sig = null;
      }
      const sig = signature(msg, grouped);
      if (this.editing === key && entry) {
        // keep the row with its inline editor
      } else if (!entry || entry.sig !== sig) {
        const el = renderMessage(msg, { grouped, onEdit: (m) => this.onEdit(m) });
        if (entry && entry.el.contains(document.activeElement)) {
          const tid = document.activeElement.dataset?.testid;
          queueMicrotask(() => (tid ? el.querySelector(`[data-testid="${tid}"]`) : null)?.focus());
        }
        entry = { sig, el };
      }
      this.rows.set(key, entry);
      nodes.push(entry.el);
      prev = msg;
    }
    for (const key of [...this.rows.keys()]) if (!used.has(key) && !key.startsWith('day:') && key !== 'unread-divider') this.rows.delete(key);
    // Minimal DOM moves: rows that stay in place keep focus and hover state. Outgoing nodes
    // go first, so a replaced node (say the room header) does not shift every row after it
    // with insertBefore; moving a node drops the focus inside it (an open inline editor).
    const keep = new Set(nodes);
    for (const child of [...list.children]) if (!keep.has(child)) child.remove();
    let cursor = list.firstChild;
    for (const node of nodes) {
      if (node === cursor) { cursor = cursor.nextSibling; continue; }
      list.insertBefore(node, cursor);
    }

    if (detail.reset) {
      const target = detail.focus
        ? list.querySelector(`[data-id="${detail.focus}"]`)
        : list.querySelector('[data-testid=unread-divider]');
      if (target) {
        target.scrollIntoView({ block: 'center' });
        if (detail.focus) {
          target.classList.add('highlight');
          target.tabIndex = -1;
          target.focus({ preventScroll: true });
          setTimeout(() => target.classList.remove('highlight'), 2500);
        }
      } else {
        this.scrollToBottom();
      }
    } else if (detail.prepended) {
      list.scrollTop = list.scrollHeight - fromBottom;
    } else if (detail.sent || wasAtBottom) {
      this.scrollToBottom();
    } else if (detail.incoming && detail.added) {
      this.newBelow += 1;
    }
    this.updateJump();
    // Fill the viewport: if it doesn't scroll yet, fetch older pages.
    if (w && w.loaded && w.hasOlder && !w.loadingOlder && list.scrollHeight <= list.clientHeight + 300) {
      store.loadOlder(this.roomId);
    }
    this.maybeMarkRead();
  }

  keyed(key, make) {
    let entry = this.rows.get(key);
    if (!entry) { entry = { sig: key, el: make() }; this.rows.set(key, entry); }
    return entry.el;
  }
}
