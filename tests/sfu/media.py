"""Test media for SFU tests: aiortc peers on loopback that publish video whose frames carry an id,
and record what they decode.

- `IdVideoTrack`: VP8 encoded here (PyAV) and sent as `av.Packet`s, so keyframes come only at
  the start and when the track's sender is asked for one (`bind(sender)`): aiortc's own encoder
  also makes one on every bitrate change, which hides keyframe bugs. Each frame paints its id.
- `ToneTrack`: a sine tone (its sender adds the RFC 6464 audio level).
- `PacedTrack`: their base (and the bench's replaying tracks'): frames go out in real time.
- `Recorder`: a subscriber's received tracks: decoded frame ids, audio frames, decode errors.
  Its base `Arrivals` (a bounded wait on what arrived) and `CountingEvent` (decode errors) serve
  the bench's receivers too (bench/sfu_media.py).
- `loopback_ice(monkeypatch)`: ICE on 127.0.0.1 without STUN for this test, restored after.
"""

from __future__ import annotations

import asyncio
import fractions
import itertools
import math
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aioice.ice
import av
import numpy as np
import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpSender
from aiortc.mediastreams import MediaStreamError

from sfu import ice
from sfu.frames import is_vp8_keyframe

VIDEO_TIME_BASE = fractions.Fraction(1, 90000)
AUDIO_RATE = 48000
AUDIO_SAMPLES = 960  # 20 ms
ID_BITS, CHECK_BITS = 16, 4  # the painted id, then a checksum so a garbled frame reads as None
BLOCKS_PER_ROW = 10


# ---------------------------------------------------------------- frame ids painted as blocks


def _checksum(frame_id: int) -> int:
    return (frame_id ^ frame_id >> 4 ^ frame_id >> 8 ^ frame_id >> 12) & 0xF


def _block(width: int) -> int:
    return width // BLOCKS_PER_ROW


def paint_id(frame_id: int, width: int, height: int) -> av.VideoFrame:
    """A grey frame with the id and its checksum as black/white blocks, left to right."""
    bits = frame_id | _checksum(frame_id) << ID_BITS
    size = _block(width)
    y = np.full((height, width), 128, np.uint8)
    for bit in range(ID_BITS + CHECK_BITS):
        row, col = divmod(bit, BLOCKS_PER_ROW)
        value = 255 if bits >> bit & 1 else 0
        y[row * size : (row + 1) * size, col * size : (col + 1) * size] = value
    chroma = np.full((height // 2, width), 128, np.uint8)  # U and V planes, quarter size each
    return av.VideoFrame.from_ndarray(np.vstack([y, chroma]), format="yuv420p")


def read_id(frame: av.VideoFrame) -> int | None:
    """The id painted by paint_id, or None when the blocks do not add up (a garbled frame)."""
    y = frame.to_ndarray(format="gray")
    size = _block(frame.width)
    margin = size // 4
    bits = 0
    for bit in range(ID_BITS + CHECK_BITS):
        row, col = divmod(bit, BLOCKS_PER_ROW)
        block = y[
            row * size + margin : (row + 1) * size - margin,
            col * size + margin : (col + 1) * size - margin,
        ]
        mean = float(block.mean())
        if 64 < mean < 192:
            return None
        bits |= (mean >= 192) << bit
    frame_id = bits & ((1 << ID_BITS) - 1)
    return frame_id if bits >> ID_BITS == _checksum(frame_id) else None


# ---------------------------------------------------------------- publishing tracks


class PacedTrack(MediaStreamTrack):
    """A track whose frames go out in real time, timed from its first one."""

    def __init__(self) -> None:
        super().__init__()
        self._start: float | None = None

    async def _pace(self, offset_s: float) -> None:
        """Wait until `offset_s` after the first frame; MediaStreamError once the track stopped."""
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        due = self._start + offset_s
        if due > now:
            await asyncio.sleep(due - now)


class IdVideoTrack(PacedTrack):
    """VP8 frames with painted ids, as av.Packets: keyframes only first and on request."""

    kind = "video"

    def __init__(self, width: int = 160, height: int = 120, fps: int = 15) -> None:
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        self.keyframes: list[tuple[int, float]] = []  # (frame id, time.monotonic()) of each one
        self.requests = 0  # keyframe requests (PLI/FIR) received by the sender
        self.sent = 0
        self._want_keyframe = False
        self._codec = av.CodecContext.create("libvpx", "w")
        self._codec.width, self._codec.height = width, height
        self._codec.pix_fmt = "yuv420p"
        self._codec.bit_rate = 300_000
        self._codec.time_base = VIDEO_TIME_BASE
        self._codec.gop_size = 1 << 20  # no periodic keyframes
        self._codec.options = {"deadline": "realtime", "cpu-used": "-6", "lag-in-frames": "0"}

    def bind(self, sender: RTCRtpSender) -> None:
        """Make keyframes when this track's sender gets a PLI/FIR (aiortc ignores them for
        pre-encoded packets; the call site is `self._send_keyframe()`)."""
        sender._send_keyframe = self.request_keyframe  # type: ignore[method-assign]

    def request_keyframe(self) -> None:
        self.requests += 1
        self._want_keyframe = True

    def keyframes_after(self, moment: float) -> list[int]:
        return [frame_id for frame_id, at in self.keyframes if at >= moment]

    async def recv(self) -> av.Packet:
        await self._pace(self.sent / self.fps)
        frame_id = self.sent & ((1 << ID_BITS) - 1)
        frame = paint_id(frame_id, self.width, self.height)
        frame.pts = self.sent * 90000 // self.fps
        frame.time_base = VIDEO_TIME_BASE
        if self._want_keyframe:
            self._want_keyframe = False
            frame.pict_type = av.video.frame.PictureType.I
        data = b"".join(bytes(packet) for packet in self._codec.encode(frame))
        if is_vp8_keyframe(data):
            self.keyframes.append((frame_id, time.monotonic()))
        self.sent += 1
        packet = av.Packet(data)
        packet.pts, packet.time_base = frame.pts, VIDEO_TIME_BASE
        return packet


class ToneTrack(PacedTrack):
    """20 ms frames of a sine tone (amplitude 0: silence), paced in real time."""

    kind = "audio"

    def __init__(self, frequency: float = 440.0, amplitude: float = 0.5) -> None:
        super().__init__()
        self.frequency, self.amplitude = frequency, amplitude
        self._sent = 0

    async def recv(self) -> av.AudioFrame:
        await self._pace(self._sent * AUDIO_SAMPLES / AUDIO_RATE)
        t = (np.arange(AUDIO_SAMPLES) + self._sent * AUDIO_SAMPLES) / AUDIO_RATE
        wave = self.amplitude * 32767 * np.sin(2 * math.pi * self.frequency * t)
        frame = av.AudioFrame.from_ndarray(
            wave.astype(np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._sent * AUDIO_SAMPLES
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        self._sent += 1
        return frame


# ---------------------------------------------------------------- receiving side


class CountingEvent(threading.Event):
    """Stands in for RTCRtpReceiver's decoder-error event: its decoder thread sets it on every
    frame that fails to decode."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def set(self) -> None:
        self.count += 1
        super().set()


@dataclass
class Decoded:
    frame_id: int | None  # None: decoded, but the painted id is garbled
    at: float  # time.monotonic()


class Arrivals:
    """What a peer connection's tracks deliver, read by tasks: a subclass keeps them in `_tasks`
    and sets `_changed` on each arrival; `wait_for` waits on it and `close` stops the reading."""

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []
        self._changed = asyncio.Event()

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 20) -> None:
        """Bounded wait for a condition on what was received (a failure detector, not a timer)."""

        async def until() -> None:
            while not condition():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(until(), timeout)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class Recorder(Arrivals):
    """Reads every track a peer connection receives: video frame ids, audio frame count, decode
    errors (this connection's only: each receiver's private decoder-error event, which its
    decoder thread sets on a failure, is replaced by a counting one before it starts)."""

    def __init__(self, pc: RTCPeerConnection) -> None:
        super().__init__()
        self.pc = pc
        self.video: list[Decoded] = []
        self.audio_frames = 0
        self._errors: list[CountingEvent] = []
        pc.on("track", self._on_track)

    @property
    def ids(self) -> list[int | None]:
        return [d.frame_id for d in self.video]

    @property
    def decode_errors(self) -> int:
        return sum(event.count for event in self._errors)

    def _on_track(self, track: MediaStreamTrack) -> None:
        receiver = next(t.receiver for t in self.pc.getTransceivers() if t.receiver.track is track)
        errors = CountingEvent()
        receiver._RTCRtpReceiver__decoder_error = errors  # type: ignore[attr-defined]
        self._errors.append(errors)
        self._tasks.append(asyncio.ensure_future(self._consume(track)))

    async def _consume(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                if track.kind == "video":
                    self.video.append(Decoded(read_id(frame), time.monotonic()))
                else:
                    self.audio_frames += 1
                self._changed.set()
        except MediaStreamError:
            pass


def in_order(ids: list[int | None]) -> bool:
    """Every id readable and strictly increasing (gaps allowed)."""
    known = [i for i in ids if i is not None]
    return len(known) == len(ids) and all(a < b for a, b in itertools.pairwise(known))


# ---------------------------------------------------------------- connections


async def connect(offerer: RTCPeerConnection, answerer: RTCPeerConnection) -> None:
    """One offer/answer round in process (aiortc gathers all candidates before the SDP)."""
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)


async def wait_until(condition: Callable[[], bool], timeout: float = 20) -> None:
    """Bounded poll for a condition that no event signals (a failure detector, not a timer)."""

    async def until() -> None:
        while not condition():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(until(), timeout)


async def close_all(*closers: Awaitable[object]) -> None:
    await asyncio.wait_for(asyncio.gather(*closers, return_exceptions=True), 20)


def loopback_ice(
    monkeypatch: pytest.MonkeyPatch, min_port: int = 40000, max_port: int = 59999
) -> None:
    """sfu.ice on 127.0.0.1 (which aioice never offers by itself) for this test; the process-wide
    patch is undone at teardown so other tests see stock aioice."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", aioice.ice.get_host_addresses)
    monkeypatch.setattr(
        aioice.ice.Connection,
        "get_component_candidates",
        aioice.ice.Connection.get_component_candidates,
    )
    monkeypatch.setattr(ice, "_settings", ice._settings)
    monkeypatch.setattr(ice, "_next_port", ice._next_port)
    ice.configure_ice(ips=("127.0.0.1",), public_ip=None, min_port=min_port, max_port=max_port)
