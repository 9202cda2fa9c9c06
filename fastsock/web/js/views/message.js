// One message row: avatar + name + time (unless grouped), the quote of the message it replies
// to, text (mentions highlighted), attachments, reactions, delivery ticks for my own messages,
// failed-send retry, and the actions (hover buttons, right click, long press, R, swipe right).
import { h, icon, fmtTime, fmtFull, listNames } from '../dom.js';
import { store } from '../store.js';
import { avatar } from './avatar.js';
import { renderAttachments } from './attachments.js';
import { openMenu, openReactionPicker } from './menu.js';
import { confirmDialog } from './modal.js';
import { TextLimit } from './textlimit.js';
import { renderMarkdown } from './markdown.js';
import { isEmojiOnly } from './emoji.js';
import { isCall, renderCallEntry, callSignature } from '../calls/timeline.js';
import { isSystem, renderSystemLine, systemSignature } from './systemline.js';
import { highlightMentions, mentionSignature, mentionsMe } from './mentions.js';
import { canReply, replyQuote, quoteSignature, replyIcon, swipeToReply } from './replies.js';

const TICK_TEXT = { sending: 'Sending…', sent: 'Sent', delivered: 'Delivered', read: 'Read', failed: 'Not sent' };
const TICK_GLYPH = { sending: '🕓', failed: '!' }; // the other states are drawn (TICKS)
const CHECK = 'M1.5 6 4.5 9 10.5 2';
const CHECK_AFTER = 'M7.6 8.6 8 9 14 2'; // the second tick of a pair: its short arm hides behind the first
const TICKS = {
  one: { paths: [CHECK], viewBox: '0 0 12 11' },
  two: { paths: [CHECK, CHECK_AFTER], viewBox: '0 0 15.5 11' },
};
const LONG_PRESS_MS = 500;
const PRESS_SLOP_PX = 10; // a finger moving further is scrolling, not pressing
const pressMenus = new WeakMap(); // row -> opens its actions menu from a long press

export function signature(msg, grouped) {
  if (isCall(msg)) return callSignature(msg);
  if (isSystem(msg)) return systemSignature(msg, grouped);
  const u = store.user(msg.sender_id);
  const tick = msg.sender_id === store.me.id ? store.tickOf(msg) : null;
  return JSON.stringify([msg.id, msg.client_msg_id, msg.version, msg.state, msg.text, msg.deleted, msg.edited_at, grouped,
    msg.reactions, tick && [tick.state, tick.readers.length], u && [store.displayName(u.id), u.avatar_url], msg.error, msg.permanent,
    mentionSignature(msg), quoteSignature(msg)]);
}

function tickTitle(msg, tick) {
  const room = store.rooms.get(msg.room_id);
  if (tick.state === 'failed') return `Not sent${msg.error ? `: ${msg.error}` : ''}`;
  if (room && room.kind === 'group' && tick.readers.length) {
    const names = tick.readers.map((id) => store.displayName(id));
    return `${TICK_TEXT[tick.state]} · Read by ${listNames(names)}`;
  }
  return TICK_TEXT[tick.state];
}

function reactionsBar(msg) {
  const entries = Object.entries(msg.reactions || {}).filter(([, users]) => users.length);
  if (!entries.length || msg.deleted) return null;
  return h('div', { class: 'reactions', 'data-testid': 'reactions' },
    entries.map(([emoji, users]) => {
      const mine = users.includes(store.me.id);
      const names = users.map((id) => (id === store.me.id ? 'You' : store.displayName(id)));
      const who = `${listNames(names)} reacted with ${emoji}`;
      return h('button', {
        type: 'button', class: `reaction${mine ? ' mine' : ''}`, 'aria-pressed': String(mine), title: who, 'aria-label': `${emoji} ${users.length}: ${who}`,
        'data-testid': 'reaction', dataset: { emoji },
        onclick: () => store.toggleReaction(msg, emoji),
      }, h('span', { class: 'reaction-emoji', text: emoji }), h('span', { class: 'reaction-count', 'data-testid': 'reaction-count', text: String(users.length) }));
    }),
    h('button', { type: 'button', class: 'reaction add-reaction', 'aria-label': 'Add reaction', onclick: (ev) => openReactionPicker(ev.currentTarget, (e) => store.toggleReaction(msg, e)) }, icon('smile')));
}

export function renderMessage(msg, { grouped, onEdit }) {
  if (isCall(msg)) return renderCallEntry(msg); // no edit, reactions or delete on call entries
  if (isSystem(msg)) return renderSystemLine(msg, grouped); // nor on history lines
  const mine = msg.sender_id === store.me.id;
  const name = store.displayName(msg.sender_id);
  const sender = store.user(msg.sender_id) || { id: msg.sender_id, display_name: name };
  const row = h('div', {
    class: `msg${grouped ? ' grouped' : ''}${mine ? ' mine' : ''}${msg.deleted ? ' deleted' : ''}${msg.state === 'failed' ? ' failed' : ''}${!mine && !msg.deleted && mentionsMe(msg) ? ' mentions-me' : ''}`,
    'data-testid': 'message',
    dataset: { id: msg.id || '', cid: msg.client_msg_id || '', sender: msg.sender_id },
    role: 'article',
    'aria-label': `${name}, ${fmtTime(msg.created_at)}`,
  });
  row.append(grouped
    ? h('time', { class: 'msg-hover-time', datetime: msg.created_at, title: fmtFull(msg.created_at), text: fmtTime(msg.created_at).replace(/\s?[AP]\.?M\.?$/i, '') })
    : avatar(sender, 'md'));
  const body = h('div', { class: 'msg-body' });
  if (!grouped) {
    body.append(h('div', { class: 'msg-header' },
      h('span', { class: 'msg-sender', 'data-testid': 'message-sender', text: name }),
      h('time', { class: 'msg-time', datetime: msg.created_at, title: fmtFull(msg.created_at), text: fmtTime(msg.created_at) })));
  }
  let textEl = null;
  if (msg.deleted) {
    body.append(h('div', { class: 'msg-text tombstone', 'data-testid': 'tombstone', text: 'This message was deleted' }));
  } else {
    if (msg.reply_to) body.append(replyQuote(msg));
    // dir=auto: a right-to-left message aligns right. The text is formatted (markdown.js).
    textEl = h('div', { class: `msg-text${msg.text && isEmojiOnly(msg.text) ? ' emoji-only' : ''}`, dir: 'auto' });
    if (msg.text) textEl.append(h('span', { class: 'msg-content', 'data-testid': 'message-text' }, highlightMentions(renderMarkdown(msg.text), msg)));
    if (msg.edited_at) textEl.append(h('span', { class: 'edited', 'data-testid': 'edited', title: fmtFull(msg.edited_at), text: ' (edited)' }));
    if (msg.text || msg.edited_at) body.append(textEl); else textEl = null;
    const att = renderAttachments(msg.attachments);
    if (att) { body.append(att); textEl = null; }
  }
  const bar = reactionsBar(msg);
  if (mine && !msg.deleted) {
    const tick = store.tickOf(msg);
    const title = tickTitle(msg, tick);
    const tickEl = h('span', { class: `tick tick-${tick.state}`, 'data-testid': 'tick', 'data-state': tick.state, title, 'aria-label': title, role: 'img' },
      TICK_GLYPH[tick.state] || icon(null, null, tick.state === 'sent' ? TICKS.one : TICKS.two));
    // Inline after the text (like a chat bubble's corner); on its own line after attachments.
    if (textEl) textEl.append(tickEl); else body.append(h('div', { class: 'msg-status' }, tickEl));
    if (msg.state === 'failed') {
      // A refusal that sending again cannot change offers no Retry: Edit puts the text back.
      const cid = msg.client_msg_id;
      body.append(h('div', { class: 'send-failed', role: 'alert', 'data-testid': 'send-failed' },
        h('span', { text: `Not sent${msg.error ? ` — ${msg.error}` : ''}.` }),
        msg.permanent
          ? h('button', { type: 'button', class: 'link-btn', 'data-testid': 'edit-unsent', onclick: () => store.editUnsent(cid) }, 'Edit')
          : h('button', { type: 'button', class: 'link-btn', 'data-testid': 'retry-send', onclick: () => store.retrySend(cid) }, 'Retry'),
        h('button', { type: 'button', class: 'link-btn', 'data-testid': 'discard-send', onclick: () => store.discardSend(cid) }, msg.permanent ? 'Delete' : 'Discard')));
    }
  }
  if (bar) body.append(bar);
  row.append(body);

  if (msg.id && !msg.deleted) {
    const room = store.rooms.get(msg.room_id);
    const canDelete = mine || room?.role === 'admin';
    // The menu's items; the reaction picker hangs from `from`, the toolbar's button or, on a
    // touch screen (no hover toolbar), the row itself.
    const reply = () => store.emit('reply-to', { message: msg });
    const items = (from) => {
      const list = [
        { label: 'Add reaction', icon: icon('smile'), testid: 'menu-react', action: () => openReactionPicker(from, (e) => store.toggleReaction(msg, e)) },
        ...(canReply(msg) ? [{ label: 'Reply', icon: replyIcon(), testid: 'menu-reply', action: reply }] : []),
        { label: 'Copy text', icon: icon('file'), testid: 'menu-copy', action: () => navigator.clipboard?.writeText(msg.text).catch(() => {}) },
      ];
      if (mine) list.push({ label: 'Edit', icon: icon('edit'), testid: 'menu-edit', action: () => onEdit(msg) });
      if (canDelete) {
        list.push({
          label: 'Delete', icon: icon('trash'), danger: true, testid: 'menu-delete',
          action: async () => {
            const ok = await confirmDialog({ title: 'Delete message?', text: 'Everyone in the conversation will see that a message was deleted.', confirmLabel: 'Delete', danger: true });
            if (ok) store.deleteMessage(msg);
          },
        });
      }
      return list;
    };
    const reactBtn = h('button', { type: 'button', class: 'icon-btn', 'aria-label': 'Add reaction', 'data-testid': 'react-button', onclick: () => openReactionPicker(reactBtn, (e) => store.toggleReaction(msg, e)) }, icon('smile'));
    const moreBtn = h('button', { type: 'button', class: 'icon-btn', 'aria-label': 'Message actions', 'aria-haspopup': 'menu', 'data-testid': 'message-actions', onclick: () => openMenu(moreBtn, items(moreBtn)) }, icon('more'));
    const replyBtn = canReply(msg) ? h('button', { type: 'button', class: 'icon-btn', 'aria-label': 'Reply', 'aria-keyshortcuts': 'R', title: 'Reply (R)', 'data-testid': 'reply-button', onclick: reply }, replyIcon()) : null;
    row.append(h('div', { class: 'msg-actions' }, replyBtn, reactBtn, moreBtn));
    if (canReply(msg)) {
      // R with the focus on the message (its action buttons, the row after a jump) replies.
      row.addEventListener('keydown', (ev) => {
        if (ev.key.toLowerCase() !== 'r' || ev.ctrlKey || ev.metaKey || ev.altKey || ev.target.closest('textarea, input, .msg-edit')) return;
        ev.preventDefault();
        reply();
      });
      swipeToReply(row, reply);
    }
    pressMenus.set(row, () => {
      row.classList.add('pressed');
      openMenu(row, items(row), 'Message actions', { onClose: () => row.classList.remove('pressed') });
    });
    const press = longPress(row);
    row.addEventListener('contextmenu', (ev) => {
      if (ev.target.closest('a, .msg-edit')) return;
      ev.preventDefault();
      // A long press on a phone fires contextmenu too: one menu, from the long press.
      if (press.active()) press.fire();
      else if (ev.pointerType === 'touch') openMenu(row, items(row));
      else openMenu({ x: ev.clientX, y: ev.clientY }, items(moreBtn));
    });
  }
  return row;
}

// Long press on a touch screen: the row's menu after LONG_PRESS_MS without moving (scrolling
// or a second finger cancels). The finger lifting afterwards must not click what opened under
// it. A row redrawn during the press (a reaction, a tick) is replaced: the menu then opens
// from the row that shows the message now.
function longPress(row) {
  let press = null; // {x, y, timer, fired}
  const cancel = () => { if (press) clearTimeout(press.timer); press = null; };
  const fire = () => {
    if (press?.fired !== false) return;
    press.fired = true;
    clearTimeout(press.timer);
    const current = row.isConnected ? row : document.querySelector(`[data-testid=message][data-id="${row.dataset.id}"]`);
    pressMenus.get(current)?.();
  };
  row.addEventListener('touchstart', (ev) => {
    cancel();
    if (ev.touches.length !== 1 || ev.target.closest('button, a, textarea, .msg-edit')) return;
    const t = ev.touches[0];
    press = { x: t.clientX, y: t.clientY, fired: false, timer: setTimeout(fire, LONG_PRESS_MS) };
  }, { passive: true });
  row.addEventListener('touchmove', (ev) => {
    const t = ev.touches[0];
    if (press && !press.fired && (!t || Math.hypot(t.clientX - press.x, t.clientY - press.y) > PRESS_SLOP_PX)) cancel();
  }, { passive: true });
  row.addEventListener('touchend', (ev) => {
    if (press?.fired) ev.preventDefault(); // no click or mouse events after the menu opened
    cancel();
  });
  row.addEventListener('touchcancel', cancel);
  return { fire, active: () => press !== null };
}

// Inline editor replacing the text of a row. Enter saves, Escape cancels.
export function startEdit(row, msg, onDone) {
  const body = row.querySelector('.msg-body');
  const textEl = body.querySelector('.msg-text');
  const input = h('textarea', { class: 'msg-edit-input', 'aria-label': 'Edit message', 'data-testid': 'edit-input', rows: '2' });
  input.value = msg.text;
  const limit = new TextLimit(input, 'edit');
  const check = () => { saveBtn.disabled = limit.update() > 0; };
  input.addEventListener('input', check);
  const save = () => {
    if (limit.update() > 0) return; // the over-limit message says why
    const text = input.value.trim();
    editor.remove();
    if (textEl) textEl.hidden = false;
    onDone();
    if (text && text !== msg.text) store.editMessage(msg, text);
    else if (!text && !(msg.attachments || []).length) {
      confirmDialog({ title: 'Delete message?', text: 'The message is empty. Delete it?', confirmLabel: 'Delete', danger: true })
        .then((ok) => { if (ok) store.deleteMessage(msg); });
    }
  };
  const cancel = () => { editor.remove(); if (textEl) textEl.hidden = false; onDone(); row.querySelector('[data-testid=message-actions]')?.focus(); };
  input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey) { ev.preventDefault(); save(); }
    if (ev.key === 'Escape') { ev.preventDefault(); ev.stopPropagation(); cancel(); }
  });
  const saveBtn = h('button', { type: 'button', class: 'btn btn-small btn-primary', 'data-testid': 'edit-save', onclick: save }, 'Save');
  const editor = h('div', { class: 'msg-edit' }, input, limit.el,
    h('div', { class: 'msg-edit-actions' },
      h('span', { class: 'field-hint', text: 'Enter to save · Esc to cancel' }),
      h('button', { type: 'button', class: 'btn btn-small', onclick: cancel }, 'Cancel'),
      saveBtn));
  if (textEl) { textEl.hidden = true; textEl.after(editor); } else body.append(editor);
  check(); // a long message shows its count at once, not at the first key
  input.focus();
  input.setSelectionRange(input.value.length, input.value.length);
}
