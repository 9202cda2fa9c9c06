// The call UI: the incoming-call dialog (over whatever conversation is open) and the call
// screen (calling…, connecting, in call, the final words), full size or minimised to a corner
// so the conversation stays usable. Elements are built once and updated in place, so video
// elements keep playing across updates.
import { h, icon } from '../dom.js';
import { store } from '../store.js';
import { avatar } from '../views/avatar.js';
import { calls } from './manager.js';
import { describeQuality } from './stats.js';
import { fmtDuration, mediaWord } from './wording.js';

const FOCUSABLE = 'button:not([disabled]):not([hidden]), [tabindex]:not([tabindex="-1"])';
let idSeq = 0;
const uid = (p) => `${p}-${(idSeq += 1)}`;

function partnerUser(s) {
  return store.user(s.partnerId) || { id: s.partnerId, display_name: store.displayName(s.partnerId) };
}

// --- incoming call --------------------------------------------------------------------------

class IncomingDialog {
  constructor() {
    const titleId = uid('incoming-title');
    const descId = uid('incoming-desc');
    this.pic = h('span', { class: 'call-incoming-avatar' });
    this.name = h('h2', { id: titleId, class: 'call-incoming-name', 'data-testid': 'incoming-caller' });
    this.kind = h('p', { id: descId, class: 'call-incoming-kind', 'data-testid': 'incoming-kind' });
    this.status = h('p', { class: 'call-incoming-status', role: 'status', 'aria-live': 'polite', 'data-testid': 'incoming-status' });
    this.hint = h('p', { class: 'call-incoming-hint', 'data-testid': 'ringtone-blocked', hidden: true, text: 'The browser blocked the ringtone — it plays after you click or press a key on the page.' });
    this.decline = h('button', { type: 'button', class: 'call-round call-danger', 'aria-label': 'Decline', title: 'Decline', 'data-testid': 'call-decline', onclick: () => calls.decline() }, icon('hangup'));
    this.acceptAudio = h('button', { type: 'button', class: 'call-round call-ok', 'aria-label': 'Accept', 'data-testid': 'call-accept-audio', onclick: () => calls.accept(false) }, icon('phone'));
    this.acceptVideo = h('button', { type: 'button', class: 'call-round call-ok', 'aria-label': 'Accept with video', title: 'Accept with video', 'data-testid': 'call-accept-video', onclick: () => calls.accept(true) }, icon('video'));
    this.buttons = h('div', { class: 'call-incoming-actions' },
      h('span', { class: 'call-action' }, this.decline, h('span', { class: 'call-action-label', 'aria-hidden': 'true', text: 'Decline' })),
      h('span', { class: 'call-action' }, this.acceptAudio, h('span', { class: 'call-action-label', 'aria-hidden': 'true', 'data-role': 'audio-label' })),
      h('span', { class: 'call-action', 'data-role': 'video-action' }, this.acceptVideo, h('span', { class: 'call-action-label', 'aria-hidden': 'true', text: 'Video' })));
    this.el = h('div', {
      class: 'call-incoming', role: 'alertdialog', 'aria-modal': 'false', 'aria-labelledby': titleId, 'aria-describedby': descId,
      tabindex: '-1', 'data-testid': 'incoming-call', hidden: true,
    }, this.pic, h('div', { class: 'call-incoming-text' }, this.name, this.kind), this.status, this.hint, this.buttons);
    // Escape silences the ringtone; it never declines (that takes the Decline button).
    this.el.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape') {
        ev.preventDefault();
        ev.stopPropagation();
        calls.silence();
      }
    });
    this.shownFor = null;
    this.notification = null;
  }

  update(s) {
    const show = Boolean(s && s.role === 'callee' && !s.accepted
      && (['incoming', 'accepting'].includes(s.phase) || (s.phase === 'ended' && ['incoming', 'accepting'].includes(s.endedFrom))));
    if (!show) { this.hide(); return; }
    const name = store.displayName(s.partnerId);
    const video = s.media === 'video';
    this.name.textContent = name;
    this.kind.textContent = `Incoming ${mediaWord(s.media)} call`;
    if (this.shownFor !== s) this.pic.replaceChildren(avatar(partnerUser(s), 'xl'));
    const ended = s.phase === 'ended';
    let status = '';
    if (ended) status = s.final || 'Call ended';
    else if (s.phase === 'accepting') status = 'Connecting…';
    else if (s.error) status = s.error;
    else if (s.silenced) status = 'Ringer silenced';
    this.status.textContent = status;
    this.status.classList.toggle('error', Boolean(s.error) && !ended);
    this.hint.hidden = !(calls.ringBlocked && s.phase === 'incoming' && !s.silenced);
    this.buttons.hidden = ended;
    const busy = s.phase === 'accepting';
    for (const b of [this.decline, this.acceptAudio, this.acceptVideo]) b.disabled = busy && b !== this.decline;
    this.acceptVideo.closest('[data-role=video-action]').hidden = !video;
    const audioLabel = video ? 'Accept with audio only' : 'Accept';
    this.acceptAudio.setAttribute('aria-label', audioLabel);
    this.acceptAudio.title = audioLabel;
    this.buttons.querySelector('[data-role=audio-label]').textContent = video ? 'Audio only' : 'Accept';
    this.el.classList.toggle('ended', ended);
    if (this.shownFor !== s) {
      this.shownFor = s;
      this.el.hidden = false;
      this.opener = document.activeElement;
      // Focus goes to the dialog itself, not a button: a key meant for the composer must not
      // answer or decline the call.
      this.el.focus({ preventScroll: true });
      this.notify(s, name);
    }
    if (s.phase !== 'incoming') this.closeNotification();
  }

  hide() {
    if (this.el.hidden) return;
    const hadFocus = this.el.contains(document.activeElement) || document.activeElement === this.el;
    this.el.hidden = true;
    this.shownFor = null;
    this.closeNotification();
    if (hadFocus && this.opener && this.opener.isConnected && this.opener !== document.body) this.opener.focus({ preventScroll: true });
  }

  // A system notification when the page is in the background (permission permitting).
  notify(s, name) {
    if (!('Notification' in window) || Notification.permission !== 'granted') return;
    if (document.visibilityState === 'visible' && document.hasFocus()) return;
    try {
      const n = new Notification(`Incoming ${mediaWord(s.media)} call`, { body: name, tag: `call-${s.id}`, requireInteraction: true });
      n.onclick = () => { window.focus(); this.el.focus(); n.close(); };
      this.notification = n;
    } catch { /* some platforms only allow service-worker notifications */ }
  }

  closeNotification() {
    this.notification?.close();
    this.notification = null;
  }
}

// --- the call screen --------------------------------------------------------------------------

class CallScreen {
  constructor() {
    const titleId = uid('call-title');
    this.remoteVideo = h('video', { class: 'call-remote', autoplay: true, playsinline: true, 'data-testid': 'remote-video' });
    this.remoteVideo.muted = true; // the sound plays through the audio element
    this.remoteAudio = h('audio', { class: 'call-remote-audio', autoplay: true, 'data-testid': 'remote-audio' });
    this.localVideo = h('video', { class: 'call-local', autoplay: true, playsinline: true, 'data-testid': 'local-video', 'aria-label': 'Your camera' });
    this.localVideo.muted = true;
    this.personaPic = h('span', { class: 'call-persona-avatar' });
    this.persona = h('div', { class: 'call-persona', 'aria-hidden': 'true' }, this.personaPic);
    this.title = h('h2', { id: titleId, class: 'call-title', tabindex: '-1', 'data-testid': 'call-title' });
    this.status = h('p', { class: 'call-status', role: 'status', 'aria-live': 'polite', 'data-testid': 'call-status' });
    this.timer = h('span', { class: 'call-timer', 'data-testid': 'call-timer', 'aria-label': 'Call duration', hidden: true });
    this.quality = h('span', { class: 'call-quality', role: 'img', 'data-testid': 'call-quality', hidden: true },
      h('span', { class: 'bar' }), h('span', { class: 'bar' }), h('span', { class: 'bar' }));
    this.sizeBtn = h('button', { type: 'button', class: 'call-icon-btn', 'data-testid': 'call-minimize', onclick: () => this.setMini(!this.mini) });
    this.mic = h('button', { type: 'button', class: 'call-round', 'aria-label': 'Mute microphone', 'data-testid': 'call-mute', onclick: () => calls.toggleMic() });
    this.camera = h('button', { type: 'button', class: 'call-round', 'aria-label': 'Turn camera off', 'data-testid': 'call-camera', onclick: () => calls.toggleCamera() });
    this.hangupBtn = h('button', { type: 'button', class: 'call-round call-danger', 'aria-label': 'Hang up', 'data-testid': 'call-hangup', onclick: () => calls.hangup() }, icon('hangup'));
    this.closeBtn = h('button', { type: 'button', class: 'btn call-close', 'data-testid': 'call-close', onclick: () => calls.dismiss() }, 'Close');
    this.soundBtn = h('button', { type: 'button', class: 'btn btn-small call-sound', 'data-testid': 'call-enable-sound', hidden: true, onclick: () => this.playAudio() }, icon('speaker'), 'Turn on sound');
    this.stage = h('div', { class: 'call-stage' }, this.remoteVideo, this.persona, this.localVideo, this.remoteAudio);
    this.el = h('div', { class: 'call-screen', role: 'dialog', 'aria-modal': 'true', 'aria-labelledby': titleId, 'data-testid': 'call-screen', hidden: true },
      this.stage,
      h('header', { class: 'call-top' },
        h('div', { class: 'call-heading' }, this.title, h('div', { class: 'call-subline' }, this.status, this.timer)),
        this.quality, this.sizeBtn),
      h('div', { class: 'call-controls' }, this.soundBtn, this.mic, this.camera, this.hangupBtn, this.closeBtn));
    this.setMini(false, { focus: false });
    this.shownFor = null;
    this.tick = null;
    document.addEventListener('keydown', (ev) => this.onKey(ev));
    calls.addEventListener('stats', () => this.renderQuality(calls.session));
  }

  visibleFor(s) {
    return Boolean(s && (s.role === 'caller' || s.accepted));
  }

  update(s) {
    if (!this.visibleFor(s)) { this.hide(); return; }
    const first = this.shownFor !== s;
    const name = store.displayName(s.partnerId);
    const video = s.media === 'video';
    const ended = s.phase === 'ended';
    if (first) {
      this.shownFor = s;
      // Answered from the incoming dialog: focus goes back where it was before the ringing.
      const active = document.activeElement;
      this.opener = this.incoming && this.incoming.el.contains(active) ? this.incoming.opener : active;
      this.personaPic.replaceChildren(avatar(partnerUser(s), 'xxl'));
      this.setMini(false, { focus: false });
      this.el.hidden = false;
      this.title.focus({ preventScroll: true });
    }
    this.el.classList.toggle('audio-only', !video);
    this.el.classList.toggle('ended', ended);
    this.el.dataset.phase = s.phase;
    this.title.textContent = name;

    // Media elements: attach streams once; the elements persist.
    if (this.remoteVideo.srcObject !== s.remote) this.remoteVideo.srcObject = s.remote || null;
    if (this.remoteAudio.srcObject !== s.remote) {
      this.remoteAudio.srcObject = s.remote || null;
      if (s.remote) this.playAudio();
    }
    const localHasVideo = Boolean(s.local && s.local.getVideoTracks().length);
    if (this.localVideo.srcObject !== (localHasVideo ? s.local : null)) this.localVideo.srcObject = localHasVideo ? s.local : null;
    const remoteVideoLive = Boolean(s.remote && s.remote.getVideoTracks().some((t) => t.readyState === 'live' && !t.muted));
    this.remoteVideo.hidden = !video || !remoteVideoLive || ended;
    this.persona.hidden = video && remoteVideoLive && !ended;
    this.localVideo.hidden = !localHasVideo || s.cameraOff || ended;
    this.el.classList.toggle('has-remote-video', !this.remoteVideo.hidden);

    // Status line.
    let status = '';
    switch (s.phase) {
      case 'preparing': status = `Calling ${name}…`; break;
      case 'outgoing': status = `Calling ${name}… ringing`; break;
      case 'connecting': status = 'Connecting…'; break;
      case 'active': status = ''; break;
      case 'reconnecting': status = 'Reconnecting…'; break;
      case 'ended': status = s.final || 'Call ended'; break;
      default: status = '';
    }
    this.status.textContent = status;
    this.status.classList.toggle('error', ended && Boolean(s.finalError));
    this.updateTimer(s);
    this.renderQuality(s);

    // Controls.
    const ringing = s.phase === 'preparing' || s.phase === 'outgoing';
    this.mic.hidden = ended;
    this.mic.disabled = !s.local;
    this.mic.replaceChildren(icon(s.micMuted ? 'micOff' : 'mic'));
    this.mic.setAttribute('aria-pressed', String(s.micMuted));
    this.mic.setAttribute('aria-label', 'Mute microphone');
    this.mic.title = s.micMuted ? 'Microphone off — click to unmute' : 'Mute microphone';
    this.camera.hidden = ended || !video;
    this.camera.disabled = !localHasVideo;
    this.camera.replaceChildren(icon(s.cameraOff || !localHasVideo ? 'videoOff' : 'video'));
    this.camera.setAttribute('aria-pressed', String(s.cameraOff));
    this.camera.setAttribute('aria-label', 'Turn camera off');
    this.camera.title = !localHasVideo ? 'No camera in this call' : s.cameraOff ? 'Camera off — click to turn it on' : 'Turn camera off';
    this.hangupBtn.hidden = ended;
    const hangLabel = ringing ? 'Cancel call' : 'Hang up';
    this.hangupBtn.setAttribute('aria-label', hangLabel);
    this.hangupBtn.title = hangLabel;
    this.closeBtn.hidden = !ended;
    this.sizeBtn.hidden = ended;
    // Over: the focused control may have gone; Close takes the focus (minimised: the focus
    // stays wherever the user is typing).
    if (ended && this.el.contains(document.activeElement)) this.closeBtn.focus({ preventScroll: true });
  }

  updateTimer(s) {
    const counting = s.acceptedAt && ['connecting', 'active', 'reconnecting'].includes(s.phase);
    this.timer.hidden = !counting;
    clearInterval(this.tick);
    this.tick = null;
    if (!counting) return;
    const paint = () => { this.timer.textContent = fmtDuration(calls.elapsed(s)); };
    paint();
    this.tick = setInterval(paint, 1000);
  }

  renderQuality(s) {
    const q = s?.quality;
    const show = Boolean(s && ['active', 'reconnecting'].includes(s.phase) && q && q.level);
    this.quality.hidden = !show;
    if (!show) return;
    const level = s.phase === 'reconnecting' ? 'poor' : q.level;
    this.quality.dataset.level = level;
    this.quality.dataset.path = q.path || '';
    const text = describeQuality({ ...q, level });
    this.quality.setAttribute('aria-label', text);
    this.quality.title = text;
  }

  playAudio() {
    const p = this.remoteAudio.play();
    if (!p) return;
    p.then(() => { this.soundBtn.hidden = true; }).catch((err) => {
      // Autoplay refused (no user gesture on this page yet): let them start the sound.
      if (err.name === 'NotAllowedError') this.soundBtn.hidden = false;
    });
  }

  setMini(mini, { focus = true } = {}) {
    this.mini = mini;
    this.el.classList.toggle('mini', mini);
    // Minimised it is a small floating panel, not a modal dialog.
    this.el.setAttribute('role', mini ? 'region' : 'dialog');
    if (mini) this.el.removeAttribute('aria-modal'); else this.el.setAttribute('aria-modal', 'true');
    this.sizeBtn.replaceChildren(icon(mini ? 'expand' : 'minimize'));
    const label = mini ? 'Expand the call' : 'Minimise the call (keeps it going)';
    this.sizeBtn.setAttribute('aria-label', label);
    this.sizeBtn.title = label;
    if (!focus) return;
    if (mini) {
      if (this.opener && this.opener.isConnected && this.opener !== document.body) this.opener.focus({ preventScroll: true });
      else document.querySelector('[data-testid=composer-input]')?.focus();
    } else {
      this.title.focus({ preventScroll: true });
    }
  }

  hide() {
    if (this.el.hidden) return;
    const hadFocus = this.el.contains(document.activeElement);
    this.el.hidden = true;
    this.shownFor = null;
    clearInterval(this.tick);
    this.tick = null;
    this.remoteVideo.srcObject = null;
    this.remoteAudio.srcObject = null;
    this.localVideo.srcObject = null;
    this.soundBtn.hidden = true;
    if (hadFocus) {
      if (this.opener && this.opener.isConnected && this.opener !== document.body) this.opener.focus({ preventScroll: true });
      else document.querySelector('[data-testid=composer-input]')?.focus();
    }
  }

  onKey(ev) {
    if (this.el.hidden || this.mini || ev.defaultPrevented) return;
    if (document.querySelector('.backdrop')) return; // a modal above the call has the keys
    const s = calls.session;
    if (ev.key === 'Escape') {
      ev.preventDefault();
      // Escape never hangs up: it minimises a live call, and closes the screen of an ended one.
      if (s && s.phase === 'ended') calls.dismiss();
      else this.setMini(true);
    } else if (ev.key === 'Tab') {
      const items = [...this.el.querySelectorAll(FOCUSABLE)].filter((el) => el.offsetParent !== null);
      if (!items.length) return;
      const first = items[0];
      const last = items[items.length - 1];
      if (!this.el.contains(document.activeElement)) { ev.preventDefault(); first.focus(); return; }
      if (ev.shiftKey && (document.activeElement === first || document.activeElement === this.title)) { ev.preventDefault(); last.focus(); }
      else if (!ev.shiftKey && document.activeElement === last) { ev.preventDefault(); first.focus(); }
    }
  }
}

export function mountCalls() {
  const incoming = new IncomingDialog();
  const screen = new CallScreen();
  screen.incoming = incoming;
  document.body.append(screen.el, incoming.el);
  const render = () => {
    const s = calls.session;
    screen.update(s);
    incoming.update(s);
  };
  calls.on(render);
  store.on('users', () => { if (calls.session) render(); });
  render();
}
