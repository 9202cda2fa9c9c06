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
        """End the user's indicator in the room, if there is one (also on send)."""
        indicator = self._active.pop((room_id, user_id), None)
        if indicator is not None:
            indicator.expiry.cancel()
            if indicator.relayed:
                await self._relay(room_id, user_id, False)

    async def stop_all(self, user_id: str) -> None:
        """The user's last socket closed."""
        for room_id, uid in [k for k in self._active if k[1] == user_id]:
            await self.stop(uid, room_id)

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
