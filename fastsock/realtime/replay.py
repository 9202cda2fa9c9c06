"""Replay buffers: the frames a session keeps so that its client can resume after a drop
(hub.py), bounded per session and across the process.

A buffer keeps its session's newest frames, as the UTF-8 bytes sent, within a size in bytes
(hub.KEEP), each frame counted with its bookkeeping (`cost`); older frames fall off, and a
resume from before them resyncs.
All buffers together stay within one budget (hub.REPLAY_BUDGET): over it, the sessions
without a socket go first, whole, the one detached longest first; their resume resyncs,
never replays with a gap. When only attached sessions are left, the buffer that grew sheds
its own oldest frames."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from prometheus_client import Gauge

# What a kept frame costs besides its bytes: the bytes object's header, the (seq, frame)
# tuple, the seq itself and the deque's slot, about.
FRAME_OVERHEAD = 128


def cost(frame: bytes) -> int:
    """The memory a frame takes while kept."""
    return len(frame) + FRAME_OVERHEAD


class ReplayBudget:
    """The bytes every buffer of this process holds, against one limit."""

    def __init__(self, limit: int, gauge: Gauge) -> None:
        self.limit = limit
        self.used = 0
        gauge.set_function(lambda: self.used)
        # Buffers of sessions without a socket, detached longest first, with how to drop
        # their session.
        self._away: dict[ReplayBuffer, Callable[[], None]] = {}

    def away(self, buffer: ReplayBuffer, drop: Callable[[], None]) -> None:
        self._away[buffer] = drop

    def back(self, buffer: ReplayBuffer) -> None:
        self._away.pop(buffer, None)

    def enforce(self, grown: ReplayBuffer) -> None:
        while self.used > self.limit and self._away:
            oldest = next(iter(self._away))
            self._away.pop(oldest)()  # the hub forgets the session; it releases its buffer
        if self.used > self.limit:
            grown.shed(self.used - self.limit)


class ReplayBuffer:
    def __init__(self, budget: ReplayBudget) -> None:
        self._budget = budget
        self._frames: deque[tuple[int, bytes]] = deque()
        self.bytes = 0
        self.released = False

    def keep(self, seq: int, frame: bytes, max_bytes: int) -> None:
        if self.released:  # the session was dropped; a late reply to its request goes nowhere
            return
        self._frames.append((seq, frame))
        self._grow(cost(frame))
        while self._frames and self.bytes > max_bytes:
            self._pop()
        self._budget.enforce(self)

    def since(self, last_seq: int, seq: int) -> list[bytes] | None:
        """The frames after `last_seq` up to `seq` (the session's latest), or None if some
        of them are no longer kept."""
        if not 0 <= last_seq <= seq:
            return None
        oldest = self._frames[0][0] if self._frames else seq + 1
        if last_seq + 1 < oldest:
            return None
        return [frame for n, frame in self._frames if n > last_seq]

    def shed(self, excess: int) -> None:
        """Drop the oldest frames until `excess` bytes are freed, or none are left."""
        target = self.bytes - excess
        while self._frames and self.bytes > target:
            self._pop()

    def release(self) -> None:
        """The session is gone: free every frame and keep nothing more."""
        self.released = True
        self._budget.back(self)
        self._frames.clear()
        self._grow(-self.bytes)

    def _pop(self) -> None:
        self._grow(-cost(self._frames.popleft()[1]))

    def _grow(self, delta: int) -> None:
        self.bytes += delta
        self._budget.used += delta
