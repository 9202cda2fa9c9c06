"""A group call's stored document, its end reasons, and the admissions this node has handed out
(join tokens not yet expired). The service that moves group calls is services/group_calls.py."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

Doc = dict[str, Any]

GROUP = "group"
ACTIVE, ENDED = "active", "ended"
# Why a group call ended: everyone left, its worker was lost with nowhere to move it, or its
# worker drained with nowhere to move it.
END_EMPTY, END_WORKER_LOST, END_NO_WORKER = "empty", "worker_lost", "no_worker"
# Why a call moved to another worker (fastsock_sfu_moves_total{reason}).
MOVE_DRAIN, MOVE_LOST = "drain", "worker_lost"


def group_doc(
    call_id: str, room_id: str, media: str, starter: str, worker_id: str, at: datetime
) -> Doc:
    """A new live group call (store/base.py CallsRepo, group calls)."""
    return {
        "_id": call_id,
        "room_id": room_id,
        "kind": GROUP,
        "media": media,
        "caller_id": starter,  # its timeline entry is sent as the starter
        "callee_id": None,
        "state": ACTIVE,
        "outcome": None,
        "end_reason": None,
        "created_at": at,
        "answered_at": at,
        "ended_at": None,
        "duration_s": 0,
        "worker_id": worker_id,
        "participant_ids": [],
        "present_ids": [],
        "moved_at": None,
    }


class Admissions:
    """Who this node sent to a call (with a join token, or a new one after a move) and when
    that token expires: they count toward the participant cap until they join or it expires,
    keep a call they are about to join from ending as empty, and are not taken out of the call
    by a worker heartbeat that does not list them yet. One per user: a new admission replaces
    the user's last."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._by_user: dict[str, tuple[str, float]] = {}  # user -> (call, expires)

    def add(self, call_id: str, user_id: str) -> None:
        self._by_user[user_id] = (call_id, self.clock() + self.ttl_s)

    def has(self, call_id: str, user_id: str) -> bool:
        entry = self._by_user.get(user_id)
        if entry is None or entry[1] <= self.clock():
            self._by_user.pop(user_id, None)
            return False
        return entry[0] == call_id

    def discard(self, call_id: str, user_id: str) -> bool:
        """Drop the user's admission to this call; whether there was one (unexpired)."""
        had = self.has(call_id, user_id)
        if had:
            del self._by_user[user_id]
        return had

    def call_of(self, user_id: str) -> str | None:
        entry = self._by_user.get(user_id)
        return entry[0] if entry is not None and self.has(entry[0], user_id) else None

    def of_call(self, call_id: str) -> set[str]:
        """Users admitted to the call whose tokens have not expired."""
        return {u for u, (c, _) in list(self._by_user.items()) if c == call_id and self.has(c, u)}

    def forget(self, call_id: str) -> None:
        for user_id in [u for u, (c, _) in self._by_user.items() if c == call_id]:
            del self._by_user[user_id]

    def clear(self) -> None:
        self._by_user.clear()
