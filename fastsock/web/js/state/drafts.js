// Drafts: the composer's unsent text, one per room, kept in localStorage under the signed-in
// user's id (`fs.draft.<user>.<room>`), so another account on this browser never sees them.
// Bounded: a room the user is no longer in loses its draft, a draft keeps at most MAX_CHARS
// and at most MAX_DRAFTS are kept (the least recently written go first), about 2 MB at worst.
// Logging out forgets them (main.js). Methods of the Store (store.js), mixed into its prototype.

const MAX_DRAFTS = 50;
const MAX_CHARS = 20000; // five times the default message limit: room to trim a long one

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
  draftPrefix() { return `fs.draft.${this.me.id}.`; },

  // This user's drafts: [{key, roomId, text, at}].
  storedDrafts() {
    const prefix = this.draftPrefix();
    const keys = Array.from({ length: localStorage.length }, (_, i) => localStorage.key(i));
    return keys.filter((key) => key?.startsWith(prefix))
      .map((key) => ({ key, roomId: key.slice(prefix.length), ...parse(localStorage.getItem(key)) }));
  },

  draft(roomId) {
    if (!this.me) return '';
    return parse(localStorage.getItem(this.draftPrefix() + roomId))?.text || '';
  },

  // Keeps `text` as the room's draft; blank text removes it. The room list shows drafts.
  saveDraft(roomId, text) {
    if (!this.me) return;
    const key = this.draftPrefix() + roomId;
    const kept = text.trim() ? text.slice(0, MAX_CHARS) : '';
    if (kept === this.draft(roomId)) return;
    if (kept) {
      const others = this.storedDrafts().filter((d) => d.key !== key).sort((a, b) => a.at - b.at);
      const over = others.length - (MAX_DRAFTS - 1);
      for (const d of others.slice(0, Math.max(0, over))) localStorage.removeItem(d.key);
      try {
        localStorage.setItem(key, JSON.stringify({ text: kept, at: Date.now() }));
      } catch { /* storage full: the previous version stays, this one lives on screen */ }
    } else {
      localStorage.removeItem(key);
    }
    this.emit('rooms');
  },

  // The drafts of rooms the user is no longer in (left or removed, here or while away).
  // Run on every change of the room list, which is complete from its first load on, and
  // after every write: the composer's last write for a room just left goes too.
  pruneDrafts() {
    if (!this.me) return;
    for (const d of this.storedDrafts()) if (!this.rooms.has(d.roomId)) localStorage.removeItem(d.key);
  },

  // Logging out: message text is not left behind on a shared computer.
  forgetDrafts() {
    for (const d of this.storedDrafts()) localStorage.removeItem(d.key);
  },
};
