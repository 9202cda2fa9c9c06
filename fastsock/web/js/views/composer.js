// The composer: text with per-room drafts, Enter to send, typing throttling, the `@` member
// picker, the reply being written, and attachments (picker, drag and drop, paste) with
// per-file progress, cancel, retry and clear refusals.
import { h, icon, fmtSize } from '../dom.js';
import { store } from '../store.js';
import * as api from '../api.js';
import { messageLimits, uploadRefusal } from '../limits.js';
import { TextLimit } from './textlimit.js';
import { MentionPicker } from './mentions.js';
import { ReplyBar, localReplyTo } from './replies.js';
import { mentionsRoom } from '../mention_syntax.js';

const TYPING_EVERY = 2000;
const TYPING_IDLE = 3000;
const DRAFT_EVERY = 500;

export class Composer {
  constructor({ onSent }) {
    this.onSent = onSent;
    this.roomId = null;
    this.files = []; // {id, file, state: uploading|done|failed|refused, progress, error, upload, handle}
    this.typingSentAt = 0;
    this.idleTimer = null;
    this.draftTimer = null;
    this.draftUnsaved = false;
    this.input = h('textarea', { class: 'composer-input', rows: '1', placeholder: 'Write a message…', 'aria-label': 'Message', 'data-testid': 'composer-input' });
    // No `accept`: a file the browser has no type for would be greyed out, though the server
    // may take it (it decides by the content); uploadRefusal() explains other refusals at once.
    this.fileInput = h('input', { type: 'file', multiple: true, hidden: true, 'data-testid': 'file-input', onchange: () => { this.addFiles([...this.fileInput.files]); this.fileInput.value = ''; } });
    this.attachBtn = h('button', { type: 'button', class: 'icon-btn', 'aria-label': 'Attach files', 'data-testid': 'attach-button', onclick: () => this.fileInput.click() }, icon('clip'));
    this.sendBtn = h('button', { type: 'button', class: 'send-btn', 'aria-label': 'Send message', 'data-testid': 'send-button', onclick: () => this.send() }, icon('send'));
    this.tray = h('ul', { class: 'upload-tray', 'aria-label': 'Attachments', 'data-testid': 'upload-tray', hidden: true });
    this.hint = h('div', { class: 'composer-hint', 'aria-live': 'polite', 'data-testid': 'composer-hint' });
    this.limit = new TextLimit(this.input, 'composer');
    this.dropzone = h('div', { class: 'dropzone', hidden: true, 'aria-hidden': 'true' }, h('span', { text: 'Drop files to attach' }));
    this.mentions = new MentionPicker(this.input, () => this.roomId);
    this.replying = null; // the message the next send replies to
    this.replyBar = new ReplyBar({ onCancel: () => { this.replyTo(null); this.input.focus(); } });
    this.row = h('div', { class: 'composer-row' }, this.attachBtn, this.input, this.sendBtn);
    // A DM with a deactivated account: a note where the composer was (they cannot log in).
    this.closedNote = h('p', { class: 'composer-closed', role: 'status', 'data-testid': 'composer-closed', hidden: true });
    this.el = h('div', { class: 'composer', 'data-testid': 'composer' },
      this.mentions.el, this.replyBar.el, this.tray, this.closedNote, this.row,
      this.limit.el, this.hint, this.fileInput, this.dropzone);

    this.input.addEventListener('keydown', (ev) => {
      if (this.mentions.onKey(ev)) return;
      if (ev.key === 'Escape' && this.replying) { ev.preventDefault(); ev.stopPropagation(); this.replyTo(null); }
      else if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); this.send(); }
      else if (ev.key === 'ArrowUp' && !this.input.value) this.editLast(ev);
    });
    this.input.addEventListener('input', () => { this.autosize(); this.typedDraft(); this.onTyping(); this.updateSend(); });
    this.input.addEventListener('paste', (ev) => {
      const files = [...(ev.clipboardData?.files || [])];
      if (files.length) { ev.preventDefault(); this.addFiles(files); }
    });
    this.input.addEventListener('blur', () => this.stopTyping());
    window.addEventListener('pagehide', () => this.flushDraft()); // a reload, a closed tab
    // Hidden (another app, a locked phone): a mobile browser may end the page unannounced.
    document.addEventListener('visibilitychange', () => { if (document.hidden) this.flushDraft(); });
    this.watchWidth();
    store.on('users', () => this.updateClosed());
    store.on('reply-to', ({ message }) => { if (message.room_id === this.roomId) { this.replyTo(message); this.input.focus(); } });
    // A refused message to change (its row's Edit): its text, and its reply, back here.
    store.on('edit-unsent', ({ message }) => {
      if (message.room_id !== this.roomId) return;
      this.input.value = message.text;
      if (message.reply_to) this.replyTo(message.reply_to);
      this.typedDraft();
      this.autosize();
      this.updateSend();
      this.input.focus();
    });
    // Another tab changed this room's draft: show it, unless typing here is not saved yet.
    store.on('draft', ({ roomId }) => {
      const text = store.draft(roomId);
      if (roomId !== this.roomId || this.draftUnsaved || text === this.input.value) return;
      this.input.value = text;
      this.autosize();
      this.updateSend();
    });
    // Drag and drop anywhere on the conversation.
    queueMicrotask(() => {
      const host = this.el.parentElement || this.el;
      let depth = 0;
      host.addEventListener('dragenter', (ev) => { if (ev.dataTransfer?.types.includes('Files')) { depth += 1; this.dropzone.hidden = false; } });
      host.addEventListener('dragleave', () => { depth = Math.max(0, depth - 1); if (!depth) this.dropzone.hidden = true; });
      host.addEventListener('dragover', (ev) => { if (ev.dataTransfer?.types.includes('Files')) ev.preventDefault(); });
      host.addEventListener('drop', (ev) => {
        depth = 0;
        this.dropzone.hidden = true;
        const files = [...(ev.dataTransfer?.files || [])];
        if (files.length) { ev.preventDefault(); this.addFiles(files); }
      });
    });
    this.updateSend();
  }

  setRoom(roomId) {
    this.flushDraft();
    this.stopTyping();
    for (const f of this.files) f.handle?.abort();
    this.files = [];
    this.renderTray();
    this.roomId = roomId;
    this.replyTo(null);
    this.mentions.close();
    this.input.value = store.draft(roomId); // the cursor goes to its end
    this.autosize();
    this.updateSend();
    this.updateClosed();
  }

  // Nobody can read what is sent to a deactivated account: no composer in that DM.
  updateClosed() {
    const room = store.rooms.get(this.roomId);
    const partner = room && store.user(store.dmPartner(room));
    const closed = Boolean(partner?.deactivated);
    this.closedNote.hidden = !closed;
    this.row.hidden = closed;
    this.closedNote.textContent = closed ? "This account is deactivated: they can't log in or read new messages." : '';
  }

  focus() { this.input.focus(); }

  // Reply to `msg` with the next message (null: no longer).
  replyTo(msg) {
    this.replying = msg;
    this.replyBar.show(msg);
  }

  // The draft (state/drafts.js) is written at most every DRAFT_EVERY ms while typing: the
  // first keystroke at once, the last when the time is up or before the composer moves to
  // another room or the page goes away. The inline editor of a sent message (message.js)
  // keeps no draft: an edit is short-lived, and ends when its room closes.
  typedDraft() {
    if (this.draftTimer) { this.draftUnsaved = true; return; }
    this.writeDraft();
    this.draftTimer = setTimeout(() => {
      this.draftTimer = null;
      if (this.draftUnsaved) this.typedDraft();
    }, DRAFT_EVERY);
  }

  flushDraft() { if (this.draftUnsaved) this.writeDraft(); }

  writeDraft() {
    clearTimeout(this.draftTimer);
    this.draftTimer = null;
    this.draftUnsaved = false;
    if (this.roomId) store.saveDraft(this.roomId, this.input.value);
  }

  autosize() {
    this.input.style.height = 'auto';
    // Not laid out (a phone showing the room list) it measures 0: `rows` sizes it meanwhile,
    // and it is sized again once shown (watchWidth).
    if (this.input.scrollHeight) this.input.style.height = `${Math.min(this.input.scrollHeight, 200)}px`;
  }

  // A change of width (0 to laid out when a phone shows the conversation, a resized window)
  // wraps the text differently: size the box again. Its own height changes are not news.
  watchWidth() {
    let width = 0;
    new ResizeObserver(([entry]) => {
      if (entry.contentRect.width === width) return;
      width = entry.contentRect.width;
      this.autosize();
    }).observe(this.input);
  }

  // Typing: "start" at most every 2 s while typing; "stop" after 3 s idle, on send or blur.
  onTyping() {
    if (!this.roomId) return;
    if (!this.input.value.trim()) { this.stopTyping(); return; }
    const now = Date.now();
    if (now - this.typingSentAt >= TYPING_EVERY) {
      this.typingSentAt = now;
      this.typingRoom = this.roomId;
      store.socket.send('typing', { room_id: this.roomId, active: true });
    }
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => this.stopTyping(), TYPING_IDLE);
  }

  stopTyping() {
    clearTimeout(this.idleTimer);
    if (this.typingSentAt && this.typingRoom) {
      store.socket.send('typing', { room_id: this.typingRoom, active: false });
    }
    this.typingSentAt = 0;
    this.typingRoom = null;
  }

  updateSend() {
    const uploading = this.files.some((f) => f.state === 'uploading');
    const ready = this.files.some((f) => f.state === 'done');
    const over = this.renderLimit();
    this.sendBtn.disabled = uploading || over > 0 || (!this.input.value.trim() && !ready);
    // `@room` is refused from non-admins (the picker does not offer it): say so before sending.
    const room = store.rooms.get(this.roomId);
    const roomRefused = room && !(room.kind === 'group' && room.role === 'admin') && mentionsRoom(this.input.value);
    this.hint.textContent = uploading ? 'Waiting for uploads to finish…'
      : roomRefused ? 'Only group admins can mention @room: this message would not be sent.' : '';
  }

  send() {
    if (!this.roomId) return;
    const text = this.input.value.trim();
    if (this.files.some((f) => f.state === 'uploading')) return;
    const done = this.files.filter((f) => f.state === 'done');
    if (!text && !done.length) return;
    if (this.renderLimit() > 0) return; // the over-limit message says why
    const per = messageLimits().attachments;
    // The reply goes with the first message (its text), not with further attachments.
    const replyTo = this.replying && localReplyTo(this.replying);
    for (let i = 0; i < done.length; i += per) {
      store.sendMessage(this.roomId, i === 0 ? text : '', done.slice(i, i + per).map((f) => f.upload), i === 0 ? replyTo : null);
    }
    if (!done.length) store.sendMessage(this.roomId, text, [], replyTo);
    this.replyTo(null);
    this.files = this.files.filter((f) => f.state !== 'done');
    this.renderTray();
    this.input.value = '';
    this.writeDraft(); // the outbox holds the text now, until the server has it
    this.autosize();
    this.stopTyping();
    this.updateSend();
    this.onSent();
  }

  // The limit's state, and the send button's reason; returns how many characters are too many.
  renderLimit() {
    const over = this.limit.update();
    this.sendBtn.title = over ? `Too long to send: ${this.limit.sentence}` : '';
    return over;
  }

  editLast(ev) {
    const mine = store.messagesOf(this.roomId).filter((m) => m.id && m.sender_id === store.me.id && !m.deleted && m.type !== 'call' && m.type !== 'system');
    const last = mine[mine.length - 1];
    if (!last) return;
    ev.preventDefault();
    const btn = document.querySelector(`[data-id="${last.id}"] [data-testid=message-actions]`);
    btn?.focus();
    btn?.click();
  }

  // --- attachments ---------------------------------------------------------------------------

  addFiles(files) {
    for (const file of files) {
      const entry = { id: Math.random().toString(36).slice(2), file, state: 'uploading', progress: 0 };
      const refusal = uploadRefusal(file);
      if (refusal) {
        entry.state = 'refused';
        entry.error = refusal;
      }
      this.files.push(entry);
      if (entry.state === 'uploading') this.startUpload(entry);
    }
    this.renderTray();
    this.updateSend();
  }

  startUpload(entry) {
    entry.state = 'uploading';
    entry.progress = 0;
    entry.error = null;
    entry.handle = api.upload(entry.file, (p) => { entry.progress = p; this.renderProgress(entry); });
    entry.handle.promise.then((upload) => {
      entry.state = 'done';
      entry.upload = upload;
    }, (err) => {
      if (err.code === 'aborted') { this.files = this.files.filter((f) => f !== entry); return; }
      entry.state = (err.status === 413 || err.status === 415) ? 'refused' : 'failed';
      entry.error = err.message;
    }).finally(() => { this.renderTray(); this.updateSend(); });
  }

  renderProgress(entry) {
    const bar = this.tray.querySelector(`[data-upload="${entry.id}"] progress`);
    if (bar) bar.value = Math.round(entry.progress * 100);
  }

  renderTray() {
    this.tray.hidden = !this.files.length;
    this.tray.replaceChildren(...this.files.map((f) => {
      const remove = () => { f.handle?.abort(); this.files = this.files.filter((x) => x !== f); this.renderTray(); this.updateSend(); this.input.focus(); };
      const thumb = f.file.type.startsWith('image/') && f.state !== 'refused'
        ? h('img', { class: 'upload-thumb', alt: '', src: f.previewUrl || (f.previewUrl = URL.createObjectURL(f.file)) })
        : h('span', { class: 'upload-thumb file' }, icon('file'));
      const status = f.state === 'uploading'
        ? h('progress', { max: '100', value: String(Math.round(f.progress * 100)), 'aria-label': `Uploading ${f.file.name}`, 'data-testid': 'upload-progress' })
        : f.state === 'done'
          ? h('span', { class: 'upload-ok', text: `${fmtSize(f.file.size)} · ready` })
          : h('span', { class: 'upload-error', role: 'alert', 'data-testid': 'upload-error', text: f.error });
      return h('li', { class: `upload upload-${f.state}`, 'data-testid': 'upload-item', dataset: { upload: f.id, state: f.state } },
        thumb,
        h('span', { class: 'upload-meta' }, h('span', { class: 'upload-name', text: f.file.name, title: f.file.name }), status),
        f.state === 'failed' ? h('button', { type: 'button', class: 'icon-btn', 'aria-label': `Retry upload of ${f.file.name}`, 'data-testid': 'upload-retry', onclick: () => { this.startUpload(f); this.renderTray(); this.updateSend(); } }, icon('retry')) : null,
        h('button', { type: 'button', class: 'icon-btn', 'aria-label': f.state === 'uploading' ? `Cancel upload of ${f.file.name}` : `Remove ${f.file.name}`, 'data-testid': f.state === 'uploading' ? 'upload-cancel' : 'upload-remove', onclick: remove }, icon('close')));
    }));
  }
}
