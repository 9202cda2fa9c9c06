"""Publisher (sfu/publisher.py): keyframe requests upstream coalesced to one per interval,
subscribers gated after a loss until a keyframe, and its end. Fake receivers and frames."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from sfu.frames import EncodedFrame, encoded_frame
from sfu.publisher import PLI_INTERVAL_SECONDS, Publisher
from tests.sfu.media import wait_until

pytestmark = pytest.mark.once


class FakeReceiver:
    def __init__(self) -> None:
        self.plis: list[int] = []

    async def _send_rtcp_pli(self, media_ssrc: int) -> None:
        self.plis.append(media_ssrc)


def keyframe(kind: str = "video") -> EncodedFrame:
    return encoded_frame(kind, b"\x00\x00\x00\x9d\x01\x2a" + bytes(10), 0, arrived=0.0)


async def test_keyframe_requests_are_coalesced() -> None:
    publisher = Publisher("alice", "video")
    receiver = FakeReceiver()
    publisher.attach(receiver)  # type: ignore[arg-type]
    publisher.media_ssrc = 1234
    loop = asyncio.get_running_loop()

    started = loop.time()
    for reason in ["join"] * 10 + ["pli"] * 30 + ["drop"] * 10:
        publisher.request_keyframe(reason)
    await asyncio.sleep(0)
    assert receiver.plis == [1234]  # at once, and once
    await wait_until(lambda: len(receiver.plis) == 2)  # the rest: once, when the interval ends
    assert loop.time() - started >= PLI_INTERVAL_SECONDS

    # A request inside the interval is answered by any keyframe that arrives before it ends.
    publisher.request_keyframe("pli")
    publisher.deliver(keyframe())
    await asyncio.sleep(PLI_INTERVAL_SECONDS + 0.05)  # past the interval's end timer
    assert len(receiver.plis) == 2
    publisher.request_keyframe("pli")  # and the next one goes at once
    await asyncio.sleep(0)
    assert len(receiver.plis) == 3

    publisher.close()
    publisher.request_keyframe("pli")
    assert len(receiver.plis) == 3


def delta() -> EncodedFrame:
    return encoded_frame("video", b"\x01\x00\x00" + bytes(10), 3000, arrived=0.0)


async def test_upstream_loss_gates_subscribers_until_a_keyframe() -> None:
    publisher = Publisher("alice", "video")
    receiver = FakeReceiver()
    publisher.attach(receiver)  # type: ignore[arg-type]
    publisher.media_ssrc = 7
    track = publisher.subscribe()
    publisher.deliver(delta())  # gated from the start
    publisher.deliver(keyframe())
    publisher.deliver(delta())
    assert track.queued == 2

    publisher.lost()
    publisher.deliver(delta())  # its reference frame never came
    assert track.queued == 2
    publisher.deliver(keyframe())
    assert track.queued == 3
    await asyncio.sleep(0)
    assert receiver.plis == [7]  # the join's; the loss's request was answered by the keyframe


def test_publisher_closed_by_the_room_does_not_report_its_end() -> None:
    publisher = Publisher("alice", "audio")
    ends: list[str] = []
    publisher.on_ended = lambda: ends.append("ended")
    track = publisher.subscribe()
    publisher.close()
    assert track.ended and publisher.subscribers == ()
    publisher.remote_ended()  # aiortc stops the receiver later, when the connection closes
    assert ends == []
    assert publisher.subscribe().ended


async def test_subscriber_keyframe_request_goes_upstream() -> None:
    """bind_sender takes over the sender's keyframe hook (aiortc only flags its own encoder)."""
    publisher = Publisher("alice", "video")
    receiver = FakeReceiver()
    publisher.attach(receiver)  # type: ignore[arg-type]
    publisher.media_ssrc = 99
    sender = SimpleNamespace(_send_keyframe=lambda: None, track=None)
    track = publisher.subscribe()
    await asyncio.sleep(PLI_INTERVAL_SECONDS + 0.05)  # let the join's request go first
    track.bind_sender(sender)  # type: ignore[arg-type]
    sender._send_keyframe()
    await asyncio.sleep(0)
    assert receiver.plis == [99, 99]
