// The group call screen: a grid of tiles, one per participant (me first, then the others in
// the order they joined), each with their video, or their avatar while their camera is off,
// their name, a microphone-off mark, and a ring around whoever speaks (the worker's
// `speaker`). The grid's columns follow the number of tiles and the screen's shape (1 to 16
// tiles; a phone held upright gets at most two columns and scrolls). Full size it is a modal
// dialog; minimised, a corner panel showing only the speaker. Elements are built once and
// updated in place, so videos keep playing across updates.
import { h, icon } from '../dom.js';
import { store } from '../store.js';
import { avatar } from '../views/avatar.js';
import { groupCalls } from './group.js';
import {
  hideScreen, paintCamera, paintMic, playAudio, qualityMeter, setScreenMini, soundButton, Ticker, trapTab, uid,
} from './controls.js';
import { people } from './wording.js';

const MIN_ROW_PX = 110; // rows any shorter than this and the grid scrolls instead
const GAP_PX = 8;

// Columns for n tiles: landscape 1, 2, 2x2, 3x2, 3x3, 4x3, 4x4; upright at most two.
export function columnsFor(n, portrait) {
  if (portrait) return n <= 2 ? 1 : 2;
  if (n <= 1) return 1;
  if (n <= 4) return 2;
  if (n <= 9) return 3;
  return 4;
}

function userOf(id) {
  return store.user(id) || { id, display_name: store.displayName(id) };
}

class Tile {
  constructor(userId, me) {
    this.userId = userId;
    this.me = me;
    this.video = h('video', { class: 'call-tile-video', autoplay: true, playsinline: true, 'data-testid': 'call-tile-video' });
    this.video.muted = true; // the sound plays through the audio element
    this.audio = me ? null : h('audio', { class: 'call-tile-audio', autoplay: true, 'data-testid': 'call-tile-audio' });
    this.pic = h('span', { class: 'call-tile-avatar' });
    this.name = h('span', { class: 'call-tile-name', 'data-testid': 'call-tile-name' });
    this.micOff = h('span', { class: 'call-tile-muted', 'data-testid': 'call-tile-muted', hidden: true }, icon('micOff'));
    this.el = h('div', {
      class: `call-tile${me ? ' me' : ''}`, role: 'group', 'data-testid': 'call-tile', dataset: { userId },
    }, this.video, this.pic, this.audio, h('div', { class: 'call-tile-label' }, this.micOff, this.name));
    this.avatarKey = null;
  }

  // -> true when the audio element got a new stream (to be played).
  update({ stream, videoOn, audioMuted, speaking, featured }) {
    const user = userOf(this.userId);
    const name = store.displayName(this.userId);
    this.name.textContent = this.me ? `${name} (you)` : name;
    const key = `${name}|${user.avatar_url || ''}|${user.username || ''}`;
    if (key !== this.avatarKey) {
      this.avatarKey = key;
      this.pic.replaceChildren(avatar(user, 'xl'));
    }
    if (this.video.srcObject !== stream) this.video.srcObject = stream || null;
    this.video.hidden = !videoOn;
    this.pic.hidden = videoOn;
    this.micOff.hidden = !audioMuted;
    this.el.classList.toggle('speaking', speaking);
    this.el.classList.toggle('call-tile-speaking', speaking);
    this.el.classList.toggle('featured', featured);
    this.el.dataset.speaking = String(speaking);
    this.el.dataset.video = videoOn ? 'on' : 'off';
    this.el.dataset.muted = String(audioMuted);
    const bits = [this.me ? `${name} (you)` : name];
    if (audioMuted) bits.push('microphone off');
    if (!videoOn) bits.push('camera off');
    if (speaking) bits.push('speaking');
    this.el.setAttribute('aria-label', bits.join(', '));
    if (!this.audio || this.audio.srcObject === (stream || null)) return false;
    this.audio.srcObject = stream || null;
    return Boolean(stream);
  }

  clear() {
    this.video.srcObject = null;
    if (this.audio) this.audio.srcObject = null;
  }
}

export class GroupCallScreen {
  constructor() {
    const titleId = uid('group-call-title');
    this.title = h('h2', { id: titleId, class: 'call-title', tabindex: '-1', 'data-testid': 'group-call-title' });
    this.status = h('p', { class: 'call-status', role: 'status', 'aria-live': 'polite', 'data-testid': 'group-call-status' });
    // "Bob joined" / "Bob left", for screen readers (the tiles show it).
    this.presence = h('p', { class: 'call-announce', role: 'status', 'aria-live': 'polite', 'data-testid': 'group-call-presence' });
    this.count = h('span', { class: 'call-count', 'data-testid': 'group-call-count' });
    this.timer = h('span', { class: 'call-timer', 'data-testid': 'group-call-timer', 'aria-label': 'Time in the call', hidden: true });
    this.ticker = new Ticker(this.timer);
    this.meter = qualityMeter('group-call-quality');
    this.sizeBtn = h('button', { type: 'button', class: 'call-icon-btn', 'aria-label': 'Minimise the call', 'data-testid': 'group-call-minimize', onclick: () => this.setMini(!this.mini) });
    this.grid = h('div', { class: 'call-grid', 'data-testid': 'group-call-grid' });
    this.mic = h('button', { type: 'button', class: 'call-round', 'aria-label': 'Mute the microphone', 'data-testid': 'group-call-mute', onclick: () => groupCalls.toggleMic() });
    this.camera = h('button', { type: 'button', class: 'call-round', 'aria-label': 'Turn the camera off', 'data-testid': 'group-call-camera', onclick: () => groupCalls.toggleCamera() });
    this.leaveBtn = h('button', { type: 'button', class: 'call-round call-danger', 'aria-label': 'Leave the call', title: 'Leave the call', 'data-testid': 'group-call-leave', onclick: () => groupCalls.leave() }, icon('hangup'));
    this.closeBtn = h('button', { type: 'button', class: 'btn call-close', 'data-testid': 'group-call-close', onclick: () => groupCalls.dismiss() }, 'Close');
    this.soundBtn = soundButton('group-call-enable-sound', () => this.playAll());
    this.el = h('div', { class: 'call-screen group-call', role: 'dialog', 'aria-modal': 'true', 'aria-labelledby': titleId, 'data-testid': 'group-call-screen', hidden: true },
      h('header', { class: 'call-top' },
        h('div', { class: 'call-heading' }, this.title, h('div', { class: 'call-subline' }, this.status, this.count, this.timer)),
        this.meter.el, this.sizeBtn),
      this.grid,
      h('div', { class: 'call-controls' }, this.soundBtn, this.mic, this.camera, this.leaveBtn, this.closeBtn),
      this.presence);
    this.tiles = new Map(); // user id -> Tile
    this.shownFor = null;
    this.setMini(false, { focus: false });
    new ResizeObserver(() => this.layout()).observe(this.grid);
    document.addEventListener('keydown', (ev) => this.onKey(ev));
    groupCalls.addEventListener('stats', () => this.renderQuality(groupCalls.session));
    groupCalls.addEventListener('show', () => { if (!this.el.hidden) this.setMini(false); });
    groupCalls.addEventListener('presence', ({ detail: { userId, joined } }) => {
      this.presence.textContent = `${store.displayName(userId)} ${joined ? 'joined' : 'left'}`;
    });
  }

  update(s) {
    if (!s) { this.hide(); return; }
    if (this.shownFor !== s) {
      this.shownFor = s;
      this.presence.textContent = '';
      this.opener = document.activeElement;
      this.setMini(false, { focus: false });
      this.el.hidden = false;
      this.title.focus({ preventScroll: true });
    }
    const ended = s.phase === 'ended';
    this.el.dataset.state = s.phase;
    this.el.classList.toggle('ended', ended);
    this.title.textContent = store.roomName(store.rooms.get(s.roomId)) || 'Group call';
    this.renderTiles(s);
    const others = s.peers.size;
    let status = '';
    switch (s.phase) {
      case 'joining': status = 'Joining…'; break;
      case 'connecting': status = 'Connecting…'; break;
      case 'moving': status = 'Reconnecting to the call…'; break;
      case 'active': status = s.mediaTrouble ? 'Reconnecting…' : (others ? '' : 'Waiting for others to join…'); break;
      case 'ended': status = s.final || 'You left the call'; break;
      default: status = '';
    }
    // A live region: rewritten only when it changes (renders follow the speaker, 4 times a second).
    if (this.status.textContent !== status) this.status.textContent = status;
    this.status.classList.toggle('error', ended && s.finalError);
    this.count.textContent = ended || s.phase === 'joining' ? '' : people(this.tiles.size);
    if (s.joinedAt && !ended) this.ticker.start(() => groupCalls.elapsed(s)); else this.ticker.stop();
    this.renderQuality(s);

    const hasVideo = groupCalls.hasVideo(s);
    this.mic.hidden = ended;
    paintMic(this.mic, { muted: s.micMuted, available: Boolean(s.local) });
    this.camera.hidden = ended;
    paintCamera(this.camera, { off: s.cameraOff, has: hasVideo, canAdd: Boolean(s.local), busy: s.cameraBusy });
    this.leaveBtn.hidden = ended;
    this.closeBtn.hidden = !ended;
    this.sizeBtn.hidden = ended;
    if (ended) this.soundBtn.hidden = true;
    if (ended && this.el.contains(document.activeElement)) this.closeBtn.focus({ preventScroll: true });
  }

  renderTiles(s) {
    const me = store.me.id;
    const ids = s.phase === 'ended' ? [] : [me, ...s.peers.keys()];
    for (const [id, tile] of this.tiles) {
      if (ids.includes(id)) continue;
      tile.clear();
      tile.el.remove();
      this.tiles.delete(id);
    }
    const remote = s.conn?.remote;
    // Minimised, one tile shows: whoever else speaks, else the first of the others.
    const featured = s.speaker && s.speaker !== me && ids.includes(s.speaker) ? s.speaker : (ids[1] || me);
    let toPlay = false;
    ids.forEach((id, i) => {
      let tile = this.tiles.get(id);
      if (!tile) {
        tile = new Tile(id, id === me);
        this.tiles.set(id, tile);
      }
      if (this.grid.children[i] !== tile.el) this.grid.insertBefore(tile.el, this.grid.children[i] || null);
      let stream;
      let videoOn;
      let audioMuted;
      if (id === me) {
        stream = s.local;
        videoOn = groupCalls.hasVideo(s) && !s.cameraOff;
        audioMuted = s.micMuted;
      } else {
        const peer = s.peers.get(id);
        stream = remote?.get(id) || null;
        const live = Boolean(stream && stream.getVideoTracks().some((t) => t.readyState === 'live' && !t.muted));
        videoOn = live && !peer.video_muted;
        audioMuted = peer.audio_muted;
      }
      if (tile.update({ stream, videoOn, audioMuted, speaking: s.speaker === id, featured: id === featured })) toPlay = true;
    });
    this.el.dataset.tiles = String(ids.length);
    this.el.dataset.speaker = s.speaker || '';
    this.layout();
    if (toPlay) this.playAll();
  }

  // Columns and rows for the tiles in the space the grid has.
  layout() {
    const n = this.mini ? 1 : Math.max(1, this.tiles.size);
    const width = this.grid.clientWidth;
    const height = this.grid.clientHeight;
    if (!width || !height) return;
    const cols = columnsFor(n, height > width);
    const rows = Math.ceil(n / cols);
    // Minimised, the one tile fills the corner panel, however small.
    const scroll = !this.mini && (height - GAP_PX * (rows - 1)) / rows < MIN_ROW_PX;
    this.grid.style.setProperty('--cols', String(cols));
    this.grid.style.setProperty('--rows', String(rows));
    this.grid.classList.toggle('scroll', scroll);
    this.grid.dataset.cols = String(cols);
  }

  renderQuality(s) {
    const show = Boolean(s && s.phase === 'active');
    this.meter.render(s?.quality, { show, reconnecting: Boolean(s?.mediaTrouble) });
  }

  // Autoplay refused (no user gesture on this page yet): the button starts the sound.
  playAll() {
    for (const tile of this.tiles.values()) if (tile.audio?.srcObject) playAudio(tile.audio, this.soundBtn);
  }

  setMini(mini, opts) {
    setScreenMini(this, mini, opts);
    this.layout();
  }

  hide() {
    if (!hideScreen(this)) return;
    for (const tile of this.tiles.values()) tile.clear();
    this.tiles.clear();
    this.grid.replaceChildren();
  }

  onKey(ev) {
    if (this.el.hidden || this.mini || ev.defaultPrevented) return;
    if (document.querySelector('.backdrop')) return; // a modal above the call has the keys
    if (ev.key === 'Escape') {
      ev.preventDefault();
      // Escape never leaves the call: it minimises it (and closes the screen once it is over).
      if (groupCalls.session?.phase === 'ended') groupCalls.dismiss();
      else this.setMini(true);
    } else if (ev.key === 'Tab') {
      trapTab(this.el, this.title, ev);
    }
  }
}
