"""Typing indicators.

A user's `typing {room_id, active: true}` is relayed to the room's other members at most once
per RELAY_INTERVAL_S; the indicator expires EXPIRY_S after its last refresh, and ends at once
when the user sends a message in the room or closes their last socket. The state lives in
this process: an indicator is short-lived, and losing it on a restart costs nothing."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from fastsock.services.rooms import Rooms
from fastsock.services.schemas import validate

Doc = dict[str, Any]
log = logging.getLogger("fastsock.typing")

RELAY_INTERVAL_S = 2.0
EXPIRY_S = 6.0


@dataclass(slots=True)
class _Indicator:
    relayed_at: float
    expiry: asyncio.TimerHandle


class Typing:
    def __init__(self, rooms: Rooms) -> None:
        self.rooms = rooms
        self._active: dict[tuple[str, str], _Indicator] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def update(self, user_id: str, data: Doc) -> None:
        data = validate("typing", data)
        room_id = data["room_id"]
        self.rooms.throttles.check("typing", user_id)
        await self.rooms.require_member(user_id, room_id)
        key = (room_id, user_id)
        if not data["active"]:
            await self.stop(user_id, room_id)
            return
        loop = asyncio.get_running_loop()
        indicator = self._active.get(key)
        if indicator is not None and loop.time() - indicator.relayed_at < RELAY_INTERVAL_S:
            indicator.expiry.cancel()  # a refresh: push the expiry back, relay nothing
            indicator.expiry = loop.call_later(EXPIRY_S, self._expire, key)
            return
        if indicator is not None:
            indicator.expiry.cancel()
        self._active[key] = _Indicator(loop.time(), loop.call_later(EXPIRY_S, self._expire, key))
        await self._relay(room_id, user_id, True)

    async def stop(self, user_id: str, room_id: str) -> None:
        """End the user's indicator in the room, if there is one (also on send)."""
        indicator = self._active.pop((room_id, user_id), None)
        if indicator is not None:
            indicator.expiry.cancel()
            await self._relay(room_id, user_id, False)

    async def stop_all(self, user_id: str) -> None:
        """The user's last socket closed."""
        for room_id, uid in [k for k in self._active if k[1] == user_id]:
            await self.stop(uid, room_id)

    def _expire(self, key: tuple[str, str]) -> None:
        if self._active.pop(key, None) is not None:
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
