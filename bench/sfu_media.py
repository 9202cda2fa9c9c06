"""Media for bench/sfu.py: pre-encoded clips replayed by publishers, and what receivers saw.

The peers must not spend their core encoding, so every publisher replays one clip encoded once
at start-up: 640x360 VP8 whose frames paint their index (tests/sfu/media.paint_id), plus a
moving bar and fresh noise so it runs at ~1 Mbps like a camera, and 20 ms Opus packets of noise.
Frame 0 is the clip's only keyframe: a publisher sends it first and again when its sender gets a
keyframe request (PLI/FIR), so keyframes come only on request, as from a browser.

Receivers tap aiortc's decoder queue (the same private hook the worker uses): every complete
encoded frame is timed when it leaves the receiver's jitter buffer. A forwarded frame keeps its
bytes, so its clip index is found by hash and its send time looked up in its publisher's
`sent_at`; a transcoded one (the MediaRelay baseline) is identified by decoding its painted
index. Decoding receivers also pass the frames to aiortc's decoder thread and count its errors;
the others only check that each frame could decode (a keyframe, or the frame after the last
decodable one).
"""

from __future__ import annotations

import asyncio
import fractions
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc.mediastreams import MediaStreamError

from sfu.frames import TIME_BASES, is_vp8_keyframe
from tests.sfu.media import Arrivals, CountingEvent, PacedTrack, paint_id, read_id

VIDEO_TICKS_PER_S = 90000
AUDIO_RATE, AUDIO_SAMPLES = 48000, 960  # 20 ms Opus packets
NOISE_ROWS, NOISE_AMPLITUDE = 60, 40  # fresh noise at the bottom: ~1 Mbps at 640x360


@dataclass(slots=True)
class Clip:
    """One kind's pre-encoded packets, and each packet's index by the hash of its bytes."""

    kind: str
    packets: list[bytes]
    period_s: float  # one frame or packet
    ticks: int  # RTP clock ticks per packet
    index: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.index = {hash(p): i for i, p in enumerate(self.packets)}
        if len(self.index) != len(self.packets):
            raise ValueError(f"{self.kind} clip has identical packets: indexes would be ambiguous")

    @property
    def bitrate(self) -> float:
        """Bits per second of one pass, without the keyframe."""
        body = self.packets[1:] if self.kind == "video" else self.packets
        return sum(map(len, body)) * 8 / (len(body) * self.period_s)


def video_clip(frames: int, width: int, height: int, fps: int, bitrate: int) -> Clip:
    """`frames` VP8 frames: a keyframe, then inter frames only (libvpx realtime, CBR)."""
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.bit_rate, codec.framerate = bitrate, fps
    codec.time_base = TIME_BASES["video"]
    codec.gop_size = 1 << 30  # no periodic keyframes
    codec.options = {"deadline": "realtime", "cpu-used": "-6", "lag-in-frames": "0"}
    rng = np.random.default_rng(11)
    bar = max(8, width // 8)
    packets = []
    for i in range(frames):
        planes = paint_id(i, width, height).to_ndarray()  # Y on top of U and V, id blocks on top
        y = planes[:height]
        x = (i * 8) % (width - bar)
        y[height // 3 : height - NOISE_ROWS, x : x + bar] = 200
        noise = rng.integers(-NOISE_AMPLITUDE, NOISE_AMPLITUDE, (NOISE_ROWS, width))
        y[height - NOISE_ROWS :] = (128 + noise).astype(np.uint8)
        frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
        frame.pts, frame.time_base = i * VIDEO_TICKS_PER_S // fps, TIME_BASES["video"]
        packets.append(b"".join(bytes(p) for p in codec.encode(frame)))
    keyframes = [i for i, p in enumerate(packets) if is_vp8_keyframe(p)]
    if keyframes != [0]:
        raise ValueError(f"the encoder made keyframes at {keyframes[:5]}, expected only frame 0")
    return Clip("video", packets, 1 / fps, VIDEO_TICKS_PER_S // fps)


def audio_clip(packets: int) -> Clip:
    """`packets` 20 ms Opus packets (48 kHz stereo) of low noise: every one different."""
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate, codec.layout, codec.format = AUDIO_RATE, "stereo", "s16"
    codec.bit_rate = 32000
    rng = np.random.default_rng(12)
    out: list[bytes] = []
    for i in range(packets + 4):  # the encoder holds a few frames back
        samples = rng.integers(-3000, 3000, (1, 2 * AUDIO_SAMPLES), dtype=np.int16)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="stereo")
        frame.sample_rate, frame.pts = AUDIO_RATE, i * AUDIO_SAMPLES
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        out.extend(bytes(p) for p in codec.encode(frame))
    return Clip("audio", out[:packets], AUDIO_SAMPLES / AUDIO_RATE, AUDIO_SAMPLES)


# --- publishing ---------------------------------------------------------------------------------


class ReplayTrack(PacedTrack):
    """A clip as `av.Packet`s in real time (aiortc's sender packs them without encoding), each
    packet's send time kept by index. Video restarts at the keyframe when asked for one."""

    def __init__(self, clip: Clip) -> None:
        super().__init__()
        self.kind = clip.kind
        self.clip = clip
        self.sent_at = [0.0] * len(clip.packets)  # time.monotonic() of each index's last send
        self.sent = 0
        self.keyframes = 0  # sent
        self.requests = 0  # keyframe requests (PLI/FIR) its sender received
        self._next = 0

    def bind(self, sender: RTCRtpSender) -> None:
        """aiortc ignores PLI/FIR for packets it does not encode; the call site is
        `self._send_keyframe()` on the sender."""
        sender._send_keyframe = self.request_keyframe  # type: ignore[method-assign]

    def request_keyframe(self) -> None:
        self.requests += 1
        self._next = 0

    async def recv(self) -> av.Packet:
        await self._pace(self.sent * self.clip.period_s)
        index, self._next = self._next, (self._next + 1) % len(self.clip.packets)
        if index == 0 and self.kind == "video":
            self.keyframes += 1
        packet = av.Packet(self.clip.packets[index])
        packet.pts, packet.time_base = self.sent * self.clip.ticks, TIME_BASES[self.kind]
        self.sent += 1
        self.sent_at[index] = time.monotonic()
        return packet


@dataclass(slots=True)
class Publisher:
    """What one participant sends (tracks replaying the shared clips)."""

    name: str
    video: ReplayTrack
    audio: ReplayTrack

    @classmethod
    def of(cls, name: str, video: Clip, audio: Clip) -> Publisher:
        return cls(name, ReplayTrack(video), ReplayTrack(audio))

    def track(self, kind: str) -> ReplayTrack:
        return self.video if kind == "video" else self.audio

    def stop(self) -> None:
        self.video.stop()
        self.audio.stop()


# --- receiving ----------------------------------------------------------------------------------


class Samples:
    """Latencies in ms, kept only while `on` (the measured window)."""

    def __init__(self) -> None:
        self.on = False
        self.ms: dict[str, list[float]] = {"video": [], "audio": [], "decoded": []}

    def add(self, what: str, seconds: float) -> None:
        if self.on and seconds >= 0:
            self.ms[what].append(seconds * 1000)


@dataclass(slots=True)
class Stream:
    """One received track: where it came from and what arrived."""

    kind: str
    source: Callable[[], Publisher | None]  # the publisher this track carries now
    frames: int = 0
    undecodable: int = 0  # not a keyframe and not the frame after the last decodable one
    first_at: float | None = None  # first complete (keyframe) frame
    decoded: int = 0
    garbled: int = 0  # decoded, but the painted index does not read back
    first_decoded_at: float | None = None
    errors: CountingEvent = field(default_factory=CountingEvent)
    _last: int | None = None


class _Tap(queue.Queue[Any]):
    """Replaces a receiver's decoder queue: times each complete frame on the event loop, then
    hands it to the decoder thread only when decoding. The None that stops the receiver is always
    passed on (aiortc joins the decoder thread right after)."""

    def __init__(self, inbox: Inbox, stream: Stream, clip: Clip, decode: bool) -> None:
        super().__init__()
        self.inbox, self.stream, self.clip, self.decode = inbox, stream, clip, decode

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None or self.decode:
            super().put(item, block, timeout)
        if item is not None:
            self.inbox.arrived(self.stream, self.clip, item[1].data)


class Inbox(Arrivals):
    """Every track one peer connection receives. `source_of(transceiver)` names the publisher
    behind a track; `decode`: also decode video (errors, painted ids, first decoded frame)."""

    def __init__(
        self,
        pc: RTCPeerConnection,
        clips: dict[str, Clip],
        samples: Samples,
        source_of: Callable[[Any], Publisher | None],
        *,
        decode: bool,
    ) -> None:
        super().__init__()
        self.pc, self.clips, self.samples = pc, clips, samples
        self.source_of = source_of
        self.decode = decode
        self.joined = time.monotonic()
        self.streams: list[Stream] = []
        pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        """Synchronous: aiortc starts the receiver (and captures its queue) after this returns."""
        transceiver = next(t for t in self.pc.getTransceivers() if t.receiver.track is track)
        receiver: RTCRtpReceiver = transceiver.receiver
        stream = Stream(track.kind, lambda: self.source_of(transceiver))
        self.streams.append(stream)
        decode = self.decode and track.kind == "video"
        receiver._RTCRtpReceiver__decoder_queue = _Tap(self, stream, self.clips[track.kind], decode)  # type: ignore[attr-defined]
        receiver._RTCRtpReceiver__decoder_error = stream.errors  # type: ignore[attr-defined]
        if decode:
            self._tasks.append(asyncio.ensure_future(self._decoded(track, stream)))

    def arrived(self, stream: Stream, clip: Clip, data: bytes) -> None:
        now = time.monotonic()
        stream.frames += 1
        index = clip.index.get(hash(data))  # None: transcoded (the baseline)
        if index is not None and (source := stream.source()) is not None:
            self.samples.add(stream.kind, now - source.track(stream.kind).sent_at[index])
        if stream.kind == "video":
            key = is_vp8_keyframe(data)
            if key or (
                index is not None and stream._last is not None and index == stream._last + 1
            ):
                stream._last = index
            else:
                stream._last = None
                stream.undecodable += index is not None
            if key and stream.first_at is None:
                stream.first_at = now
        elif stream.first_at is None:
            stream.first_at = now
        self._changed.set()

    async def _decoded(self, track: MediaStreamTrack, stream: Stream) -> None:
        try:
            while True:
                frame = await track.recv()
                now = time.monotonic()
                stream.decoded += 1
                stream.first_decoded_at = stream.first_decoded_at or now
                index = read_id(frame)
                source = stream.source()
                if index is None or index >= len(self.clips["video"].packets):
                    stream.garbled += 1
                elif source is not None:
                    self.samples.add("decoded", now - source.video.sent_at[index])
                self._changed.set()
        except MediaStreamError:
            pass

    def video(self) -> list[Stream]:
        return [s for s in self.streams if s.kind == "video"]
