"""Replacement jitter buffers (sfu/jitter.py): VP8 frames released on their marker bit, holes
given up after a while, audio passed straight through. Fake RTP packets and clocks."""

from __future__ import annotations

import pytest
from aiortc.rtp import RtpPacket

from sfu.frames import EncodedFrame
from sfu.jitter import HOLE_SECONDS, MarkerJitterBuffer, PassThroughBuffer

pytestmark = pytest.mark.once


class Sink:
    def __init__(self) -> None:
        self.media_ssrc: int | None = None
        self.frames: list[EncodedFrame] = []
        self.losses = 0

    def deliver(self, frame: EncodedFrame) -> None:
        self.frames.append(frame)

    def lost(self) -> None:
        self.losses += 1


def vp8_packet(seq: int, ts: int, *, start: bool, marker: bool, key: bool = False) -> RtpPacket:
    data = (b"\x00\x00\x00\x9d\x01\x2a" if key else b"\x01\x00\x00") + bytes([seq & 0xFF]) * 10
    if not start:
        data = bytes([seq & 0xFF]) * 10
    packet = RtpPacket(payload_type=96, marker=int(marker), sequence_number=seq, timestamp=ts)
    packet.ssrc = 777
    packet.payload = bytes([0x10 if start else 0x00]) + data
    packet._data = data  # type: ignore[attr-defined]  # what aiortc's depayload leaves
    return packet


def frame_packets(first_seq: int, ts: int, count: int, *, key: bool = False) -> list[RtpPacket]:
    return [
        vp8_packet((first_seq + i) & 0xFFFF, ts, start=i == 0, marker=i == count - 1, key=key)
        for i in range(count)
    ]


def test_video_frame_is_released_on_its_marker_bit() -> None:
    sink, now = Sink(), [0.0]
    buffer = MarkerJitterBuffer(sink, clock=lambda: now[0])
    first, second = frame_packets(65534, 4_294_964_296, 3, key=True), frame_packets(1, 3000, 2)
    for packet in (first[0], first[2], first[1]):  # out of order within the frame
        assert buffer.add(packet) == (False, None)
    assert len(sink.frames) == 1  # released at once, not when the next frame starts
    assert sink.frames[0].keyframe and bytes(sink.frames[0].packet) == b"".join(
        p._data for p in first
    )
    for packet in second:  # the RTP timestamp wraps: pts keeps counting
        buffer.add(packet)
    assert [f.packet.pts for f in sink.frames] == [0, 6000]
    assert not sink.frames[1].keyframe
    assert buffer.add(first[1]) == (False, None) and len(sink.frames) == 2  # late duplicate
    assert sink.media_ssrc == 777 and sink.losses == 0


def test_video_padding_and_a_new_stream_do_not_stall() -> None:
    sink = Sink()
    buffer = MarkerJitterBuffer(sink, clock=lambda: 0.0)
    for packet in frame_packets(10, 0, 2, key=True):
        buffer.add(packet)
    padding = RtpPacket(payload_type=96, sequence_number=12, timestamp=0)
    padding.ssrc, padding._data = 777, b""  # type: ignore[attr-defined]
    buffer.add(padding)  # bandwidth probing without RTX: takes a sequence number, no media
    for packet in frame_packets(13, 3000, 2):
        buffer.add(packet)
    assert [f.packet.pts for f in sink.frames] == [0, 3000]

    restarted = frame_packets(40000, 6000, 2, key=True)  # a new SSRC numbers from anywhere
    for packet in restarted:
        packet.ssrc = 778
        buffer.add(packet)
    assert [f.packet.pts for f in sink.frames] == [0, 3000, 6000]
    assert sink.media_ssrc == 778 and sink.losses == 0


def test_video_hole_is_given_up_after_a_while() -> None:
    sink, now = Sink(), [0.0]
    buffer = MarkerJitterBuffer(sink, clock=lambda: now[0])
    for packet in frame_packets(10, 0, 2, key=True):
        buffer.add(packet)
    lost_frame = frame_packets(12, 3000, 3)
    buffer.add(lost_frame[0])  # seq 13 never arrives (nor its retransmission)
    buffer.add(lost_frame[2])
    following = frame_packets(15, 6000, 2)
    now[0] = HOLE_SECONDS / 2
    for packet in following:
        buffer.add(packet)
    assert len(sink.frames) == 1 and sink.losses == 0  # still waiting for seq 13

    now[0] = HOLE_SECONDS + 0.01
    buffer.add(vp8_packet(17, 9000, start=True, marker=False))
    assert sink.losses == 1  # the publisher gates its subscribers and asks for a keyframe
    assert [f.packet.pts for f in sink.frames] == [0, 6000]  # resumed at the next frame start
    buffer.add(vp8_packet(18, 9000, start=False, marker=True))
    assert [f.packet.pts for f in sink.frames] == [0, 6000, 9000]


def test_audio_passes_straight_through_with_its_level() -> None:
    sink = Sink()
    buffer = PassThroughBuffer(sink, clock=lambda: 0.0)
    for seq, level in ((100, 30), (102, None), (101, 10), (102, None)):  # 101 late, 102 twice
        packet = RtpPacket(payload_type=111, sequence_number=seq, timestamp=seq * 960)
        packet.ssrc = 5
        packet.payload = packet._data = bytes(seq - 90)  # type: ignore[attr-defined]
        packet.extensions.audio_level = None if level is None else (True, level)
        assert buffer.add(packet) == (False, None)
    assert [(f.packet.pts, f.level, f.size) for f in sink.frames] == [(0, 30, 10), (1920, None, 12)]
    assert sink.media_ssrc == 5
