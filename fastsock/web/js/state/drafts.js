// Drafts: the composer's unsent text, one per room, kept in localStorage under the signed-in
// user's id (`fs.draft.<user>.<room>`), so another account on this browser never sees them.
// Bounded: a room the user is no longer in loses its draft, a draft keeps at most MAX_CHARS
// and at most MAX_DRAFTS are kept (the least recently written go first), about 2 MB at worst.
// Logging out forgets them (main.js). Methods of the Store (store.js), mixed into its prototype.

const MAX_DRAFTS = 50;
const MAX_CHARS = 20000; // five times the default message limit: room to trim a long one
const PREVIEW_CHARS = 100; // of a draft's first line in the room list (and its label)

// `text` cut to at most `max` UTF-16 units, never between the two halves of a character.
function clip(text, max) {
  const cut = text.slice(0, max);
  return /[\uD800-\uDBFF]$/.test(cut) ? cut.slice(0, -1) : cut;
}

// What the room list shows of a draft: its first line, clipped.
function preview(text) {
  const line = text.trim().split('\n', 1)[0];
  return line.length > PREVIEW_CHARS ? `${clip(line, PREVIEW_CHARS)}…` : line;
}

// A stored draft is {text, at}; a plain string is one an earlier client wrote, the oldest.
function parse(raw) {
  if (raw === null) return null;
  try {
    const d = JSON.parse(raw);
    if (typeof d?.text === 'string') return { text: d.text, at: Number(d.at) || 0 };
  } catch { /* plain text */ }
  return { text: raw, at: 0 };
}

export const drafts = {
  draftPrefix(userId = this.me.id) { return `fs.draft.${userId}.`; },

  // This user's drafts (or `userId`'s): [{key, roomId, text, at}].
  storedDrafts(userId = this.me.id) {
    const prefix = this.draftPrefix(userId);
    const keys = Array.from({ length: localStorage.length }, (_, i) => localStorage.key(i));
    return keys.filter((key) => key?.startsWith(prefix))
      .map((key) => ({ key, roomId: key.slice(prefix.length), ...parse(localStorage.getItem(key)) }));
  },

  draft(roomId) {
    if (!this.me) return '';
    return parse(localStorage.getItem(this.draftPrefix() + roomId))?.text || '';
  },

  draftPreview(roomId) { return preview(this.draft(roomId)); },

  // Keeps `text` as the room's draft; blank text removes it. The room list shows drafts: it
  // re-renders only when what it shows of them changes.
  saveDraft(roomId, text) {
    if (!this.me) return;
    const key = this.draftPrefix() + roomId;
    const kept = text.trim() ? clip(text, MAX_CHARS) : '';
    const before = this.draft(roomId);
    if (kept === before) return;
    let shown = preview(kept) !== preview(before);
    if (kept) {
      const others = this.storedDrafts().filter((d) => d.key !== key).sort((a, b) => a.at - b.at);
      const over = others.length - (MAX_DRAFTS - 1);
      if (over > 0) shown = true;
      for (const d of others.slice(0, Math.max(0, over))) localStorage.removeItem(d.key);
      try {
        localStorage.setItem(key, JSON.stringify({ text: kept, at: Date.now() }));
      } catch { /* storage full: the previous version stays, this one lives on screen */ }
    } else {
      localStorage.removeItem(key);
    }
    if (shown) this.emit('rooms');
  },

  // Storage is full (state/outbox.js): the least recently written draft goes. False if none.
  dropOldestDraft() {
    const [oldest] = this.storedDrafts().sort((a, b) => a.at - b.at);
    if (!oldest) return false;
    localStorage.removeItem(oldest.key);
    this.emit('rooms');
    return true;
  },

  // Another tab of ours wrote or removed a draft (a `storage` event's key, main.js): the room
  // list shows it, and so does the composer if it holds that room (views/composer.js).
  draftChanged(key) {
    if (!this.me || !key?.startsWith(this.draftPrefix())) return;
    this.emit('rooms');
    this.emit('draft', { roomId: key.slice(this.draftPrefix().length) });
  },

  // The drafts of rooms the user is no longer in (left or removed, here or while away).
  // Run on every change of the room list, which is complete from its first load on, and
  // after every write: the composer's last write for a room just left goes too.
  pruneDrafts() {
    if (!this.me) return;
    for (const d of this.storedDrafts()) if (!this.rooms.has(d.roomId)) localStorage.removeItem(d.key);
  },

  // Logging out: message text is not left behind on a shared computer. By id: the second
  // purge runs after stop() (main.js).
  forgetDrafts(userId = this.me.id) {
    for (const d of this.storedDrafts(userId)) localStorage.removeItem(d.key);
  },
};
