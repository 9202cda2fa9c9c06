"""One 1:1 call's state: who takes part with which device, where it stands, and the document
it is stored as. The state machine that moves it is services/direct_calls.py."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fastsock.services.views import call_view

Doc = dict[str, Any]

RINGING, ACTIVE, ENDED = "ringing", "active", "ended"
# Unanswered outcomes show as a missed call to the callee and count as unread.
ANSWERED_OR_DECLINED = ("completed", "declined")
# The event that announces each outcome.
OUTCOME_EVENTS = {
    "completed": "call.ended",
    "declined": "call.declined",
    "cancelled": "call.cancelled",
    "missed": "call.missed",
    "busy": "call.busy",
    "unavailable": "call.unavailable",
}


@dataclass(eq=False)
class Call:
    id: str
    room_id: str
    media: str
    caller_id: str
    callee_id: str
    caller_device: str
    created_at: datetime
    callee_device: str | None = None
    state: str = RINGING
    outcome: str | None = None
    end_reason: str | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    ring_until: datetime | None = None  # unanswered by then: missed
    accepted_clock: float | None = None  # monotonic, for the setup-time metric
    ring_timer: asyncio.TimerHandle | None = None
    grace_timers: dict[str, asyncio.TimerHandle] = field(default_factory=dict)
    saving: asyncio.Future[None] | None = None  # the last database write, chained
    # Set once the caller has heard `call.created` (or the call failed to start).
    announced: asyncio.Event = field(default_factory=asyncio.Event)

    def device_of(self, user_id: str) -> str | None:
        return self.caller_device if user_id == self.caller_id else self.callee_device

    def other(self, user_id: str) -> str:
        return self.callee_id if user_id == self.caller_id else self.caller_id

    @property
    def duration_s(self) -> int:
        if self.answered_at is None or self.ended_at is None:
            return 0
        return round((self.ended_at - self.answered_at).total_seconds())

    def doc(self) -> Doc:
        return {
            "_id": self.id,
            "room_id": self.room_id,
            "kind": "direct",
            "media": self.media,
            "caller_id": self.caller_id,
            "callee_id": self.callee_id,
            "state": self.state,
            "outcome": self.outcome,
            "end_reason": self.end_reason,
            "created_at": self.created_at,
            "answered_at": self.answered_at,
            "ended_at": self.ended_at,
            "duration_s": self.duration_s,
        }

    def view(self) -> Doc:
        return call_view(self.doc())


def server_outcome(call: Call) -> str:
    """How a call the server ends ends: an answered call completes, an unanswered one is
    cancelled."""
    return "completed" if call.state == ACTIVE else "cancelled"
