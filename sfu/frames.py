"""Encoded frames as the SFU carries them: assembled from a publisher's RTP packets, handed to
every subscriber's sender as one shared `av.Packet` (senders only read it)."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal, Protocol

import av

Kind = Literal["audio", "video"]

# What aiortc's encoders' pack() convert from: RTP clock rates of VP8 and Opus.
TIME_BASES: dict[str, Fraction] = {"video": Fraction(1, 90000), "audio": Fraction(1, 48000)}

# A packet made from bytes, of no container's stream (av types a packet by its stream's kind).
type Packet = av.Packet[Any]


@dataclass(slots=True, frozen=True)
class EncodedFrame:
    packet: Packet
    keyframe: bool  # always True for audio: any Opus packet can start a stream
    arrived: float  # time.monotonic() when the frame was complete
    level: int | None = None  # audio: RFC 6464 level (0..127 = -dBov) when the publisher sends it

    @property
    def size(self) -> int:
        return self.packet.size


def encoded_frame(
    kind: Kind, data: bytes, timestamp: int, *, arrived: float, level: int | None = None
) -> EncodedFrame:
    packet = av.Packet(data)
    packet.pts = timestamp
    packet.time_base = TIME_BASES[kind]
    keyframe = kind == "audio" or is_vp8_keyframe(data)
    return EncodedFrame(packet, keyframe, arrived, level)


def is_vp8_keyframe(data: bytes) -> bool:
    """A depayloaded VP8 frame (RFC 6386 section 9.1): P bit clear and the key frame start code."""
    return len(data) >= 10 and not data[0] & 1 and data[3:6] == b"\x9d\x01\x2a"


class FrameSink(Protocol):
    """Where a receiver's replacement jitter buffer delivers (a Publisher)."""

    media_ssrc: int | None

    def deliver(self, frame: EncodedFrame) -> None: ...

    def lost(self) -> None: ...


class TimestampUnwrap:
    """32-bit RTP timestamps -> a continuous count from 0 (what aiortc's TimestampMapper does on
    the path the SFU bypasses); wraps and slightly late frames are followed by signed deltas."""

    def __init__(self) -> None:
        self._last: int | None = None
        self._value = 0

    def __call__(self, timestamp: int) -> int:
        if self._last is not None:
            self._value += ((timestamp - self._last + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
        self._last = timestamp
        return self._value
