"""Active speaker (sfu/speaker.py): the loudest participant, announced with a hold and at a
bounded rate, from RFC 6464 levels or Opus packet sizes. A fake clock."""

from __future__ import annotations

import itertools

import pytest

from sfu.speaker import HOLD_SECONDS, ActiveSpeaker

pytestmark = pytest.mark.once


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def talk(speaker: ActiveSpeaker, clock: Clock, seconds: float, **levels: int | None) -> None:
    """Every participant sends a 20 ms packet at the given RFC 6464 level (127: silence)."""
    for _ in range(round(seconds / 0.02)):
        clock.now += 0.02
        for user_id, level in levels.items():
            speaker.observe(user_id, level, 40)


def test_loudest_speaker_is_announced_with_a_hold() -> None:
    clock, changes = Clock(), []
    speaker = ActiveSpeaker(lambda user: changes.append((user, clock.now)), clock=clock)
    talk(speaker, clock, 0.3, alice=25, bob=127)
    assert [u for u, _ in changes] == ["alice"]
    alice_at = changes[0][1]

    talk(speaker, clock, 0.1, alice=127, bob=20)  # bob takes over, but alice's turn is short
    assert len(changes) == 1
    talk(speaker, clock, 1.0, alice=127, bob=20)
    assert [u for u, _ in changes] == ["alice", "bob"]
    assert changes[1][1] - alice_at >= HOLD_SECONDS

    talk(speaker, clock, 0.3, alice=127, bob=127)  # a pause between words keeps the floor
    assert changes[-1][0] == "bob"
    talk(speaker, clock, 1.0, alice=127, bob=127)
    assert changes[-1][0] is None


def test_speaker_changes_are_rate_limited() -> None:
    clock, changes = Clock(), []
    speaker = ActiveSpeaker(lambda user: changes.append((user, clock.now)), clock=clock)
    for _ in range(25):  # the floor is fought over every 100 ms for 5 s: turns last 0.5 s
        talk(speaker, clock, 0.1, alice=10, bob=127)
        talk(speaker, clock, 0.1, alice=127, bob=10)
    turns = [b - a for (_, a), (_, b) in itertools.pairwise(changes)]
    assert len(changes) > 5 and min(turns) >= 0.5 - 1e-9

    changes.clear()
    talk(speaker, clock, 0.6, alice=127, bob=127)  # silence: nobody speaks
    talk(speaker, clock, 0.5, alice=127, bob=10)  # bob right after: not at once
    assert [user for user, _ in changes] == [None, "bob"]
    assert changes[1][1] - changes[0][1] >= 0.25 - 1e-9  # at most 4 changes per second

    talk(speaker, clock, 2.0, alice=32, bob=35)  # about as loud as bob: no take-over
    assert changes[-1][0] == "bob"
    talk(speaker, clock, 0.6, alice=20, bob=45)  # clearly louder
    assert changes[-1][0] == "alice"


def test_opus_packet_size_stands_in_for_a_missing_level() -> None:
    clock, changes = Clock(), []
    speaker = ActiveSpeaker(changes.append, clock=clock)
    for _ in range(30):
        clock.now += 0.02
        speaker.observe("alice", None, 6)  # comfort noise
        speaker.observe("bob", None, 90)  # speech
    assert changes == ["bob"]
    speaker.forget("bob")  # bob stopped publishing: not held
    assert changes == ["bob", None]
