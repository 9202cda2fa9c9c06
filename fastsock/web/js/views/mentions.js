// Mentions: the composer's member picker that `@` opens, and the highlighting of the mentions
// the server found in a message (`mentions`, `mention_room`: it derives them from the text).
import { h } from '../dom.js';
import { store } from '../store.js';
import { avatar } from './avatar.js';
import { TOKEN, tokenName } from '../mention_syntax.js';
import { plainText } from './markdown.js';

const MAX_OPTIONS = 8;

// What the picker completes: an `@` starting a word, up to the caret.
const TYPED = /(?:^|[^\w@])@([^\s@]{0,32})$/u;

// Does this message mention me (by name or through @room)?
export function mentionsMe(msg) {
  return Boolean(msg.mention_room || msg.mentions?.includes(store.me.id));
}

// Who may be mentioned in a room: its members but me, deactivated accounts left out, each
// profile as held (fetched when missing: the picker shows them once in).
function members(roomId) {
  const room = store.rooms.get(roomId);
  if (!room) return [];
  return room.member_ids.filter((id) => id !== store.me.id).map((id) => {
    const u = store.user(id);
    if (!u) store.fetchUser(id);
    return u;
  }).filter((u) => u && !u.deactivated);
}

// `@room` is for admins of group rooms only (the server refuses it from others).
function canMentionRoom(roomId) {
  const room = store.rooms.get(roomId);
  return room?.kind === 'group' && room.role === 'admin';
}

function matches(u, q) {
  if (!q) return 0;
  const name = (u.display_name || '').toLowerCase();
  if (u.username.startsWith(q)) return 0;
  if (name.startsWith(q)) return 1;
  if (name.split(/\s+/).some((w) => w.startsWith(q))) return 2;
  return -1;
}

// The list `@` opens under the composer's text. The textarea keeps its own role (a
// multi-line text box) and points at the active option with aria-activedescendant, as a
// combobox does; the options are a listbox. Keys: Up/Down move, Enter or Tab insert,
// Escape closes; a click or tap inserts.
export class MentionPicker {
  constructor(input, roomId) {
    this.input = input;
    this.roomId = roomId; // () -> the composer's room
    this.options = [];
    this.active = 0;
    this.start = -1; // where the `@` being completed is, or -1 when closed
    const id = `mention-list-${Math.random().toString(36).slice(2)}`;
    this.list = h('ul', { class: 'mention-list', role: 'listbox', id, 'aria-label': 'People to mention', 'data-testid': 'mention-list', hidden: true });
    this.status = h('div', { class: 'mention-status', 'aria-live': 'polite' });
    this.el = h('div', { class: 'mention-picker' }, this.list, this.status);
    input.setAttribute('aria-autocomplete', 'list');
    input.setAttribute('aria-controls', id);
    input.setAttribute('aria-expanded', 'false');
    input.addEventListener('input', () => this.update());
    input.addEventListener('click', () => this.update()); // the caret moved to another word
    input.addEventListener('blur', () => this.close());
    store.on('users', () => { if (this.isOpen()) this.update(); }); // a member's profile came in
  }

  isOpen() { return this.start >= 0; }

  // Look at the word before the caret: an `@` word opens (or filters) the list.
  update() {
    const caret = this.input.selectionStart;
    const typed = this.input.selectionEnd === caret ? TYPED.exec(this.input.value.slice(0, caret)) : null;
    if (!typed) { this.close(); return; }
    const q = typed[1].toLowerCase();
    const ranked = members(this.roomId())
      .map((u) => [matches(u, q), u])
      .filter(([rank]) => rank >= 0)
      .sort((a, b) => a[0] - b[0] || (a[1].display_name || '').localeCompare(b[1].display_name || ''));
    const options = ranked.slice(0, MAX_OPTIONS).map(([, u]) => ({ username: u.username, user: u }));
    if (canMentionRoom(this.roomId()) && 'room'.startsWith(q)) options.push({ username: 'room', user: null });
    const prev = this.options[this.active]?.username;
    this.start = caret - typed[1].length - 1;
    this.options = options;
    this.active = Math.max(0, options.findIndex((o) => o.username === prev));
    this.render();
  }

  close() {
    if (!this.isOpen() && this.list.hidden) return;
    this.start = -1;
    this.options = [];
    this.list.hidden = true;
    this.list.replaceChildren();
    this.input.setAttribute('aria-expanded', 'false');
    this.input.removeAttribute('aria-activedescendant');
    this.status.textContent = '';
  }

  render() {
    const ids = this.list.id;
    this.list.hidden = !this.options.length;
    this.input.setAttribute('aria-expanded', String(!this.list.hidden));
    this.list.replaceChildren(...this.options.map((o, i) => h('li', {
      id: `${ids}-${i}`, role: 'option', class: `mention-option${i === this.active ? ' active' : ''}`,
      'aria-selected': String(i === this.active), 'data-testid': 'mention-option', dataset: { username: o.username },
      onmousedown: (ev) => ev.preventDefault(), // the text box keeps the focus (and the caret)
      onclick: () => this.choose(i),
    },
    o.user ? avatar(o.user, 'sm') : h('span', { class: 'avatar avatar-sm avatar-group', 'aria-hidden': 'true', text: '@' }),
    h('span', { class: 'option-name', text: o.user ? o.user.display_name || o.user.username : 'Everyone in this room' }),
    h('span', { class: 'option-username', text: `@${o.username}` }))));
    if (this.options.length) this.input.setAttribute('aria-activedescendant', `${ids}-${this.active}`);
    else this.input.removeAttribute('aria-activedescendant');
    this.status.textContent = this.options.length
      ? `${this.options.length} ${this.options.length === 1 ? 'person' : 'people'} to mention; Up and Down to choose, Enter to insert`
      : 'No one to mention';
    this.list.querySelector('.active')?.scrollIntoView({ block: 'nearest' });
  }

  // The composer's keydown goes here first: true when the key was the picker's.
  onKey(ev) {
    if (!this.isOpen()) return false;
    const n = this.options.length;
    if (ev.key === 'Escape') this.close();
    else if (!n) return false;
    else if (ev.key === 'ArrowDown') { this.active = (this.active + 1) % n; this.render(); }
    else if (ev.key === 'ArrowUp') { this.active = (this.active - 1 + n) % n; this.render(); }
    else if ((ev.key === 'Enter' || ev.key === 'Tab') && !ev.shiftKey && !ev.isComposing) this.choose(this.active);
    else return false;
    ev.preventDefault();
    ev.stopPropagation();
    return true;
  }

  // `@username ` replaces the `@` word typed so far; the input event that follows saves the
  // draft, sizes the box and closes the list (the caret is after a space now).
  choose(i) {
    const o = this.options[i];
    if (!o) return;
    this.input.setRangeText(`@${o.username} `, this.start, this.input.selectionStart, 'end');
    this.input.dispatchEvent(new Event('input', { bubbles: true }));
    this.input.focus();
  }
}

// A mention chip: the person's name as it is now (profiles are live), their username in the
// title. `@room` when the server says the message is for the whole room.
function chip(username, userId) {
  if (!userId) return h('span', { class: 'mention mention-room', 'data-testid': 'mention', title: 'Everyone in this room', text: '@room' });
  const u = store.user(userId);
  return h('span', {
    class: `mention${userId === store.me.id ? ' mention-me' : ''}`, 'data-testid': 'mention', dataset: { userId },
    title: `@${username}`, text: `@${u ? store.displayName(userId) : username}`,
  });
}

// Turn the `@username` tokens of formatted text (markdown.js's elements) into chips, for the
// people the server resolved (`mentions`) and `@room` when `mention_room`; code and links keep
// their text. Any other `@word` stays as typed.
export function highlightMentions(frag, msg) {
  const byName = new Map();
  for (const id of msg.mentions || []) {
    const u = store.user(id);
    if (u) byName.set(u.username, id); else store.fetchUser(id); // the `users` event re-renders
  }
  if (!byName.size && !msg.mention_room) return frag;
  const walker = document.createTreeWalker(frag, NodeFilter.SHOW_TEXT);
  const nodes = [];
  while (walker.nextNode()) if (!walker.currentNode.parentElement?.closest('code, pre, a')) nodes.push(walker.currentNode);
  for (const node of nodes) {
    const text = node.data;
    const parts = [];
    let last = 0;
    for (const m of text.matchAll(TOKEN)) {
      const name = tokenName(m);
      const isRoom = name === 'room' && msg.mention_room;
      if (!isRoom && !byName.has(name)) continue;
      parts.push(text.slice(last, m.index), chip(name, isRoom ? null : byName.get(name)));
      last = m.index + 1 + name.length; // the name as written (its case), trailing `.`/`-` left out
    }
    if (!parts.length) continue;
    parts.push(text.slice(last));
    node.replaceWith(...parts.filter((p) => p !== ''));
  }
  return frag;
}

// A text without its markup, one line of it (room list previews, quotes, notifications, search
// results), with the people it mentions as `@Display Name` as the chips show them. `ids`: the
// people the server resolved (a message's `mentions`), or, for a quote, which carries no
// `mentions`, the room's members (the server's rule resolves names among them); only profiles
// held are used (a `users` event redraws).
export function plainWithNames(text, ids) {
  const plain = plainText(text);
  if (!plain.includes('@')) return plain; // most texts: no names to look up
  const byName = new Map();
  for (const id of ids || []) {
    const u = store.user(id);
    if (u) byName.set(u.username, id);
  }
  if (!byName.size) return plain;
  return plain.replace(TOKEN, (whole, ...rest) => {
    const name = tokenName([whole, rest[0]]);
    const id = byName.get(name);
    return id ? `@${store.displayName(id)}${rest[0].slice(name.length)}` : whole;
  });
}

// What a message's rendering shows of its mentions, for the row's signature: the names.
export function mentionSignature(msg) {
  return [msg.mention_room, (msg.mentions || []).map((id) => store.user(id) && store.displayName(id))];
}
