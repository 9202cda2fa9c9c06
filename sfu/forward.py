"""What a subscriber's RTCRtpSender reads: one publisher's encoded frames as `av.Packet`s, which
makes the sender pack them (`Encoder.pack`) instead of encoding. The sender still rewrites SSRC,
sequence numbers, timestamps and VP8 picture ids, and answers NACKs, per subscriber."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiortc import MediaStreamTrack, RTCRtpSender
from aiortc.mediastreams import MediaStreamError

from sfu.frames import EncodedFrame, Packet
from sfu.metrics import BYTES, FORWARD_SECONDS, PACKETS, QUEUE_DROPS

if TYPE_CHECKING:
    from sfu.publisher import Publisher

# Frames a subscriber may fall behind before its queue is dropped (about 1 s, which also covers
# its DTLS handshake): memory per subscriber never grows past this.
QUEUE_LIMITS = {"video": 30, "audio": 50}

_PACKETS_OUT, _BYTES_OUT = PACKETS.labels("out"), BYTES.labels("out")


class ForwardTrack(MediaStreamTrack):
    """One subscriber's copy of one publisher's track, behind a bounded queue.

    Video is gated: a new track, and one that fell behind or followed an upstream loss, forwards
    nothing until the next keyframe (a delta frame without its reference only yields decode
    errors)."""

    def __init__(self, publisher: Publisher) -> None:
        super().__init__()
        self.kind = publisher.kind
        self.publisher = publisher
        # Called once, when the first packet is handed to the sender (the worker's join time).
        self.on_first_packet: Callable[[], None] | None = None
        self._queue: deque[EncodedFrame] = deque()
        self._limit = QUEUE_LIMITS[publisher.kind]
        self._gated = publisher.kind == "video"
        self._waiter: asyncio.Future[None] | None = None
        self._ended = False

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def queued(self) -> int:
        """Frames waiting for the sender (at most QUEUE_LIMITS[kind])."""
        return len(self._queue)

    def bind_sender(self, sender: RTCRtpSender) -> None:
        """Route this subscriber's PLI/FIR to the publisher. aiortc's sender only flags its own
        encoder on a keyframe request, which the packet path never uses; the call site is
        `self._send_keyframe()`, so an instance attribute takes over."""
        sender._send_keyframe = self._keyframe_wanted  # type: ignore[method-assign]

    def push(self, frame: EncodedFrame) -> None:
        """A frame from the publisher (on the event loop)."""
        if self._ended:
            return
        if frame.keyframe:
            self._gated = False
        elif self._gated:
            return
        if len(self._queue) >= self._limit:
            QUEUE_DROPS.inc(len(self._queue))
            self._queue.clear()
            if not frame.keyframe:
                QUEUE_DROPS.inc()
                self.gate()
                self.publisher.request_keyframe("drop")
                return
        self._queue.append(frame)
        self._wake()

    def gate(self) -> None:
        """Forward nothing more until a keyframe (video; audio needs none)."""
        if self.kind == "video":
            self._gated = True

    async def recv(self) -> Packet:
        while not self._queue:
            if self._ended:
                raise MediaStreamError
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        frame = self._queue.popleft()
        FORWARD_SECONDS.observe(time.monotonic() - frame.arrived)
        _PACKETS_OUT.inc()
        _BYTES_OUT.inc(frame.size)
        if self.on_first_packet is not None:
            callback, self.on_first_packet = self.on_first_packet, None
            callback()
        return frame.packet

    def end(self) -> None:
        """Stop forwarding: the publisher drops this track, and recv() raises MediaStreamError
        (which ends an aiortc sender reading it directly: a sender that must outlive the track
        reads it through a track of its own)."""
        if self._ended:
            return
        self._ended = True
        self._queue.clear()
        self._wake()
        self.publisher.unsubscribe(self)
        super().stop()

    def stop(self) -> None:  # aiortc stops the track when the sender or its peer connection ends
        self.end()

    def _keyframe_wanted(self) -> None:
        if not self._ended:
            self.publisher.request_keyframe("pli")

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
