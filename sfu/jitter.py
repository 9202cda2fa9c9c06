"""Replacements for RTCRtpReceiver's jitter buffer on a publisher's receiver.

aiortc's buffer releases a video frame only when the next frame's first packet arrives (+1 frame
of latency), holds audio for 4 packets (~80 ms), and stalls on a hole until 512 packets pile up.
These release a video frame as soon as its marker-bit packet completes it, pass audio straight
through, and give up a video hole after HOLE_SECONDS (skip to the next frame start, ask for a
keyframe). The receiver takes at most one frame per packet from `add()`, so frames are delivered
to the sink directly and `add()` always returns `(False, None)`: nothing reaches aiortc's decoder
queue, and PLIs go through the publisher's coalescing instead of the receiver's own."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sfu.frames import FrameSink, Kind, TimestampUnwrap, encoded_frame

HOLE_SECONDS = 0.25
VIDEO_CAPACITY = 512  # packets held at most while waiting for a hole to fill

Clock = Callable[[], float]


def _newer(seq: int, than: int) -> bool:
    """RTP sequence number order (16-bit wrap): seq comes at or after `than`."""
    return ((seq - than) & 0xFFFF) < 0x8000


def _vp8_frame_start(payload: bytes) -> bool:
    """VP8 payload descriptor (RFC 7741 section 4.2): S=1 and partition 0 start a frame."""
    return bool(payload) and payload[0] & 0x17 == 0x10


class MarkerJitterBuffer:
    """Video: a frame is released when the contiguous packets from the previous frame's end reach
    a packet with the marker bit."""

    capacity = VIDEO_CAPACITY  # attribute of aiortc's JitterBuffer, kept for its shape

    def __init__(self, sink: FrameSink, clock: Clock = time.monotonic) -> None:
        self._sink = sink
        self._clock = clock
        self._packets: dict[int, Any] = {}  # seq -> aiortc RtpPacket (with `_data` depayloaded)
        self._start: int | None = None  # seq of the next frame's first packet
        self._waiting_since: float | None = None
        self._unwrap = TimestampUnwrap()

    def add(self, packet: Any) -> tuple[bool, None]:
        if packet.ssrc != self._sink.media_ssrc:  # a new stream: its sequence starts anywhere
            self._sink.media_ssrc = packet.ssrc  # (after RTX unwrap) the SSRC a PLI must name
            self._packets.clear()
            self._start = self._waiting_since = None
        seq = packet.sequence_number
        if self._start is None:
            if not _vp8_frame_start(packet.payload):
                return False, None
            self._start = seq
        if not _newer(seq, self._start):
            return False, None  # late retransmission or duplicate of a released frame
        self._packets[seq] = packet
        while self._release():
            pass
        now = self._clock()
        if not self._packets:
            self._waiting_since = None
        elif self._waiting_since is None:
            self._waiting_since = now
        elif now - self._waiting_since > HOLE_SECONDS or len(self._packets) > VIDEO_CAPACITY:
            self._skip()
        return False, None

    def _release(self) -> bool:
        seq = self._start
        parts: list[Any] = []
        assert seq is not None
        while (packet := self._packets.get(seq)) is not None:
            if not parts and not packet.payload:  # padding between frames: nothing to forward
                del self._packets[seq]
                seq = self._start = (seq + 1) & 0xFFFF
                continue
            if parts and packet.timestamp != parts[0].timestamp:
                break  # the frame's last packet lacked the marker bit: the next frame ends it
            parts.append(packet)
            if packet.marker:
                break
            seq = (seq + 1) & 0xFFFF
        else:
            return False
        for packet in parts:
            del self._packets[packet.sequence_number]
        self._start = (parts[-1].sequence_number + 1) & 0xFFFF
        self._waiting_since = None
        data = b"".join(packet._data for packet in parts)
        timestamp = self._unwrap(parts[0].timestamp)
        self._sink.deliver(encoded_frame("video", data, timestamp, arrived=self._clock()))
        return True

    def _skip(self) -> None:
        """Give up the hole: resume at the first frame start after it, tell the sink."""
        stuck = self._start
        assert stuck is not None
        starts = [
            seq
            for seq, packet in self._packets.items()
            if seq != stuck and _vp8_frame_start(packet.payload)
        ]
        start = min(starts, key=lambda seq: (seq - stuck) & 0xFFFF, default=None)
        if start is None:
            self._packets.clear()
            self._start = None
        else:
            self._packets = {s: p for s, p in self._packets.items() if _newer(s, start)}
            self._start = start
        self._waiting_since = None
        self._sink.lost()
        if self._start is not None:
            while self._release():
                pass


class PassThroughBuffer:
    """Audio: every Opus packet is a frame, forwarded at once (late ones are dropped; a lost one is
    concealed by the subscriber's decoder)."""

    capacity = 16

    def __init__(self, sink: FrameSink, clock: Clock = time.monotonic) -> None:
        self._sink = sink
        self._clock = clock
        self._last: int | None = None
        self._unwrap = TimestampUnwrap()

    def add(self, packet: Any) -> tuple[bool, None]:
        if packet.ssrc != self._sink.media_ssrc:  # a new stream: its sequence starts anywhere
            self._sink.media_ssrc = packet.ssrc
            self._last = None
        seq = packet.sequence_number
        if self._last is not None and not _newer(seq, (self._last + 1) & 0xFFFF):
            return False, None
        if not packet.payload:
            return False, None  # padding
        self._last = seq
        audio_level = packet.extensions.audio_level  # (vad, level) when negotiated and sent
        frame = encoded_frame(
            "audio",
            packet._data,
            self._unwrap(packet.timestamp),
            arrived=self._clock(),
            level=audio_level[1] if audio_level is not None else None,
        )
        self._sink.deliver(frame)
        return False, None


def for_kind(kind: Kind, sink: FrameSink) -> MarkerJitterBuffer | PassThroughBuffer:
    return MarkerJitterBuffer(sink) if kind == "video" else PassThroughBuffer(sink)
