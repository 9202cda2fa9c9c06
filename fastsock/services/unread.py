"""The `unread {room_id, unread_count, mention_count}` event: a member's counts for a room,
computed by the server so clients never count. Sent to the members but the sender after a
countable message is created (not a history line), deleted, or its mentions changed by an edit,
and to a reader whose read pointer moved.

New messages are coalesced per room: each adds its recipients to the room's pending set, and
one flush `window_s` after the first of them tells all of them their counts, read from the
store at flush time (so right whoever sent what meanwhile, on every node: each node flushes
the messages it stored). A burst of N messages costs one grouped query and about one event per
recipient instead of N. One grouped store query answers for all the pending users; users with
the same counts (most of a busy room) get one publish between them."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from fastsock.services.events import EventSink
from fastsock.services.locks import LocalLocks
from fastsock.services.members import MemberCache
from fastsock.store import Store

log = logging.getLogger("fastsock.unread")

Counts = tuple[int, int]  # (unread_count, mention_count)


class UnreadCounts:
    def __init__(self, store: Store, sink: EventSink, members: MemberCache, window_s: float):
        self.store = store
        self.sink = sink
        self.members = members
        self.window_s = window_s
        self._pending: dict[str, set[str]] = {}  # room -> users to tell; members only
        self._timers: dict[str, asyncio.TimerHandle] = {}  # room -> its scheduled flush
        self._flushing: set[asyncio.Task[None]] = set()
        # A room's flushes and readers' counts are queried and published one at a time, so
        # counts read before a read pointer moved are never published after the reader's.
        self._rooms = LocalLocks()
        self._closed = False

    def message_stored(self, room_id: str, recipients: list[str]) -> None:
        """A countable message was stored (or deleted, or its mentions changed): these
        recipients will be told their counts, after the window."""
        if self._closed or not recipients:
            return
        self._pending.setdefault(room_id, set()).update(recipients)
        if room_id not in self._timers:
            loop = asyncio.get_running_loop()
            self._timers[room_id] = loop.call_later(self.window_s, self._start_flush, room_id)

    async def reader(self, room_id: str, user_id: str, *, tell: bool) -> Counts:
        """A reader's counts now (and told to them at once with `tell`). Their pending flush is
        dropped: these counts already include every message stored before them."""
        async with self._rooms.hold(room_id):
            self._pending.get(room_id, set()).discard(user_id)
            counts = await self.store.messages.unread_counts(room_id, [user_id])
            pair = counts.get(user_id, (0, 0))
            if tell:
                await self._publish(room_id, {pair: [user_id]})
        return pair

    async def flush_all(self) -> None:
        """Flush every room with users pending now, without waiting for their windows."""
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        if self._flushing:
            await asyncio.gather(*self._flushing)
        for room_id in list(self._pending):
            await self._flush(room_id)

    async def close(self) -> None:
        """Shutdown, before the event bus and the store close: what is pending is told now
        (users connected to other nodes still hear it); later messages are not coalesced."""
        self._closed = True
        await self.flush_all()

    def _start_flush(self, room_id: str) -> None:
        self._timers.pop(room_id, None)
        task = asyncio.create_task(self._flush(room_id))
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _flush(self, room_id: str) -> None:
        """Tell the room's pending users their counts. Failures are logged: the users' next
        message, read or room list brings their counts."""
        try:
            async with self._rooms.hold(room_id):
                pending = self._pending.pop(room_id, set())
                members = await self.members.of(room_id)  # never tell who left meanwhile
                users = [u for u in pending if u in members]
                if not users:
                    return
                counts = await self.store.messages.unread_counts(room_id, users)
                alike: dict[Counts, list[str]] = defaultdict(list)
                for user_id, pair in counts.items():
                    alike[pair].append(user_id)
                await self._publish(room_id, alike)
        except Exception:
            log.exception("unread_flush_failed", extra={"fields": {"room_id": room_id}})

    async def _publish(self, room_id: str, alike: dict[Counts, list[str]]) -> None:
        for (unread, mentions), users in alike.items():
            event = {"room_id": room_id, "unread_count": unread, "mention_count": mentions}
            await self.sink.publish(users, "unread", event, room_id=room_id)
