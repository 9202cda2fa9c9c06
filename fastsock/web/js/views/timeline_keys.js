// The timeline is one tab stop (a roving tabindex, as in a listbox or a grid): Tab reaches one
// entry, the one last focused (or the newest); Up/Down/Home/End move between entries; Tab and
// Shift+Tab go through the focused entry's own buttons and links, then on out of the list (the
// other entries' buttons are out of the tab order). On a focused message, the menu key or
// Shift+F10 opens its actions, R replies (views/message.js) and Escape goes to the composer.
// Without this, reaching the composer took three Tabs per message.

const ENTRIES = '[data-testid="message"], [data-testid="system-line"], [data-testid="call-entry"]';
const CONTROLS = 'button, a[href], input, textarea, select, audio, video, [tabindex]';

export class TimelineKeys {
  constructor(list, { onEscape }) {
    this.list = list;
    this.currentKey = null; // the entry holding the tab stop, by its message id or client id
    list.addEventListener('focusin', (ev) => this.onFocus(ev));
    list.addEventListener('keydown', (ev) => this.onKey(ev, onEscape));
  }

  entries() { return [...this.list.querySelectorAll(ENTRIES)]; }

  static keyOf(el) { return el.dataset.id || `cid:${el.dataset.cid || ''}`; }

  // After every render: the tab stop is on the current entry (the newest when that one is
  // gone), every other entry and its controls are out of the tab order.
  sync() {
    const all = this.entries();
    const current = all.find((el) => TimelineKeys.keyOf(el) === this.currentKey) || all[all.length - 1] || null;
    for (const el of all) {
      const on = el === current;
      el.tabIndex = on ? 0 : -1;
      for (const c of el.querySelectorAll(CONTROLS)) c.tabIndex = on ? 0 : -1;
    }
    // An empty list keeps its own tab stop (it scrolls); with entries, they are the stop.
    this.list.tabIndex = current ? -1 : 0;
  }

  onFocus(ev) {
    const entry = ev.target.closest?.(ENTRIES);
    if (!entry || !this.list.contains(entry)) return;
    const key = TimelineKeys.keyOf(entry);
    if (key === this.currentKey && entry.tabIndex === 0) return;
    this.currentKey = key;
    this.sync();
  }

  onKey(ev, onEscape) {
    const entry = ev.target.closest?.(ENTRIES);
    // Keys for the entry itself; its buttons and an inline editor keep theirs.
    if (!entry || ev.target !== entry || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const all = this.entries();
    const i = all.indexOf(entry);
    let next = null;
    if (ev.key === 'ArrowUp') next = all[Math.max(0, i - 1)];
    else if (ev.key === 'ArrowDown') next = all[Math.min(all.length - 1, i + 1)];
    else if (ev.key === 'Home') next = all[0];
    else if (ev.key === 'End') next = all[all.length - 1];
    else if (ev.key === 'ContextMenu' || (ev.key === 'F10' && ev.shiftKey)) {
      const menu = entry.querySelector('[data-testid="message-actions"]');
      if (!menu) return;
      ev.preventDefault();
      menu.click();
      return;
    } else if (ev.key === 'Escape') {
      ev.preventDefault();
      onEscape();
      return;
    } else return;
    ev.preventDefault();
    next?.focus(); // the scroll follows the focus (and loads pages at the ends)
  }
}
