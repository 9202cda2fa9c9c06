// The voice and video call buttons of a direct conversation's header. They stay focusable
// when calls are not possible (aria-disabled), with the reason in the label and tooltip.
import { h, icon } from '../dom.js';
import { store } from '../store.js';
import { calls } from './manager.js';

export function callButtons(getRoomId) {
  const make = (media) => h('button', {
    type: 'button',
    class: 'icon-btn call-start',
    'data-testid': media === 'video' ? 'call-video-button' : 'call-audio-button',
    onclick: () => {
      if (calls.blockedReason()) { update(); return; }
      calls.start(getRoomId(), media);
    },
  }, icon(media === 'video' ? 'video' : 'phone'));
  const audio = make('audio');
  const video = make('video');

  function update() {
    const room = store.rooms.get(getRoomId());
    const show = Boolean(room && room.kind === 'direct' && store.dmPartner(room));
    audio.hidden = !show;
    video.hidden = !show;
    if (!show) return;
    const name = store.roomName(room);
    const reason = calls.blockedReason();
    for (const [btn, label] of [[audio, `Voice call ${name}`], [video, `Video call ${name}`]]) {
      btn.setAttribute('aria-disabled', String(Boolean(reason)));
      btn.setAttribute('aria-label', reason ? `${label} — not available: ${reason}` : label);
      btn.title = reason ? `${reason}` : label;
    }
  }

  calls.on(update);
  return { elements: [audio, video], update };
}
