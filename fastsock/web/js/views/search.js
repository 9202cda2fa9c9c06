// Message search: results with room, sender, time and the matching words highlighted;
// choosing one opens the room around that message.
import { h, icon, fmtFull, fmtTime } from '../dom.js';

function fmtShort(iso) {
  const d = new Date(iso);
  if (d.toDateString() === new Date().toDateString()) return fmtTime(iso);
  return d.toLocaleDateString([], { month: 'short', day: 'numeric' });
}
import * as api from '../api.js';
import { store } from '../store.js';
import { plainWithNames } from './mentions.js';

function escapeRe(s) { return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'); }

// Highlight with <mark> elements around text nodes: no markup is parsed.
export function highlight(text, query) {
  const words = query.split(/\s+/).filter(Boolean).map(escapeRe);
  if (!words.length) return [text];
  const re = new RegExp(`(${words.join('|')})`, 'gi');
  // split() with one capturing group: odd indices are the matches.
  return text.split(re).map((part, i) => (i % 2 ? h('mark', { text: part }) : document.createTextNode(part)));
}

export class SearchPanel {
  constructor({ onJump }) {
    this.onJump = onJump;
    this.onClose = null;
    this.query = '';
    this.before = null;
    this.list = h('ul', { class: 'search-results', 'aria-label': 'Search results', 'data-testid': 'search-results' });
    this.status = h('p', { class: 'search-status', 'aria-live': 'polite', 'data-testid': 'search-status' });
    this.more = h('button', { type: 'button', class: 'btn btn-small', hidden: true, onclick: () => this.load() }, 'Load more');
    this.el = h('section', { class: 'search-panel', 'aria-label': 'Search', 'data-testid': 'search-panel' },
      h('header', { class: 'search-header' },
        h('h2', { text: 'Search results' }),
        h('button', { type: 'button', class: 'icon-btn', 'aria-label': 'Close search', onclick: () => this.onClose?.() }, icon('close'))),
      this.status, this.list, this.more);
  }

  clear() { this.list.replaceChildren(); this.status.textContent = ''; this.more.hidden = true; }

  run(q) {
    this.query = q.trim();
    this.before = null;
    this.list.replaceChildren();
    if (!this.query) return;
    this.load();
  }

  async load() {
    this.status.textContent = 'Searching…';
    try {
      const params = new URLSearchParams({ q: this.query, limit: '20' });
      if (this.before) params.set('before', this.before);
      const { messages, has_more: hasMore } = await api.get(`/search/messages?${params}`);
      messages.forEach((m) => store.fetchUser(m.sender_id));
      this.list.append(...messages.map((m) => this.item(m)));
      this.before = messages.length ? messages[messages.length - 1].id : null;
      this.more.hidden = !hasMore;
      const n = this.list.children.length;
      this.status.textContent = n ? `${n}${hasMore ? '+' : ''} result${n === 1 ? '' : 's'} for “${this.query}”` : `No messages match “${this.query}”`;
    } catch (err) {
      this.status.textContent = `Search failed: ${err.message}`;
    }
  }

  item(m) {
    const room = store.rooms.get(m.room_id);
    const query = this.query;
    return h('li', {},
      h('button', { type: 'button', class: 'search-result', 'data-testid': 'search-result', onclick: () => this.onJump(m) },
        h('span', { class: 'result-meta' },
          h('span', { class: 'result-room', text: room ? store.roomName(room) : 'Conversation' }),
          h('span', { class: 'result-sender', text: store.displayName(m.sender_id) }),
          h('time', { class: 'result-time', datetime: m.created_at, title: fmtFull(m.created_at), text: fmtShort(m.created_at) })),
        // The text without its markup (markdown.js), as notifications show it.
        h('span', { class: 'result-text', dir: 'auto', 'data-testid': 'search-result-text' }, highlight(plainWithNames(m.text, m.mentions), query))));
  }
}
