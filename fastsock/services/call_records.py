"""What every kind of call shares once it is under way: its background work and timers, its
stored record, its timeline entry and the count and log line of how it ended (docs/calls.md).

The state machines (services/direct_calls.py for 1:1 calls) decide; this module writes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from fastsock.metrics import Metrics
from fastsock.services.messages import Messages
from fastsock.services.rooms import Rooms
from fastsock.store import Store

Doc = dict[str, Any]
log = logging.getLogger("fastsock.calls")


class CallWork:
    """Background work of the call services: failures are logged, shutdown waits for it."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def run(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(self.logged(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def later(
        self, delay: float, work: Callable[[], Coroutine[None, None, None]]
    ) -> asyncio.TimerHandle:
        """Run `work()` after `delay` seconds unless the handle is cancelled first."""
        return asyncio.get_running_loop().call_later(delay, lambda: self.run(work()))

    async def wait(self, timeout: float) -> None:
        """Wait (at most `timeout` seconds) for the work under way to finish."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    @staticmethod
    async def logged(work: Awaitable[None]) -> None:
        try:
            await work
        except Exception:
            log.exception("call_work_failed")


class Saved(Protocol):
    """A call held in memory whose record is written in order, one write after the other."""

    id: str
    saving: asyncio.Future[None] | None  # the last database write, chained

    def doc(self) -> Doc: ...


class CallRecords:
    def __init__(self, store: Store, rooms: Rooms, messages: Messages, metrics: Metrics) -> None:
        self.store = store
        self.rooms = rooms
        self.messages = messages
        self.metrics = metrics

    def save_chained(self, call: Saved, *, insert: bool = False) -> asyncio.Future[None]:
        """Write the call's current state after any earlier write for it has finished."""
        previous, doc = call.saving, call.doc()

        async def write() -> None:
            if previous is not None:
                with contextlib.suppress(Exception):
                    await previous
            if insert:
                await self.store.calls.insert(doc)
            else:
                del doc["_id"]
                await self.store.calls.update(call.id, doc)

        call.saving = asyncio.ensure_future(write())
        return call.saving

    async def post_entry(self, view: Doc, *, seen_by: str | None = None) -> None:
        """Post the call's entry in its room's timeline (sent by `caller_id`). `seen_by`: a
        user for whom the entry is not news (they took part, or chose not to); their read
        pointer moves onto it, but only if they had read everything before it, so that no
        message they have not seen gets marked as read."""
        room_id = view["room_id"]
        reader = seen_by if seen_by and await self._caught_up(room_id, seen_by) else None
        message = await self.messages.post_call(view)
        if reader is not None:
            await self.rooms.advance_read(reader, room_id, message["id"])

    async def _caught_up(self, room_id: str, user_id: str) -> bool:
        membership = await self.store.memberships.get(room_id, user_id)
        return membership is not None and not await self.store.messages.count_unread(
            room_id, user_id, membership["last_read_message_id"]
        )

    def count(self, view: Doc) -> None:
        """An ended call: the outcome metric and the `call_ended` log line."""
        self.metrics.calls.labels(view["outcome"]).inc()
        # Ids, outcome and timing only: never SDP or candidates (they hold users' addresses).
        fields = {
            "call_id": view["id"],
            "room_id": view["room_id"],
            "media": view["media"],
            "outcome": view["outcome"],
            "reason": view["end_reason"],
            "duration_s": view["duration_s"],
        }
        log.info("call_ended", extra={"fields": fields})
