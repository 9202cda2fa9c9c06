// Which group rooms have a call in progress: the room views' `active_call` (GET /rooms, so a
// call that started before the page loaded or the room was opened shows too), kept up to date
// by `call.started`, `call.participant_joined` / `call.participant_left` and `call.ended`.
// Emits 'change' when a room's call changes and 'started' ({detail: call view}) for a call
// that just started (group.js rings for it). The room list re-renders on the store's 'rooms'.

import { store } from '../store.js';

// A room list fetched while events arrive may predate them: an event from this recently wins
// over the list (unless the socket started a new session since, which refetches the list).
const EVENT_WINS_MS = 5000;
const ENDED_KEPT = 200; // ended call ids remembered, so a stale list cannot revive them

// The room-view shape of a call: {id, room_id, media, caller_id, created_at, present_ids}.
export function callInfo(roomId, call) {
  return {
    id: call.id,
    room_id: roomId,
    media: call.media || 'video',
    caller_id: call.caller_id || null,
    created_at: call.created_at || null,
    present_ids: [...(call.present_ids || [])],
  };
}

class RoomCalls extends EventTarget {
  constructor() {
    super();
    this.byRoom = new Map(); // room id -> callInfo
    this.touched = new Map(); // room id -> when an event last changed its call
    this.over = new Set(); // ids of calls known to be over
    this.seen = new WeakSet(); // room views already read
    this.sessionAt = 0; // when the socket last started a new session
    store.socket.addEventListener('frame', (ev) => this.onFrame(ev.detail));
    store.socket.addEventListener('ready', (ev) => { if (ev.detail.resume !== 'ok') this.sessionAt = Date.now(); });
    store.on('rooms', () => this.readRooms());
  }

  // The call in progress in a group room, or null.
  get(roomId) { return this.byRoom.get(roomId) || null; }

  ended(callId) { return this.over.has(callId); }

  set(roomId, info, { fromEvent = false } = {}) {
    if (fromEvent) this.touched.set(roomId, Date.now());
    const before = this.byRoom.get(roomId) || null;
    if (info) this.byRoom.set(roomId, info); else this.byRoom.delete(roomId);
    if (JSON.stringify(before) === JSON.stringify(info || null)) return;
    this.dispatchEvent(new Event('change'));
    store.emit('rooms'); // the room list's in-call mark
  }

  // Room views carry `active_call`: read each view once, when it arrives.
  readRooms() {
    for (const room of store.rooms.values()) {
      if (this.seen.has(room)) continue;
      this.seen.add(room);
      if (room.kind !== 'group' || !('active_call' in room)) continue;
      const at = this.touched.get(room.id);
      if (at !== undefined && at > this.sessionAt && Date.now() - at < EVENT_WINS_MS) continue;
      const call = room.active_call;
      this.set(room.id, call && !this.over.has(call.id) ? callInfo(room.id, call) : null);
    }
    for (const roomId of [...this.byRoom.keys()]) if (!store.rooms.has(roomId)) this.set(roomId, null);
  }

  onFrame({ type, data }) {
    switch (type) {
      case 'call.started': {
        const call = data.call;
        if (!call || call.kind !== 'group' || this.over.has(call.id)) break;
        this.set(call.room_id, callInfo(call.room_id, call), { fromEvent: true });
        this.dispatchEvent(new CustomEvent('started', { detail: call }));
        break;
      }
      case 'call.participant_joined':
      case 'call.participant_left': {
        if (this.over.has(data.call_id)) break;
        const known = this.byRoom.get(data.room_id);
        const base = known && known.id === data.call_id ? known : callInfo(data.room_id, { id: data.call_id });
        this.set(data.room_id, { ...base, present_ids: [...(data.present_ids || [])] }, { fromEvent: true });
        if (type === 'call.participant_joined') store.fetchUser(data.user_id);
        break;
      }
      case 'call.ended':
        if (data.call?.kind !== 'group' && this.byRoom.get(data.room_id)?.id !== data.call_id) break;
        this.over.add(data.call_id);
        if (this.over.size > ENDED_KEPT) this.over.delete(this.over.values().next().value);
        if (this.byRoom.get(data.room_id)?.id === data.call_id) this.set(data.room_id, null, { fromEvent: true });
        break;
      default:
        break;
    }
  }
}

export const roomCalls = new RoomCalls();
