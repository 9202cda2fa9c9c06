"""Typing indicators.

A user's `typing {room_id, active: true}` is relayed to the room's other members at most once
per RELAY_INTERVAL_S; the indicator expires EXPIRY_S after its last refresh, and ends at once
when the user sends a message in the room or closes their last socket. The state lives in
this process: an indicator is short-lived, and losing it on a restart costs nothing.

Cluster mode: an indicator lives on the node its `typing` frames reach, but the send or the
last socket that ends it may be on another node. So each node notes which indicators the
others relayed as started (the `typing` events it sees on the bus, `seen_elsewhere`), and
asks the node holding one to end it (`ask_stop`) only when it has one to end: no bus message
for a send or a close that ends nothing. When a node dies, the node that buries it relays the
stop of the indicators it held (`holder_gone`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastsock.services.rooms import Rooms
from fastsock.services.schemas import validate

Doc = dict[str, Any]
log = logging.getLogger("fastsock.typing")

RELAY_INTERVAL_S = 2.0
EXPIRY_S = 6.0
# A live indicator is relayed as started again at least this often (each refresh relays once
# RELAY_INTERVAL_S has passed, and it lives EXPIRY_S past its last one). Cluster mode: one not
# relayed for longer ended where it was held, even if its stop never passed by (node stopped).
RELAYED_AGAIN_S = EXPIRY_S + RELAY_INTERVAL_S


@dataclass(slots=True)
class _Indicator:
    expiry: asyncio.TimerHandle
    relayed: bool  # whether the others were told it started (so they need the stop)


class Typing:
    def __init__(self, rooms: Rooms) -> None:
        self.rooms = rooms
        self._active: dict[tuple[str, str], _Indicator] = {}
        # When each (room, user) last had `active: true` relayed, kept for RELAY_INTERVAL_S
        # after its indicator ends, so a quick stop/start cannot force extra relays.
        self._relayed_at: dict[tuple[str, str], float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Cluster mode: (room, user) -> the node holding an indicator it relayed as started,
        # and when; `ask_stop(node, room_id, user_id)` asks that node to end it (stop_here).
        self._elsewhere: dict[tuple[str, str], tuple[str, float]] = {}
        self.ask_stop: Callable[[str, str, str], None] | None = None

    async def update(self, user_id: str, data: Doc) -> None:
        data = validate("typing", data)
        room_id = data["room_id"]
        await self.rooms.throttles.check("typing", user_id)
        await self.rooms.require_member(user_id, room_id)
        key = (room_id, user_id)
        if not data["active"]:
            await self.stop(user_id, room_id)
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        indicator = self._active.get(key)
        if indicator is not None:
            indicator.expiry.cancel()  # a refresh pushes the expiry back
            indicator.expiry = loop.call_later(EXPIRY_S, self._expire, key)
        else:
            indicator = self._active[key] = _Indicator(
                loop.call_later(EXPIRY_S, self._expire, key), relayed=False
            )
        if now - self._relayed_at.get(key, -RELAY_INTERVAL_S) >= RELAY_INTERVAL_S:
            self._remember_relay(key, now)
            indicator.relayed = True
            await self._relay(room_id, user_id, True)

    async def stop(self, user_id: str, room_id: str) -> None:
        """End the user's indicator in the room, if there is one, on any node (also on send)."""
        elsewhere = self._elsewhere.get((room_id, user_id))
        if elsewhere is not None and self.ask_stop is not None:
            holder, seen_at = elsewhere
            # Kept until the holder's stop passes by (or it dies: holder_gone relays it).
            if asyncio.get_running_loop().time() - seen_at <= RELAYED_AGAIN_S:
                self.ask_stop(holder, room_id, user_id)
        await self.stop_here(user_id, room_id)

    async def stop_here(self, user_id: str, room_id: str) -> None:
        """End the user's indicator in the room if this node holds it."""
        indicator = self._active.pop((room_id, user_id), None)
        if indicator is not None:
            indicator.expiry.cancel()
            if indicator.relayed:
                await self._relay(room_id, user_id, False)

    async def stop_all(self, user_id: str) -> None:
        """The user's last socket closed (on every node)."""
        keys = {k for k in [*self._active, *self._elsewhere] if k[1] == user_id}
        for room_id, uid in sorted(keys):
            await self.stop(uid, room_id)

    # --- cluster mode ---------------------------------------------------------------------

    def seen_elsewhere(self, node: str, data: Doc) -> None:
        """Another node relayed a `typing` event."""
        key = (data["room_id"], data["user_id"])
        if not data["active"]:
            self._elsewhere.pop(key, None)
            return
        now = asyncio.get_running_loop().time()
        if len(self._elsewhere) > 10_000:  # forget those that ended unseen
            cutoff = now - RELAYED_AGAIN_S
            self._elsewhere = {k: v for k, v in self._elsewhere.items() if v[1] > cutoff}
        self._elsewhere[key] = (node, now)

    async def holder_gone(self, node: str, *, relay: bool) -> None:
        """`node` died. The node that buried it (`relay`) relays the stop of the indicators
        it held: nobody else will."""
        for key in [k for k, (holder, _) in self._elsewhere.items() if holder == node]:
            del self._elsewhere[key]
            if relay:
                await self._relay(*key, active=False)

    def forget_elsewhere(self) -> None:
        """This node may have missed bus messages: what it learnt from them no longer holds."""
        self._elsewhere.clear()

    def close(self) -> None:
        """Shutdown: no timer fires after the store is gone."""
        for indicator in self._active.values():
            indicator.expiry.cancel()
        self._active.clear()
        for task in self._tasks:
            task.cancel()

    def _remember_relay(self, key: tuple[str, str], now: float) -> None:
        if len(self._relayed_at) > 10_000:  # forget what no longer throttles anything
            cutoff = now - RELAY_INTERVAL_S
            self._relayed_at = {k: t for k, t in self._relayed_at.items() if t > cutoff}
        self._relayed_at[key] = now

    def _expire(self, key: tuple[str, str]) -> None:
        indicator = self._active.pop(key, None)
        if indicator is not None and indicator.relayed:
            task = asyncio.ensure_future(self._relay(*key, active=False))
            self._tasks.add(task)
            task.add_done_callback(self._expired)

    def _expired(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("typing_expiry_failed", exc_info=task.exception())

    async def _relay(self, room_id: str, user_id: str, active: bool) -> None:
        event = {"room_id": room_id, "user_id": user_id, "active": active}
        await self.rooms.publish(room_id, "typing", event, exclude=user_id)
