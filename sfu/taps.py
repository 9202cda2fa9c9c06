"""Taps a publisher's RTCRtpReceiver so its encoded frames go to a Publisher undecoded.

aiortc has no public hook for this (aiortc#449): two private attributes of the receiver are
replaced before `receive()` starts its decoder thread (checked by sfu.internals at start-up)."""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import Any

from aiortc import RTCRtpReceiver

from sfu import jitter
from sfu.publisher import Publisher


class EndSignal(queue.Queue[Any]):
    """Replaces the receiver's decoder queue. The replacement jitter buffer hands nothing to it, so
    the decoder thread idles until aiortc stops the receiver with `put(None)`: that None is passed
    on (aiortc then joins the thread on the event loop: swallowing it would hang the loop) and
    reported as the end of the publisher's track, which fires nowhere else unless something reads
    the remote track."""

    def __init__(self, on_end: Callable[[], None]) -> None:
        super().__init__()
        self._on_end = on_end

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        if item is None:
            self._on_end()


def tap_receiver(receiver: RTCRtpReceiver, publisher: Publisher) -> None:
    """MUST be called synchronously inside `pc.on("track")`: aiortc emits "track" before it
    starts the receiver, and the decoder thread captures the queue when it starts. Find the
    receiver with `next(t.receiver for t in pc.getTransceivers() if t.receiver.track is track)`."""
    if receiver._RTCRtpReceiver__decoder_thread is not None:  # type: ignore[attr-defined]
        raise RuntimeError('tap_receiver() must run synchronously inside pc.on("track")')
    receiver._RTCRtpReceiver__decoder_queue = EndSignal(publisher.remote_ended)  # type: ignore[attr-defined]
    receiver._RTCRtpReceiver__jitter_buffer = jitter.for_kind(publisher.kind, publisher)  # type: ignore[attr-defined]
    publisher.attach(receiver)
