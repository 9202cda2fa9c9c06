"""Forwarding encoded media without decoding it (sfu/{taps,jitter,publisher,forward,speaker}.py).

Real aiortc peers on loopback in this process: a publisher -> the worker's receiving peer
connection, tapped into a Publisher -> ForwardTracks on the worker's sending peer connections ->
subscribers that decode and read the frame ids. The pieces alone, with fake packets and clocks:
test_publisher.py, test_jitter.py, test_speaker.py."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import av
import pytest
from aiortc import RTCPeerConnection, RTCRtpReceiver
from aiortc.rtp import RtpPacket

from sfu import forward
from sfu.forward import ForwardTrack
from sfu.frames import EncodedFrame, is_vp8_keyframe
from sfu.ice import rtc_configuration
from sfu.metrics import REGISTRY
from sfu.publisher import Publisher
from sfu.speaker import ActiveSpeaker
from sfu.taps import tap_receiver
from tests.sfu.media import (
    IdVideoTrack,
    Recorder,
    ToneTrack,
    close_all,
    connect,
    in_order,
    loopback_ice,
    read_id,
    wait_until,
)

pytestmark = pytest.mark.once


@dataclass
class Subscriber:
    pc: RTCPeerConnection  # the subscriber's own connection
    out: RTCPeerConnection  # the worker's connection sending to it
    recorder: Recorder
    tracks: dict[str, ForwardTrack]


class Loss:
    """Every `every`-th VP8 packet into the worker (from the second on), and every retransmission,
    is lost: each loss leaves a hole that only a keyframe repairs."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.media = 0
        self.dropped = 0
        self._payload_type: int | None = None

    def install(self, receiver: RTCRtpReceiver) -> None:
        handle = receiver._handle_rtp_packet  # what the DTLS transport hands each RTP packet to

        async def lossy(packet: RtpPacket, arrival_time_ms: int) -> None:
            if not self._drops(packet):
                await handle(packet, arrival_time_ms)

        receiver._handle_rtp_packet = lossy  # type: ignore[method-assign]

    def _drops(self, packet: RtpPacket) -> bool:
        if self._payload_type is None:
            self._payload_type = packet.payload_type
        if packet.payload_type != self._payload_type:
            return True  # RTX: the NACKed packet never comes back
        self.media += 1
        if self.media > self.every and self.media % self.every == 0:
            self.dropped += 1
            return True
        return False


@dataclass
class Sfu:
    """The worker's media path without its signaling: what sfu.peer and sfu.room wire up."""

    publishers: dict[str, Publisher] = field(default_factory=dict)
    speakers: list[str | None] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)
    pcs: list[RTCPeerConnection] = field(default_factory=list)
    recorders: list[Recorder] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.speaker = ActiveSpeaker(self.speakers.append)

    def pc(self) -> RTCPeerConnection:
        pc = RTCPeerConnection(rtc_configuration())
        self.pcs.append(pc)
        return pc

    async def publish(
        self, user_id: str, *, audio: bool = False, loss: Loss | None = None
    ) -> IdVideoTrack:
        """A publisher sending id-painted video (and a tone) to the worker; `loss` drops some of
        the video packets on their way in."""
        sender_pc, worker_pc = self.pc(), self.pc()
        video = IdVideoTrack()
        video.bind(sender_pc.addTrack(video))
        if audio:
            sender_pc.addTrack(ToneTrack())

        def on_track(track: object) -> None:  # synchronous, as tap_receiver requires
            receiver = next(
                t.receiver for t in worker_pc.getTransceivers() if t.receiver.track is track
            )
            publisher = Publisher(user_id, receiver.track.kind, speaker=self.speaker)
            publisher.on_ended = lambda: self.ended.append(publisher.kind)
            tap_receiver(receiver, publisher)
            self.publishers[publisher.kind] = publisher
            if loss is not None and publisher.kind == "video":
                loss.install(receiver)

        worker_pc.on("track", on_track)
        await connect(sender_pc, worker_pc)
        self.publisher_pc = sender_pc
        return video

    async def subscribe(self, kinds: tuple[str, ...] = ("video",)) -> Subscriber:
        out, pc = self.pc(), self.pc()
        recorder = Recorder(pc)
        self.recorders.append(recorder)
        tracks = {}
        for kind in kinds:
            track = self.publishers[kind].subscribe()
            track.bind_sender(out.addTrack(track))
            tracks[kind] = track
        await connect(out, pc)
        return Subscriber(pc, out, recorder, tracks)


@pytest.fixture
async def sfu(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Sfu]:
    loopback_ice(monkeypatch)
    sfu = Sfu()
    yield sfu
    await close_all(*(recorder.close() for recorder in sfu.recorders))
    await close_all(*(pc.close() for pc in sfu.pcs))


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def consecutive(ids: list[int | None]) -> bool:
    return in_order(ids) and ids == list(range(ids[0], ids[0] + len(ids)))  # type: ignore[arg-type]


async def test_subscriber_decodes_every_frame_in_order(sfu: Sfu) -> None:
    await sfu.publish("alice", audio=True)
    out_before = sample("sfu_packets_total", direction="out")
    a = await sfu.subscribe(("video", "audio"))

    await a.recorder.wait_for(lambda: len(a.recorder.video) >= 30 and a.recorder.audio_frames >= 50)
    assert consecutive(a.recorder.ids), a.recorder.ids
    assert a.recorder.decode_errors == 0
    assert sample("sfu_packets_total", direction="out") >= out_before + 80
    # The tone's RFC 6464 levels reached the active speaker through the audio tap.
    await wait_until(lambda: sfu.speakers == ["alice"])

    # The publisher leaving ends its tap (the None passed on, or aiortc's close would hang on
    # the decoder thread) and every subscriber's track.
    await asyncio.wait_for(sfu.publisher_pc.close(), 20)
    await wait_until(lambda: sorted(sfu.ended) == ["audio", "video"])
    assert a.tracks["video"].ended and a.tracks["audio"].ended
    assert sfu.publishers["video"].subscribers == ()


async def test_late_subscriber_gets_a_keyframe_on_request(sfu: Sfu) -> None:
    video = await sfu.publish("alice")
    a = await sfu.subscribe()
    await a.recorder.wait_for(lambda: len(a.recorder.video) >= 15)  # start keyframe long past

    joined = time.monotonic()
    b = await sfu.subscribe()
    await b.recorder.wait_for(lambda: len(b.recorder.video) >= 10)
    first = b.recorder.video[0]
    print(f"late subscriber: first frame {first.at - joined:.3f} s after joining")
    assert first.frame_id in video.keyframes_after(joined), (first, video.keyframes)
    assert video.requests >= 1
    assert consecutive(b.recorder.ids) and b.recorder.decode_errors == 0
    assert consecutive(a.recorder.ids) and a.recorder.decode_errors == 0

    # A subscriber's own PLI (after a loss it could not repair) reaches the publisher.
    requests = video.requests
    receiver = b.pc.getReceivers()[0]
    await receiver._send_rtcp_pli(receiver.getSynchronizationSources()[0].source)
    await wait_until(lambda: video.requests > requests)


async def test_stalled_subscriber_stays_bounded_and_recovers_at_a_keyframe(
    sfu: Sfu, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = 8
    monkeypatch.setitem(forward.QUEUE_LIMITS, "video", limit)
    video = await sfu.publish("alice")
    stalled = sfu.publishers["video"].subscribe()  # a subscriber whose sender reads nothing
    sizes: list[int] = []
    push = stalled.push

    def measured_push(frame: EncodedFrame) -> None:
        push(frame)
        sizes.append(stalled.queued)

    stalled.push = measured_push  # type: ignore[method-assign]
    drops = sample("sfu_subscriber_drops_total")

    await wait_until(lambda: sample("sfu_subscriber_drops_total") > drops)
    dropped_at = time.monotonic()
    await wait_until(lambda: bool(video.keyframes_after(dropped_at)) and stalled.queued > 0)
    assert max(sizes) <= limit
    assert sample("sfu_subscriber_drops_total") >= drops + limit

    # It reads again: it starts at a keyframe and everything decodes, in order.
    decoder = av.CodecContext.create("libvpx", "r")
    ids = []
    for n in range(2 * limit):
        packet = await asyncio.wait_for(stalled.recv(), 20)
        assert n or is_vp8_keyframe(bytes(packet))
        ids += [read_id(frame) for frame in decoder.decode(packet)]
    assert consecutive(ids), ids
    stalled.end()


async def test_upstream_loss_is_skipped_until_a_keyframe(sfu: Sfu) -> None:
    loss = Loss(every=15)
    video = await sfu.publish("alice", loss=loss)
    a = await sfu.subscribe()
    losses = sample("sfu_keyframe_requests_total", reason="loss")

    await wait_until(lambda: sample("sfu_keyframe_requests_total", reason="loss") >= losses + 2)
    received = len(a.recorder.video)
    await a.recorder.wait_for(lambda: len(a.recorder.video) >= received + 10)
    ids = a.recorder.ids
    assert loss.dropped >= 2 and in_order(ids) and a.recorder.decode_errors == 0
    pairs = itertools.pairwise(ids)
    resumed = [after for before, after in pairs if after - before > 1]  # type: ignore[operator]
    keyframes = {frame_id for frame_id, _ in video.keyframes}
    assert resumed and all(frame_id in keyframes for frame_id in resumed), (ids, keyframes)
