// Member picker: search-as-you-type against GET /users?q=, a listbox navigable with the
// arrow keys, chips for chosen people (Backspace removes the last one).
import { h, icon } from '../dom.js';
import * as api from '../api.js';
import { store } from '../store.js';
import { avatar } from './avatar.js';

export class MemberPicker {
  constructor({ multiple = true, label = 'Add people', onPick } = {}) {
    this.multiple = multiple;
    this.onPick = onPick;
    this.chosen = new Map();
    this.results = [];
    this.active = -1;
    this.seq = 0;
    const listId = `picker-list-${Math.random().toString(36).slice(2)}`;
    this.chips = h('ul', { class: 'chips', 'aria-label': 'Chosen people', 'data-testid': 'chips' });
    this.input = h('input', {
      class: 'picker-input', type: 'text', role: 'combobox', 'aria-expanded': 'false', 'aria-controls': listId, 'aria-autocomplete': 'list',
      'aria-label': label, placeholder: 'Search people', autocomplete: 'off', 'data-testid': 'member-search',
    });
    this.listbox = h('ul', { class: 'picker-results', role: 'listbox', id: listId, 'aria-label': 'People', 'data-testid': 'member-results', hidden: true });
    this.status = h('p', { class: 'field-hint', 'aria-live': 'polite' });
    this.el = h('div', { class: 'picker' }, h('div', { class: 'picker-box' }, this.chips, this.input), this.listbox, this.status);
    let timer = null;
    this.input.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(() => this.search(), 150); });
    this.input.addEventListener('keydown', (ev) => this.onKey(ev));
    this.input.addEventListener('focus', () => { if (this.input.value) this.search(); });
  }

  async search() {
    const q = this.input.value.trim();
    const seq = ++this.seq;
    if (!q) { this.setResults([]); return; }
    try {
      const { users } = await api.get(`/users?q=${encodeURIComponent(q)}&limit=8`);
      if (seq !== this.seq) return;
      users.forEach((u) => { if (!store.users.has(u.id)) store.users.set(u.id, u); });
      this.setResults(users.filter((u) => u.id !== store.me.id));
      this.status.textContent = users.length ? '' : 'No one found';
    } catch (err) {
      this.status.textContent = err.message;
    }
  }

  setResults(users) {
    this.results = users;
    this.active = users.length ? 0 : -1;
    this.renderResults();
  }

  renderResults() {
    this.listbox.hidden = !this.results.length;
    this.input.setAttribute('aria-expanded', String(this.results.length > 0));
    this.listbox.replaceChildren(...this.results.map((u, i) => {
      const chosen = this.chosen.has(u.id);
      const id = `${this.listbox.id}-${i}`;
      return h('li', {
        id, role: 'option', class: `picker-option${i === this.active ? ' active' : ''}`, 'aria-selected': String(i === this.active), 'data-testid': 'member-option',
        onmousedown: (ev) => { ev.preventDefault(); this.pick(u); },
      }, avatar(u, 'sm'), h('span', { class: 'option-name', text: u.display_name }), h('span', { class: 'option-username', text: `@${u.username}` }), chosen ? h('span', { class: 'option-check', text: '✓' }) : null);
    }));
    if (this.active >= 0) this.input.setAttribute('aria-activedescendant', `${this.listbox.id}-${this.active}`);
    else this.input.removeAttribute('aria-activedescendant');
  }

  onKey(ev) {
    if (ev.key === 'ArrowDown' && this.results.length) { ev.preventDefault(); this.active = (this.active + 1) % this.results.length; this.renderResults(); }
    else if (ev.key === 'ArrowUp' && this.results.length) { ev.preventDefault(); this.active = (this.active - 1 + this.results.length) % this.results.length; this.renderResults(); }
    else if (ev.key === 'Enter' && this.active >= 0 && this.results.length) { ev.preventDefault(); this.pick(this.results[this.active]); }
    else if (ev.key === 'Escape' && this.results.length) { ev.preventDefault(); ev.stopPropagation(); this.setResults([]); }
    else if (ev.key === 'Backspace' && !this.input.value && this.chosen.size) {
      const last = [...this.chosen.keys()].pop();
      this.remove(last);
    }
  }

  pick(user) {
    if (!this.multiple) { this.onPick?.(user); return; }
    if (this.chosen.has(user.id)) this.chosen.delete(user.id); else this.chosen.set(user.id, user);
    this.input.value = '';
    this.setResults([]);
    this.renderChips();
    this.input.focus();
  }

  remove(id) {
    this.chosen.delete(id);
    this.renderChips();
    this.input.focus();
  }

  renderChips() {
    this.chips.replaceChildren(...[...this.chosen.values()].map((u) => h('li', { class: 'chip', 'data-testid': 'chip' },
      h('span', { text: u.display_name }),
      h('button', { type: 'button', class: 'chip-remove', 'aria-label': `Remove ${u.display_name}`, onclick: () => this.remove(u.id) }, icon('close')))));
  }

  ids() { return [...this.chosen.keys()]; }
}
