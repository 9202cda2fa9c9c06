// Pieces shared by the 1:1 call screen (view.js) and the group call screen (grid.js): the
// microphone and camera buttons, the connection-quality bars, minimising and hiding a screen, the
// "Turn on sound" fallback, the duration ticker and the focus trap of a full-size screen.
import { h, icon } from '../dom.js';
import { describeQuality } from './stats.js';
import { fmtDuration } from './wording.js';

const FOCUSABLE = 'button:not([disabled]):not([hidden]), [tabindex]:not([tabindex="-1"])';
let idSeq = 0;
export const uid = (prefix) => `${prefix}-${(idSeq += 1)}`;

export function paintMic(btn, { muted, available }) {
  btn.disabled = !available;
  btn.replaceChildren(icon(muted ? 'micOff' : 'mic'));
  btn.setAttribute('aria-pressed', String(muted));
  btn.setAttribute('aria-label', 'Mute microphone');
  btn.title = muted ? 'Microphone off — click to unmute' : 'Mute microphone';
}

// `canAdd`: no camera yet, but a click turns one on (group calls). Like the microphone's, a
// toggle named for turning it off, pressed while it is off; with no camera to turn on, no toggle.
export function paintCamera(btn, { off, has, canAdd = false, busy = false }) {
  btn.disabled = busy || (!has && !canAdd);
  const on = has && !off;
  btn.replaceChildren(icon(on ? 'video' : 'videoOff'));
  if (has || canAdd) {
    btn.setAttribute('aria-pressed', String(!on));
    btn.setAttribute('aria-label', 'Turn camera off');
  } else {
    btn.removeAttribute('aria-pressed');
    btn.setAttribute('aria-label', 'No camera in this call');
  }
  if (busy) btn.title = 'Starting the camera…';
  else if (!has) btn.title = canAdd ? 'Camera off — click to turn it on' : 'No camera in this call';
  else btn.title = off ? 'Camera off — click to turn it on' : 'Turn camera off';
}

export function qualityMeter(testid) {
  const el = h('span', { class: 'call-quality', role: 'img', 'data-testid': testid, hidden: true },
    h('span', { class: 'bar' }), h('span', { class: 'bar' }), h('span', { class: 'bar' }));
  // q: a stats.js sample (or null); reconnecting shows as poor whatever the last sample said.
  const render = (q, { show, reconnecting = false }) => {
    el.hidden = !(show && q && q.level);
    if (el.hidden) return;
    const level = reconnecting ? 'poor' : q.level;
    el.dataset.level = level;
    el.dataset.path = q.path || '';
    const text = describeQuality({ ...q, level });
    el.setAttribute('aria-label', text);
    el.title = text;
  };
  return { el, render };
}

// Full size (a modal dialog) or minimised to a corner panel (a region; the page stays usable).
// `screen`: a call screen (view.js, grid.js) with its el, sizeBtn, title and opener. With
// `focus`, minimising gives the focus back to where it was and expanding brings it to the title.
export function setScreenMini(screen, mini, { focus = true } = {}) {
  const { el, sizeBtn } = screen;
  screen.mini = mini;
  el.classList.toggle('mini', mini);
  el.setAttribute('role', mini ? 'region' : 'dialog');
  if (mini) el.removeAttribute('aria-modal'); else el.setAttribute('aria-modal', 'true');
  sizeBtn.replaceChildren(icon(mini ? 'expand' : 'minimize'));
  const label = mini ? 'Expand the call' : 'Minimise the call (keeps it going)';
  sizeBtn.setAttribute('aria-label', label);
  sizeBtn.title = label;
  if (!focus) return;
  if (mini) restoreFocus(screen.opener);
  else screen.title.focus({ preventScroll: true });
}

// Hide a call screen (as above): its ticker stops, its sound button goes, and the focus goes
// back where it was if it was inside. False when it was hidden already.
export function hideScreen(screen) {
  const { el } = screen;
  if (el.hidden) return false;
  const hadFocus = el.contains(document.activeElement);
  el.hidden = true;
  screen.shownFor = null;
  screen.ticker.stop();
  screen.soundBtn.hidden = true;
  if (hadFocus) restoreFocus(screen.opener);
  return true;
}

// Tab and Shift+Tab stay inside a full-size call screen.
export function trapTab(screen, title, ev) {
  const items = [...screen.querySelectorAll(FOCUSABLE)].filter((el) => el.offsetParent !== null);
  if (!items.length) return;
  const first = items[0];
  const last = items[items.length - 1];
  if (!screen.contains(document.activeElement)) { ev.preventDefault(); first.focus(); return; }
  if (ev.shiftKey && (document.activeElement === first || document.activeElement === title)) { ev.preventDefault(); last.focus(); } else if (!ev.shiftKey && document.activeElement === last) { ev.preventDefault(); first.focus(); }
}

// Play an audio element; when the browser refuses (no gesture on this page yet), show the
// button that lets the user start the sound.
export function playAudio(audio, soundBtn) {
  const p = audio.play();
  if (!p) return;
  p.then(() => { soundBtn.hidden = true; }).catch((err) => {
    if (err.name === 'NotAllowedError') soundBtn.hidden = false;
  });
}

export function soundButton(testid, onclick) {
  return h('button', { type: 'button', class: 'btn btn-small call-sound', 'data-testid': testid, hidden: true, onclick }, icon('speaker'), 'Turn on sound');
}

// The duration shown while a call runs: start(() => seconds) repaints it every second.
export class Ticker {
  constructor(el) {
    this.el = el;
    this.timer = null;
  }

  start(seconds) {
    this.stop();
    this.el.hidden = false;
    const paint = () => { this.el.textContent = fmtDuration(seconds()); };
    paint();
    this.timer = setInterval(paint, 1000);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    this.el.hidden = true;
  }
}

// Where the focus goes back to when a call screen closes or is minimised.
function restoreFocus(opener) {
  if (opener && opener.isConnected && opener !== document.body) opener.focus({ preventScroll: true });
  else document.querySelector('[data-testid=composer-input]')?.focus();
}
