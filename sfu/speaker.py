"""Active speaker of a call, from what the audio packets say without decoding them.

Each packet gives an activity score in 0..1: from its RFC 6464 audio level when the publisher
sends the extension (browsers do), else from the Opus packet size (speech takes far more bytes
than silence or background noise). Scores are smoothed per participant; the loudest participant
above THRESHOLD speaks. A turn lasts at least HOLD_SECONDS, a speaker keeps the floor through
pauses shorter than that and against anyone not clearly (MARGIN) louder, and changes are
announced at most 1 / MIN_GAP_SECONDS times per second."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

HOLD_SECONDS = 0.5
MIN_GAP_SECONDS = 0.25  # at most 4 changes per second
THRESHOLD = 0.5
MARGIN = 0.15  # how much louder than the current speaker another one must be to take over
SMOOTHING = 0.25  # weight of each new packet (20 ms each: settles in ~100 ms)
# RFC 6464 levels are -dBov (0 loudest, 127 silence): speech sits around 20-40, noise above 60.
LEVEL_QUIET, LEVEL_LOUD = 70, 30
# Opus at 20 ms: silence/comfort noise takes a few bytes, speech tens to hundreds.
SIZE_QUIET, SIZE_LOUD = 15, 60


def activity(level: int | None, size: int) -> float:
    """0 (silent) .. 1 (clearly speaking) for one packet."""
    if level is not None:
        score = (LEVEL_QUIET - level) / (LEVEL_QUIET - LEVEL_LOUD)
    else:
        score = (size - SIZE_QUIET) / (SIZE_LOUD - SIZE_QUIET)
    return min(1.0, max(0.0, score))


@dataclass
class _Participant:
    score: float = 0.0
    loud_at: float = -1e9  # last time the score was above THRESHOLD


class ActiveSpeaker:
    """One per call. `on_change(user_id | None)` runs on the event loop, synchronously."""

    def __init__(
        self, on_change: Callable[[str | None], None], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.on_change = on_change
        self.clock = clock
        self.current: str | None = None
        self._since = -1e9  # when `current` got the floor
        self._changed_at = -1e9
        self._participants: dict[str, _Participant] = {}

    def observe(self, user_id: str, level: int | None, size: int) -> None:
        """One audio packet of `user_id` (level: RFC 6464 0..127, None when not sent)."""
        now = self.clock()
        state = self._participants.setdefault(user_id, _Participant())
        state.score += SMOOTHING * (activity(level, size) - state.score)
        if state.score >= THRESHOLD:
            state.loud_at = now
        self._elect(now)

    def forget(self, user_id: str) -> None:
        """The participant stopped publishing audio: they cannot keep the floor."""
        self._participants.pop(user_id, None)
        if self.current == user_id:
            self._change(self._loudest(), self.clock())

    def _loudest(self) -> str | None:
        speaking = {u: p.score for u, p in self._participants.items() if p.score >= THRESHOLD}
        return max(speaking, key=speaking.__getitem__, default=None)

    def _elect(self, now: float) -> None:
        loudest = self._loudest()
        if loudest == self.current or now - self._changed_at < MIN_GAP_SECONDS:
            return
        if self.current is not None:
            current = self._participants[self.current]
            if now - self._since < HOLD_SECONDS:
                return  # every turn lasts at least HOLD
            if loudest is None and now - current.loud_at < HOLD_SECONDS:
                return  # a pause between words keeps the floor
            if loudest is not None and current.score + MARGIN > self._participants[loudest].score:
                return  # about as loud as the other: no flapping between two speakers
        self._change(loudest, now)

    def _change(self, user_id: str | None, now: float) -> None:
        if user_id == self.current:
            return
        self.current = user_id
        self._since = self._changed_at = now
        self.on_change(user_id)
