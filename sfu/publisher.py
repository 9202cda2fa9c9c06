"""One published track (a participant's audio or video) fanned out to its subscribers."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from sfu.forward import ForwardTrack
from sfu.frames import EncodedFrame, Kind
from sfu.metrics import BYTES, KEYFRAME_REQUESTS, PACKETS, PLIS_SENT

if TYPE_CHECKING:
    from aiortc import RTCRtpReceiver

    from sfu.speaker import ActiveSpeaker

# Keyframes are big: at most one PLI per publisher per interval, whoever asks (joins, subscriber
# PLIs, drops, upstream loss). A request inside the interval is sent when it ends, unless a
# keyframe arrives first.
PLI_INTERVAL_SECONDS = 0.5

_PACKETS_IN, _BYTES_IN = PACKETS.labels("in"), BYTES.labels("in")


class Publisher:
    """Frames arrive from the tapped receiver (`deliver`, `lost`, `remote_ended`, all on the event
    loop) and go to every subscriber's ForwardTrack."""

    def __init__(
        self,
        user_id: str,
        kind: Kind,
        *,
        speaker: ActiveSpeaker | None = None,
    ) -> None:
        self.user_id = user_id
        self.kind = kind
        self.speaker = speaker
        self.on_ended: Callable[[], None] | None = None  # the remote track ended (set by the room)
        self.media_ssrc: int | None = None  # the publisher's SSRC, set by the jitter buffer
        self.closed = False
        self._receiver: RTCRtpReceiver | None = None
        self._tracks: dict[ForwardTrack, None] = {}  # insertion-ordered set
        self._last_pli = -math.inf
        self._pending_pli: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Future[None]] = set()

    @property
    def subscribers(self) -> tuple[ForwardTrack, ...]:
        return tuple(self._tracks)

    def attach(self, receiver: RTCRtpReceiver) -> None:
        self._receiver = receiver

    def subscribe(self) -> ForwardTrack:
        """A new subscriber's track; gated until a keyframe, which is requested now."""
        track = ForwardTrack(self)
        if self.closed:
            track.end()
            return track
        self._tracks[track] = None
        self.request_keyframe("join")
        return track

    def unsubscribe(self, track: ForwardTrack) -> None:
        self._tracks.pop(track, None)
        track.end()

    def request_keyframe(self, reason: str) -> None:
        """Ask the publisher for a keyframe (coalesced). Audio has no keyframes: ignored."""
        if self.kind != "video" or self.closed:
            return
        KEYFRAME_REQUESTS.labels(reason).inc()
        if self._pending_pli is not None:
            return
        loop = asyncio.get_running_loop()
        wait = self._last_pli + PLI_INTERVAL_SECONDS - loop.time()
        if wait > 0:
            self._pending_pli = loop.call_later(wait, self._send_pli)
        else:
            self._send_pli()

    def close(self) -> None:
        """End every subscriber's track (their senders stop unless their slot was replaced)."""
        if self.closed:
            return
        self.closed = True
        self._cancel_pending_pli()
        for track in tuple(self._tracks):
            track.end()
        if self.speaker is not None and self.kind == "audio":
            self.speaker.forget(self.user_id)

    # -- from the tapped receiver

    def deliver(self, frame: EncodedFrame) -> None:
        _PACKETS_IN.inc()
        _BYTES_IN.inc(frame.size)
        if self.kind == "video" and frame.keyframe:
            self._cancel_pending_pli()  # whatever asked is answered by this one
        elif self.speaker is not None and self.kind == "audio":
            self.speaker.observe(self.user_id, frame.level, frame.size)
        for track in tuple(self._tracks):
            track.push(frame)

    def lost(self) -> None:
        """Frames were skipped upstream: what follows cannot be decoded until a keyframe."""
        for track in self._tracks:
            track.gate()
        self.request_keyframe("loss")

    def remote_ended(self) -> None:
        """aiortc stopped the receiver (the publisher left, BYE, or its connection closed):
        `on_ended` runs unless the publisher was closed first (by the room)."""
        if self.closed:
            return
        self.close()
        if self.on_ended is not None:
            self.on_ended()

    def _send_pli(self) -> None:
        self._pending_pli = None
        if self.closed or self._receiver is None or self.media_ssrc is None:
            return  # nothing received yet: its first frame is a keyframe anyway
        self._last_pli = asyncio.get_running_loop().time()
        PLIS_SENT.inc()
        sent = asyncio.ensure_future(self._receiver._send_rtcp_pli(self.media_ssrc))
        self._sending.add(sent)
        sent.add_done_callback(self._sending.discard)

    def _cancel_pending_pli(self) -> None:
        if self._pending_pli is not None:
            self._pending_pli.cancel()
            self._pending_pli = None
