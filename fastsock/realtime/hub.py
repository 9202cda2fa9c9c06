"""The local hub: which sockets belong to which user on this process, and delivery to them.

An event is serialised once; each recipient socket only prefixes its own `seq` (and the `ref`
of the request it answers). Writes never wait for a socket to drain, so one slow or dead
socket cannot delay the others; a socket that falls too far behind is closed instead and its
client reconnects."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Coroutine, Iterable
from typing import Any, Protocol

from fastsock.metrics import Metrics
from fastsock.services.events import Origin, Ref


class Connection(Protocol):
    id: str
    user_id: str

    def send_frame(self, payload: str, ref: Ref | None) -> None:
        """Queue one encoded event (JSON object text without `seq`) for this socket."""

    def close(self, code: int | None = None, reason: str | None = None) -> None: ...


def encode(type_: str, data: dict[str, Any]) -> str:
    return json.dumps({"type": type_, "data": data}, separators=(",", ":"), ensure_ascii=False)


class Hub:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._by_user: dict[str, dict[str, Connection]] = {}
        self.closing = False  # set at shutdown: no presence churn while sockets are closed
        self._tasks: set[asyncio.Task[None]] = set()

    def add(self, conn: Connection) -> bool:
        """Register a socket; True if it is the user's first one here (they came online)."""
        conns = self._by_user.setdefault(conn.user_id, {})
        conns[conn.id] = conn
        self.metrics.ws_connections.inc()
        return len(conns) == 1

    def remove(self, conn: Connection) -> bool:
        """Unregister a socket; True if it was the user's last one (they went offline)."""
        conns = self._by_user.get(conn.user_id)
        if not conns or conns.pop(conn.id, None) is None:
            return False
        self.metrics.ws_connections.dec()
        if conns:
            return False
        del self._by_user[conn.user_id]
        return True

    def spawn(self, coro: Coroutine[None, None, None]) -> None:
        """Run follow-up work (e.g. presence) in the background; shutdown waits for it."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait_tasks(self, timeout: float) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    def close_all(self, code: int, reason: str) -> None:
        self.closing = True
        for conns in list(self._by_user.values()):
            for conn in list(conns.values()):
                conn.close(code, reason)

    def is_online(self, user_id: str) -> bool:
        return user_id in self._by_user

    async def publish(
        self,
        user_ids: Iterable[str],
        type_: str,
        data: dict[str, Any],
        *,
        origin: Origin | None = None,
    ) -> None:
        started = time.perf_counter()
        payload: str | None = None
        delivered = 0
        for user_id in set(user_ids):
            conns = self._by_user.get(user_id)
            if not conns:
                continue
            if payload is None:
                payload = encode(type_, data)
            for conn in list(conns.values()):
                ref = origin.ref if origin and origin.connection_id == conn.id else None
                conn.send_frame(payload, ref)
                delivered += 1
        if delivered:
            self.metrics.events_delivered.labels(type_).inc(delivered)
            self.metrics.event_delivery.observe(time.perf_counter() - started)
