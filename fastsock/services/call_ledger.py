"""The ledger of live 1:1 calls (cluster mode): the call leader notes its calls there for the
next leader, which adopts them (services/direct_calls.py, `adopt`; kept in Redis by
cluster/calls.py). This module holds the contract and what makes a note adoptable."""

from __future__ import annotations

from typing import Protocol

from fastsock.services.call import ACTIVE, ENDED, OUTCOME_EVENTS, RINGING, Call


class Ledger(Protocol):
    """Where live calls are noted besides this node's memory. Each note is ordered before the
    events that follow it, so whatever a party heard of a call, the ledger has too; an ended
    call stays noted until its record is stored."""

    def keep(self, call: Call) -> None: ...

    def drop(self, call: Call) -> None: ...

    def leads(self) -> bool:
        """Whether this node still leads the calls (a stall may have outlasted its lease)."""
        ...

    def elsewhere(self, device: str) -> bool:
        """Whether the device's session is held by another node (it outlives this one)."""
        ...


def concluded(call: Call) -> bool:
    """A note of a call that ended, saying how: its end is told and stored again."""
    return call.state == ENDED and call.outcome in OUTCOME_EVENTS and call.ended_at is not None


def resumable(call: Call) -> bool:
    """A note of a live call that can go on as it stands: a ringing call its parties have
    heard of (`announced`), with its deadline, or an active call with both devices."""
    if call.state == RINGING:
        return (
            call.announced.is_set() and call.callee_device is None and call.ring_until is not None
        )
    return call.state == ACTIVE and call.callee_device is not None and call.answered_at is not None
