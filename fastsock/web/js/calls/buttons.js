// The call buttons of a conversation's header: voice and video call in a direct conversation;
// in a group, start a voice or video group call, and the "Call in progress · Join" bar (which
// takes their place while a call goes on). They stay focusable when calls are not possible
// (aria-disabled), with the reason in the label and tooltip.
import { h, icon } from '../dom.js';
import { store } from '../store.js';
import { calls } from './manager.js';
import { groupCalls } from './group.js';
import { joinBar } from './join_bar.js';

export function callButtons(getRoomId) {
  const make = (media, testid, onclick) => h('button', {
    type: 'button', class: 'icon-btn call-start', 'data-testid': testid, onclick,
  }, icon(media === 'video' ? 'video' : 'phone'));
  const direct = (media) => make(media, media === 'video' ? 'call-video-button' : 'call-audio-button', () => {
    if (calls.blockedReason()) { update(); return; }
    calls.start(getRoomId(), media);
  });
  const group = (media) => make(media, media === 'video' ? 'group-call-start' : 'group-call-start-audio', () => {
    if (groupCalls.blockedReason(getRoomId())) { update(); return; }
    groupCalls.join(getRoomId(), media);
  });
  const audio = direct('audio');
  const video = direct('video');
  const groupAudio = group('audio');
  const groupVideo = group('video');
  const bar = joinBar(getRoomId);

  function paint(btn, label, reason) {
    btn.setAttribute('aria-disabled', String(Boolean(reason)));
    btn.setAttribute('aria-label', reason ? `${label} — not available: ${reason}` : label);
    btn.title = reason ? `${reason}` : label;
  }

  function update() {
    const roomId = getRoomId();
    const room = store.rooms.get(roomId);
    const showDirect = Boolean(room && room.kind === 'direct' && store.dmPartner(room));
    const showGroup = Boolean(room && room.kind === 'group' && !groupCalls.callIn(roomId) && !groupCalls.inRoom(roomId));
    audio.hidden = !showDirect;
    video.hidden = !showDirect;
    groupAudio.hidden = !showGroup;
    groupVideo.hidden = !showGroup;
    bar.update();
    if (!room) return;
    const name = store.roomName(room);
    if (showDirect) {
      const reason = calls.blockedReason();
      paint(audio, `Voice call ${name}`, reason);
      paint(video, `Video call ${name}`, reason);
    }
    if (showGroup) {
      const reason = groupCalls.blockedReason(roomId);
      paint(groupAudio, `Start a voice call in ${name}`, reason);
      paint(groupVideo, `Start a video call in ${name}`, reason);
    }
  }

  calls.on(update);
  groupCalls.on(update);
  return { elements: [audio, video, groupAudio, groupVideo, bar.el], update };
}
