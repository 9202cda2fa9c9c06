// The conversation: header, message list (grouping by sender and day, unread divider, "Seen
// by" rows, infinite scroll both ways keeping position, jump to latest), typing line, composer.
import { h, icon, fmtDay, listNames } from '../dom.js';
import { store } from '../store.js';
import { avatar } from './avatar.js';
import { renderMessage, signature, startEdit } from './message.js';
import { seenBy, seenSignature, renderSeenBy } from './seenby.js';
import { Composer } from './composer.js';
import { isMuted, setMuted } from './notifications.js';
import { toast } from './toast.js';
import { openGroupInfo } from './groupinfo.js';
import { callButtons } from '../calls/buttons.js';
import { TimelineKeys } from './timeline_keys.js';

const GROUP_GAP_MS = 5 * 60 * 1000;
const ALONE = new Set(['call', 'system']); // entries never grouped with the messages around them
const EDGE_PX = 300; // load the next page when this close to either end of the list
const SEEN_PX = 24; // the newest message counts as shown with the list this close to its end

export class Conversation {
  constructor({ onBack, empty }) {
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
    this.loaders = { older: this.makeLoader(), newer: this.makeLoader() };
    this.loaderShows = { older: null, newer: null }; // the failure each loader shows, if any
    this.fills = new Map(); // window -> its paging loop ({again}), one per window
    this.failures = new WeakMap(); // window -> {end, message}: a page that failed, until "Retry"
    this.stuckToBottom = true; // at the end of the list when last laid out
    this.deferred = null; // a reset's position, when it came while the list was not laid out
    this.jumpBtn = h('button', { type: 'button', class: 'jump-latest', hidden: true, 'data-testid': 'jump-latest', onclick: () => this.jumpToLatest() }, icon('down'), h('span', { text: 'Jump to latest' }));
    this.typingLine = h('div', { class: 'typing-line', 'aria-live': 'polite', 'data-testid': 'typing-indicator' });
    this.composer = new Composer({ onSent: () => this.showSent() });
    this.keys = new TimelineKeys(this.list, { onEscape: () => this.composer.focus() });
    this.scroller = h('div', { class: 'messages-wrap' }, this.list, this.jumpBtn);
    this.view = h('div', { class: 'conversation', hidden: true, 'data-testid': 'conversation' }, this.header, this.scroller, this.typingLine, this.composer.el);
    this.empty = empty; // shown while no room is open (views/welcome.js)
    this.el = h('div', { class: 'conversation-host' }, this.empty, this.view);

    this.list.addEventListener('scroll', () => this.onScroll());
    new ResizeObserver(() => this.onResize()).observe(this.list);
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
      this.stuckToBottom = true;
      this.deferred = null;
      this.keys.currentKey = null;
      // The unread divider goes after my read pointer as it was when the room opened.
      this.dividerAfter = room.unread_count ? (room.last_read_message_id || '0') : null;
      this.composer.setRoom(roomId);
    }
    this.renderHeader();
    this.renderTyping();
    store.loadDetail(roomId).catch(() => {});
    try {
      if (focusMessage) await store.loadAround(roomId, focusMessage);
      else if (same && store.win(roomId).loaded) { /* already showing it */ }
      else if (this.dividerAfter !== null) await store.loadUnread(roomId, room.last_read_message_id);
      else await store.loadLatest(roomId);
    } catch (err) {
      toast(`Couldn't load messages: ${err.message}`, 'error');
    }
    // The composer once shown (a phone shows the pane after this starts), unless another
    // room was opened or the focus went to another field or a dialog while the messages
    // loaded (Ctrl+K to search).
    const el = document.activeElement;
    const elsewhere = el !== this.composer.input && el?.closest('input, textarea, select, [role=dialog], [role=alertdialog], [role=menu]');
    if (!focusMessage && this.roomId === roomId && !elsewhere) this.composer.focus();
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
      const bits = other?.online === null ? [] : [other?.online ? 'Online' : 'Offline']; // null: unknown while disconnected
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

  // Laid out and so measurable: the conversation is open and, on a phone, not behind the
  // room list (a pane hidden by CSS measures 0 and looks scrolled to both ends at once).
  laidOut() {
    return !this.view.hidden && this.list.clientHeight > 0;
  }

  // Shown again (a phone back from the room list) or resized (a window, the composer
  // growing): a list that was at its end stays there, a reset that came while hidden gets its
  // position now, and the pages and the read marking skipped while hidden are done.
  onResize() {
    if (!this.laidOut()) return;
    if (this.deferred) {
      this.position(this.deferred);
    } else if (this.stuckToBottom) {
      this.scrollToBottom();
    }
    this.stuckToBottom = this.atBottom();
    this.updateJump();
    this.fill();
    this.maybeMarkRead();
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
    try {
      if (w.hasNewer) await store.loadLatest(this.roomId);
    } catch (err) {
      toast(`Couldn't load messages: ${err.message}`, 'error');
    }
    this.scrollToBottom();
    this.composer.focus();
  }

  // A message I send goes at the end: if the window stops short of it (a room opened at its
  // first unread message), the newest messages are loaded first.
  showSent() {
    if (store.windows.get(this.roomId)?.hasNewer) this.jumpToLatest();
    else this.scrollToBottom();
  }

  updateJump() {
    const w = store.windows.get(this.roomId);
    const show = (w && w.hasNewer) || !this.atBottom(EDGE_PX);
    this.jumpBtn.hidden = !show;
    this.jumpBtn.querySelector('span').textContent = this.newBelow ? `${this.newBelow} new message${this.newBelow > 1 ? 's' : ''}` : 'Jump to latest';
  }

  onScroll() {
    if (!this.laidOut()) return;
    this.stuckToBottom = this.atBottom();
    this.updateJump();
    this.fill();
    if (this.stuckToBottom) { this.newBelow = 0; this.updateJump(); }
    this.maybeMarkRead();
  }

  // Load pages while an end of the loaded window that has more is within reach: after every
  // scroll and every render, since a list at scrollTop 0, or one that does not fill the
  // viewport, gets no scroll event to ask for them. One loop per window, so that a slow page
  // of a room left behind holds up nothing here; a render while a page is in flight makes
  // it look again once the page is in. A page that fails is not asked for again until
  // "Retry" (its spinner becomes the error and the button).
  async fill() {
    const roomId = this.roomId;
    const w = store.windows.get(roomId);
    if (!w) return;
    const running = this.fills.get(w);
    if (running) { running.again = true; return; }
    const run = { again: true };
    this.fills.set(w, run);
    let end = null;
    try {
      while (run.again) {
        run.again = false;
        end = this.endToLoad(w);
        if (end && await (end === 'older' ? store.loadOlder(roomId) : store.loadNewer(roomId))) run.again = true;
      }
    } catch (err) {
      this.failures.set(w, { end, message: err.message });
      this.renderLoaders();
    } finally {
      this.fills.delete(w);
    }
  }

  // The end of the open room's window `w` to load a page at now, if any.
  endToLoad(w) {
    if (w !== store.windows.get(this.roomId) || !w.loaded || !this.laidOut()) return null;
    const failed = this.failures.get(w)?.end;
    if (w.hasOlder && failed !== 'older' && this.list.scrollTop < EDGE_PX) return 'older';
    if (w.hasNewer && failed !== 'newer' && this.atBottom(EDGE_PX)) return 'newer';
    return null;
  }

  makeLoader() {
    return h('div', { class: 'history-loader', 'aria-hidden': 'true', 'data-testid': 'history-loader' });
  }

  // Each end's marker: a spinner, or the failed page's error with "Retry".
  renderLoaders() {
    const w = store.windows.get(this.roomId);
    const failure = w ? this.failures.get(w) : null;
    for (const [end, el] of Object.entries(this.loaders)) {
      const failed = failure?.end === end ? failure : null;
      if (this.loaderShows[end] === failed) continue;
      this.loaderShows[end] = failed;
      el.classList.toggle('failed', Boolean(failed));
      if (failed) {
        el.removeAttribute('aria-hidden');
        el.replaceChildren(
          h('span', { text: `Couldn't load ${end} messages: ${failed.message}` }),
          h('button', { type: 'button', class: 'link-btn', 'data-testid': 'history-retry', onclick: () => this.retryPage() }, 'Retry'));
      } else {
        el.setAttribute('aria-hidden', 'true');
        el.replaceChildren();
      }
    }
  }

  retryPage() {
    const w = store.windows.get(this.roomId);
    if (w) this.failures.delete(w);
    this.renderLoaders();
    this.list.focus({ preventScroll: true }); // the button goes: keep the focus in the list
    this.fill();
  }

  // Read up to the newest message once it has been shown: the room is on screen, the tab
  // visible and focused, the window reaches the newest message and the list is scrolled to
  // its end (a room opened at its first unread message stays unread until then).
  maybeMarkRead() {
    if (!this.roomId || !this.laidOut() || !this.atBottom(SEEN_PX)) return;
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
    const shown = this.laidOut();
    const wasAtBottom = shown ? this.atBottom() : this.stuckToBottom;
    const fromBottom = list.scrollHeight - list.scrollTop;
    const messages = store.messagesOf(this.roomId);
    const seen = seenBy(this.roomId, messages);
    const nodes = [];
    const used = new Set();
    let prev = null;
    const w = store.windows.get(this.roomId);
    // A window that starts after my read pointer, with history above it still unloaded,
    // does not hold the first unread message: no divider (it would go above the wrong one).
    let dividerPlaced = Boolean(this.dividerAfter !== null && w?.hasOlder && messages[0]?.id > this.dividerAfter);
    if (w && w.loaded && !w.hasOlder) {
      const room = store.rooms.get(this.roomId);
      nodes.push(h('div', { class: 'room-start' },
        h('h3', { text: store.roomName(room) }),
        h('p', { text: room?.kind === 'direct' ? 'This is the beginning of your direct message history.' : 'This is the very beginning of the group.' })));
    } else if (w && w.hasOlder) {
      nodes.push(this.loaders.older);
    }
    for (const msg of messages) {
      const day = new Date(msg.created_at).toDateString();
      const newDay = !prev || new Date(prev.created_at).toDateString() !== day;
      if (newDay) nodes.push(this.keyed(`day:${day}`, () => h('div', { class: 'day-divider', role: 'separator', 'data-testid': 'day-divider' }, h('span', { text: fmtDay(msg.created_at) }))));
      let divider = false;
      if (!dividerPlaced && this.dividerAfter !== null && msg.id && msg.id > this.dividerAfter && msg.sender_id !== store.me.id && msg.type !== 'system') {
        dividerPlaced = true;
        divider = true;
        nodes.push(this.keyed('unread-divider', () => h('div', { class: 'unread-divider', role: 'separator', 'aria-label': 'New messages', 'data-testid': 'unread-divider' }, h('span', { text: 'New' }))));
      }
      const close = !newDay && !divider && prev && new Date(msg.created_at) - new Date(prev.created_at) < GROUP_GAP_MS;
      // Messages group by sender; history lines group with the lines just before them.
      const grouped = Boolean(close) && (msg.type === 'system'
        ? prev.type === 'system'
        : prev.sender_id === msg.sender_id && !prev.deleted && !msg.deleted && !ALONE.has(prev.type) && !ALONE.has(msg.type));
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
        if (entry && entry.el === document.activeElement) {
          queueMicrotask(() => el.focus({ preventScroll: true })); // the entry itself (timeline_keys.js)
        } else if (entry && entry.el.contains(document.activeElement)) {
          const tid = document.activeElement.dataset?.testid;
          queueMicrotask(() => (tid ? el.querySelector(`[data-testid="${tid}"]`) : null)?.focus());
        }
        entry = { sig, el };
      }
      this.rows.set(key, entry);
      nodes.push(entry.el);
      const readers = msg.id && seen.get(msg.id);
      if (readers) {
        used.add(`seen:${msg.id}`);
        nodes.push(this.keyed(`seen:${msg.id}`, () => renderSeenBy(readers), seenSignature(readers)));
      }
      prev = msg;
    }
    if (w && w.hasNewer) nodes.push(this.loaders.newer);
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
    this.keys.sync();

    this.renderLoaders();

    if (!shown) {
      // Measured later, when laid out again (onResize).
      if (detail.reset) this.deferred = detail;
      else if (detail.incoming && detail.added && !wasAtBottom) this.newBelow += 1;
    } else if (detail.reset) {
      this.position(detail);
    } else if (detail.prepended) {
      list.scrollTop = list.scrollHeight - fromBottom;
    } else if (detail.appended) {
      // A newer page under what is being read: stay there (following the bottom would load
      // every page down to the newest one after the other).
    } else if (detail.sent || wasAtBottom) {
      this.scrollToBottom();
    } else if (detail.incoming && detail.added) {
      this.newBelow += 1;
    }
    if (shown) this.stuckToBottom = this.atBottom();
    this.updateJump();
    this.fill();
    this.maybeMarkRead();
  }

  // A reset window's first position: the searched message, the unread divider, or the end.
  position(detail) {
    const list = this.list;
    this.deferred = null;
    const target = detail.focus
      ? list.querySelector(`[data-id="${detail.focus}"]`)
      : list.querySelector('[data-testid=unread-divider]');
    if (target && detail.focus) {
      target.scrollIntoView({ block: 'center' });
      target.classList.add('highlight');
      target.tabIndex = -1;
      target.focus({ preventScroll: true });
      setTimeout(() => target.classList.remove('highlight'), 2500);
    } else if (target) {
      // The unread divider a quarter down: some context above, the unread messages below.
      const offset = target.getBoundingClientRect().top - list.getBoundingClientRect().top;
      list.scrollTop += offset - list.clientHeight / 4;
    } else {
      this.scrollToBottom();
    }
  }

  // The element kept under `key`, made again when its signature changes.
  keyed(key, make, sig = key) {
    let entry = this.rows.get(key);
    if (!entry || entry.sig !== sig) { entry = { sig, el: make() }; this.rows.set(key, entry); }
    return entry.el;
  }
}
