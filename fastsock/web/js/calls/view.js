// The call UI: the incoming-call dialog (over whatever conversation is open) and the call
// screen (calling…, connecting, in call, the final words), full size or minimised to a corner
// so the conversation stays usable; mountCalls() also mounts the group call screen (grid.js).
// Elements are built once and updated in place, so video elements keep playing across updates.
import { h, icon } from '../dom.js';
import { store } from '../store.js';
import { avatar } from '../views/avatar.js';
import { calls } from './manager.js';
import {
  hideScreen, paintCamera, paintMic, playAudio, qualityMeter, setScreenMini, soundButton, Ticker, trapTab, uid,
} from './controls.js';
import { GroupCallScreen } from './grid.js';
import { groupCalls } from './group.js';
import { mediaWord } from './wording.js';

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
    // The other side's camera is off (call.media_state): their avatar and these words instead
    // of black video.
    this.cameraOffNote = h('p', { class: 'call-persona-note', 'data-testid': 'remote-camera-off', hidden: true });
    this.persona = h('div', { class: 'call-persona' }, this.personaPic, this.cameraOffNote);
    this.title = h('h2', { id: titleId, class: 'call-title', tabindex: '-1', 'data-testid': 'call-title' });
    this.status = h('p', { class: 'call-status', role: 'status', 'aria-live': 'polite', 'data-testid': 'call-status' });
    this.timer = h('span', { class: 'call-timer', 'data-testid': 'call-timer', 'aria-label': 'Call duration', hidden: true });
    this.ticker = new Ticker(this.timer);
    // The other side's microphone is off (call.media_state).
    this.remoteMuted = h('span', { class: 'call-remote-muted', 'data-testid': 'remote-muted', hidden: true }, icon('micOff'), h('span', { 'data-role': 'text' }));
    this.meter = qualityMeter('call-quality');
    this.sizeBtn = h('button', { type: 'button', class: 'call-icon-btn', 'data-testid': 'call-minimize', onclick: () => this.setMini(!this.mini) });
    this.mic = h('button', { type: 'button', class: 'call-round', 'aria-label': 'Mute microphone', 'data-testid': 'call-mute', onclick: () => calls.toggleMic() });
    this.camera = h('button', { type: 'button', class: 'call-round', 'aria-label': 'Turn camera off', 'data-testid': 'call-camera', onclick: () => calls.toggleCamera() });
    this.hangupBtn = h('button', { type: 'button', class: 'call-round call-danger', 'aria-label': 'Hang up', 'data-testid': 'call-hangup', onclick: () => calls.hangup() }, icon('hangup'));
    this.closeBtn = h('button', { type: 'button', class: 'btn call-close', 'data-testid': 'call-close', onclick: () => calls.dismiss() }, 'Close');
    this.soundBtn = soundButton('call-enable-sound', () => this.playAudio());
    this.stage = h('div', { class: 'call-stage' }, this.remoteVideo, this.persona, this.localVideo, this.remoteAudio);
    this.el = h('div', { class: 'call-screen', role: 'dialog', 'aria-modal': 'true', 'aria-labelledby': titleId, 'data-testid': 'call-screen', hidden: true },
      this.stage,
      h('header', { class: 'call-top' },
        h('div', { class: 'call-heading' }, this.title, h('div', { class: 'call-subline' }, this.status, this.timer, this.remoteMuted)),
        this.meter.el, this.sizeBtn),
      h('div', { class: 'call-controls' }, this.soundBtn, this.mic, this.camera, this.hangupBtn, this.closeBtn));
    this.setMini(false, { focus: false });
    this.shownFor = null;
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
    // Their camera turned off: the frames may still come (black), but show their avatar.
    const remoteCameraOff = video && s.remoteMedia?.video === false && !ended;
    this.remoteVideo.hidden = !video || !remoteVideoLive || remoteCameraOff || ended;
    this.persona.hidden = !this.remoteVideo.hidden;
    this.cameraOffNote.hidden = !remoteCameraOff;
    this.cameraOffNote.textContent = `${name}'s camera is off`;
    const remoteMuted = s.remoteMedia?.audio === false && !ended;
    this.remoteMuted.hidden = !remoteMuted;
    this.remoteMuted.querySelector('[data-role=text]').textContent = 'Muted';
    this.remoteMuted.title = `${name} muted their microphone`;
    this.remoteMuted.setAttribute('aria-label', `${name} muted their microphone`);
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
    paintMic(this.mic, { muted: s.micMuted, available: Boolean(s.local) });
    this.camera.hidden = ended || !video;
    paintCamera(this.camera, { off: s.cameraOff, has: localHasVideo });
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
    if (counting) this.ticker.start(() => calls.elapsed(s)); else this.ticker.stop();
  }

  renderQuality(s) {
    const show = Boolean(s && ['active', 'reconnecting'].includes(s.phase));
    this.meter.render(s?.quality, { show, reconnecting: s?.phase === 'reconnecting' });
  }

  // Autoplay refused (no user gesture on this page yet): the button lets them start the sound.
  playAudio() { playAudio(this.remoteAudio, this.soundBtn); }

  setMini(mini, opts) { setScreenMini(this, mini, opts); }

  hide() {
    if (!hideScreen(this)) return;
    this.remoteVideo.srcObject = null;
    this.remoteAudio.srcObject = null;
    this.localVideo.srcObject = null;
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
      trapTab(this.el, this.title, ev);
    }
  }
}

export function mountCalls() {
  const incoming = new IncomingDialog();
  const screen = new CallScreen();
  const group = new GroupCallScreen();
  screen.incoming = incoming;
  document.body.append(screen.el, group.el, incoming.el);
  const render = () => {
    const s = calls.session;
    screen.update(s);
    incoming.update(s);
  };
  const renderGroup = () => group.update(groupCalls.session);
  calls.on(render);
  groupCalls.on(renderGroup);
  store.on('users', () => {
    if (calls.session) render();
    if (groupCalls.session) renderGroup();
  });
  render();
  renderGroup();
}
