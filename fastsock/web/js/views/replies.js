// Replies: the quote of the original above a reply (a button that jumps to it), the jump
// itself, swipe right to reply on a touch screen, and the composer's "Replying to" bar.
import { h, icon } from '../dom.js';
import { store } from '../store.js';
import { plainWithNames } from './mentions.js';
import { toast } from './toast.js';

const SNIPPET_CHARS = 120;
const SWIPE_PX = 64; // a finger moving this far right (and mostly sideways) replies
const SWIPE_START_PX = 12;

export const replyIcon = () => icon(null, null, { paths: ['M10 9V5l-7 7 7 7v-4.1c5 0 8.5 1.6 11 5.1-1-5-4-10-11-11z'] });

// Replies are for people's messages: not call entries, system lines or unsent rows.
export function canReply(msg) {
  return Boolean(msg.id) && !msg.deleted && msg.type !== 'call' && msg.type !== 'system';
}

// One line of the original as plain text (its markup removed and mentions named, as in
// notifications). A quote has no `mentions`: its room's members stand in.
function snippet(orig, roomId) {
  const ids = orig.mentions || store.rooms.get(roomId)?.member_ids;
  const text = plainWithNames(orig.text || '', ids).replace(/\s+/g, ' ').trim();
  if (!text) return orig.type === 'call' ? 'Call' : 'Attachment';
  return text.length > SNIPPET_CHARS ? `${text.slice(0, SNIPPET_CHARS - 1)}…` : text;
}

// The original as the server resolved it when the reply was read (`reply_to`): so an edit
// or a delete of the original shows.
export function replyQuote(msg) {
  const orig = msg.reply_to;
  const name = store.displayName(orig.sender_id);
  const quoted = orig.deleted ? 'deleted message' : snippet(orig, msg.room_id);
  const text = orig.deleted
    ? h('em', { class: 'reply-quote-text', text: quoted })
    : h('span', { class: 'reply-quote-text', dir: 'auto', text: quoted });
  return h('button', {
    type: 'button', class: 'reply-quote', 'data-testid': 'reply-quote',
    'aria-label': `In reply to ${name}: ${quoted}. Show the original message`,
    onclick: () => jumpToMessage(msg.room_id, orig.id),
  }, h('span', { class: 'reply-quote-name', text: name }), text);
}

export function quoteSignature(msg) {
  const o = msg.reply_to;
  return o ? [o.id, o.deleted || snippet(o, msg.room_id), store.user(o.sender_id) && store.displayName(o.sender_id)] : null;
}

// Show the original: the conversation scrolls to it and highlights it (state/history.js).
export async function jumpToMessage(roomId, id) {
  try {
    await store.showMessage(roomId, id);
  } catch (err) {
    toast(`Couldn't show the original message: ${err.message}`, 'error');
  }
}

// Swipe a row right on a touch screen to reply (as in WhatsApp or Signal): the row follows
// the finger; a vertical move first is scrolling and is left alone. The rows have
// `touch-action: pan-y`, so the browser leaves sideways moves to us.
export function swipeToReply(row, onReply) {
  let start = null; // {x, y, swiping}
  const reset = () => { start = null; row.style.transform = ''; row.classList.remove('swiping'); };
  row.addEventListener('touchstart', (ev) => {
    const t = ev.touches[0];
    start = ev.touches.length === 1 && !ev.target.closest('textarea, .msg-edit') ? { x: t.clientX, y: t.clientY, swiping: false } : null;
  }, { passive: true });
  row.addEventListener('touchmove', (ev) => {
    const t = ev.touches[0];
    if (!start || !t) return;
    const dx = t.clientX - start.x;
    const dy = Math.abs(t.clientY - start.y);
    if (!start.swiping) {
      if (dy > SWIPE_START_PX && dy > dx) { start = null; return; } // scrolling
      if (dx < SWIPE_START_PX || dx < dy * 2) return;
      start.swiping = true;
      row.classList.add('swiping');
    }
    row.style.transform = `translateX(${Math.max(0, Math.min(dx, SWIPE_PX * 1.25))}px)`;
    row.classList.toggle('swipe-ready', dx >= SWIPE_PX);
  }, { passive: true });
  row.addEventListener('touchend', (ev) => {
    const t = ev.changedTouches[0];
    const done = start?.swiping && t && t.clientX - start.x >= SWIPE_PX;
    row.classList.remove('swipe-ready');
    reset();
    if (done) {
      if (ev.cancelable) ev.preventDefault(); // no click after the swipe (not cancelable while scrolling)
      onReply();
    }
  });
  row.addEventListener('touchcancel', reset);
}

// The composer's bar while a reply is being written: "Replying to NAME: snippet" and a
// cancel button (Escape in the composer cancels too).
export class ReplyBar {
  constructor({ onCancel }) {
    this.text = h('span', { class: 'reply-bar-text', 'data-testid': 'reply-bar-text' });
    this.el = h('div', { class: 'reply-bar', hidden: true, 'data-testid': 'reply-bar', role: 'status' },
      replyIcon(), this.text,
      h('button', { type: 'button', class: 'icon-btn', 'aria-label': 'Cancel reply', 'data-testid': 'reply-cancel', onclick: onCancel }, icon('close')));
  }

  show(msg) {
    this.el.hidden = !msg;
    if (!msg) { this.text.replaceChildren(); return; }
    this.text.replaceChildren('Replying to ', h('strong', { text: store.displayName(msg.sender_id) }), `: ${snippet(msg, msg.room_id)}`);
  }
}

// What a reply carries while unsent: the original as the server will show it.
export function localReplyTo(msg) {
  return { id: msg.id, sender_id: msg.sender_id, type: msg.type ?? 'text', text: (msg.text || '').slice(0, 200), deleted: false, created_at: msg.created_at };
}
