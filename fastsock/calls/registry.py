"""The SFU worker registry: workers' entries in the store (so every FastSock node can admit to
any worker), health probes, and the commands waiting for each worker's next reply.

Entries change only by conditional writes: of two nodes sweeping the same silent worker, one
marks it lost and moves its calls. The commands (`evict` a participant, `end` a call) are held
in this node's memory and go out in the reply to the worker's next heartbeat or events post
(in cluster mode every post is handled by the call leader, which holds them: cluster/calls.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from fastsock.calls.admission import (
    UP,
    WorkerInfo,
    choose_worker,
    fresh,
    healthy,
    unavailable_reason,
)
from fastsock.config import Settings
from fastsock.store import Store

Doc = dict[str, Any]
PROBE_TIMEOUT_S = 1.0
MAX_HEALTH_BYTES = 64 * 1024
# What a health probe found: the worker answering as itself; nobody there (connection refused) or
# another worker (restarted at the same URL, without this one's calls); or no answer in time, or
# not a health answer (perhaps the worker is too busy to answer: its heartbeats decide).
ANSWERS, GONE, SILENT = "answers", "gone", "silent"
# A worker whose last heartbeat is older than this many periods has missed one (with slack for a
# late one): with a silent probe, it is lost without waiting for the sweep.
QUIET_PERIODS = 1.5
# Entries of lost workers are kept this long (for operators looking at the store), then pruned.
LOST_KEPT = timedelta(days=1)


@dataclass
class Commands:
    evict: dict[tuple[str, str], None] = field(default_factory=dict)  # (call, user), in order
    end: dict[str, None] = field(default_factory=dict)

    def reply(self) -> Doc:
        return {
            "evict": [{"call_id": c, "user_id": u} for c, u in self.evict],
            "end": list(self.end),
        }


class WorkerRegistry:
    def __init__(self, store: Store, settings: Settings, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.clock = clock
        self.heartbeat_s = settings.sfu_heartbeat_s
        self.missed = settings.sfu_missed_heartbeats
        self.stale_after_s = settings.sfu_heartbeat_s * settings.sfu_missed_heartbeats
        self._commands: dict[str, Commands] = {}
        self._probes: dict[str, asyncio.Future[Doc | None]] = {}

    # --- entries ----------------------------------------------------------------------------

    async def register(self, worker_id: str, body: Doc) -> None:
        at = self.clock()
        await self.store.sfu_workers.upsert(
            {
                "_id": worker_id,
                "url": body["url"],
                "health_url": body["health_url"],
                "version": body["version"],
                "capacity": body["capacity"],
                "state": UP,
                "peers": 0,
                "tracks": 0,
                "rooms": 0,
                "cpu": 0.0,
                "draining": False,
                "pending": 0,
                "registered_at": at,
                "heartbeat_at": at,
            }
        )
        self._commands.pop(worker_id, None)  # a worker registering holds no rooms

    async def heartbeat(self, worker_id: str, body: Doc) -> WorkerInfo | None:
        """Record the worker's load; None when it is not up (lost, removed, never known)."""
        load = {k: body[k] for k in ("capacity", "peers", "tracks", "rooms", "cpu", "draining")}
        doc = await self.store.sfu_workers.heartbeat(worker_id, load, self.clock())
        return None if doc is None else WorkerInfo.from_doc(doc)

    async def get(self, worker_id: str) -> WorkerInfo | None:
        doc = await self.store.sfu_workers.get(worker_id)
        return None if doc is None else WorkerInfo.from_doc(doc)

    async def up(self, worker_id: str) -> WorkerInfo | None:
        """The worker if it is up (a lost or removed worker's posts are refused)."""
        worker = await self.get(worker_id)
        return worker if worker is not None and worker.state == UP else None

    async def workers(self) -> list[WorkerInfo]:
        """Workers that are up, fresh or not."""
        return [WorkerInfo.from_doc(d) for d in await self.store.sfu_workers.live()]

    def is_fresh(self, worker: WorkerInfo) -> bool:
        """Up and heard from within `missed` heartbeats (draining or not)."""
        return fresh(worker, self.clock(), self.stale_after_s)

    def is_quiet(self, worker: WorkerInfo) -> bool:
        """It has missed its latest heartbeat (not yet all that make it stale)."""
        age = (self.clock() - worker.heartbeat_at).total_seconds()
        return age > self.heartbeat_s * QUIET_PERIODS

    def is_healthy(self, worker: WorkerInfo) -> bool:
        """Takes participants: fresh and not draining."""
        return healthy(worker, self.clock(), self.stale_after_s)

    async def choose(
        self, exclude: frozenset[str] = frozenset()
    ) -> tuple[WorkerInfo | None, str | None]:
        """(the worker for a new call, None) or (None, why there is none)."""
        workers, now = await self.workers(), self.clock()
        chosen = choose_worker(workers, now=now, stale_after_s=self.stale_after_s, exclude=exclude)
        if chosen is not None:
            return chosen, None
        return None, unavailable_reason(
            workers, now=now, stale_after_s=self.stale_after_s, exclude=exclude
        )

    async def reserve(self, worker_id: str) -> None:
        """One more participant sent to the worker (counted until its next heartbeat)."""
        await self.store.sfu_workers.reserve(worker_id)

    async def sweep(self) -> list[str]:
        """Mark lost the workers silent for `missed` heartbeats; the ids this node marked."""
        cutoff = self.clock() - timedelta(seconds=self.stale_after_s)
        lost, up = [], set()
        for worker in await self.workers():
            if worker.heartbeat_at < cutoff and await self.store.sfu_workers.mark_lost(
                worker.id, cutoff
            ):
                lost.append(worker.id)
            else:
                up.add(worker.id)
        # Commands for workers that are gone would never be fetched.
        for worker_id in self._commands.keys() - up:
            del self._commands[worker_id]
        await self.store.sfu_workers.prune(self.clock() - LOST_KEPT)
        return lost

    async def mark_lost(self, worker_id: str) -> bool:
        """Mark the worker lost now, however recent its heartbeat (a failed probe); True for
        the one caller that did."""
        lost = await self.store.sfu_workers.mark_lost(
            worker_id, self.clock() + timedelta(seconds=1)
        )
        if lost:
            self._commands.pop(worker_id, None)
        return lost

    async def remove(self, worker_id: str) -> None:
        await self.store.sfu_workers.remove(worker_id)
        self._commands.pop(worker_id, None)

    # --- health probes ----------------------------------------------------------------------

    async def probe(self, worker: WorkerInfo) -> str:
        """ANSWERS, GONE or SILENT: whether the worker answers its health URL as itself (its
        `worker_id`); one probe in flight per worker. A worker that gave no URL cannot be
        probed: its heartbeats decide."""
        if worker.health_url is None:
            return ANSWERS
        running = self._probes.get(worker.id)
        if running is None:
            running = asyncio.ensure_future(health(worker.health_url, PROBE_TIMEOUT_S))
            self._probes[worker.id] = running
            running.add_done_callback(lambda _: self._probes.pop(worker.id, None))
        try:
            answer = await asyncio.shield(running)
        except ConnectionRefusedError:
            return GONE
        if answer is None:
            return SILENT
        return ANSWERS if answer.get("worker_id") == worker.id else GONE

    # --- commands for the workers -----------------------------------------------------------

    def evict(self, worker_id: str, call_id: str, user_id: str) -> None:
        self._commands.setdefault(worker_id, Commands()).evict[(call_id, user_id)] = None

    def evicting(self, worker_id: str, call_id: str, user_id: str) -> bool:
        commands = self._commands.get(worker_id)
        return commands is not None and (call_id, user_id) in commands.evict

    def forgive(self, call_id: str, user_id: str) -> None:
        """Drop the evicts waiting for the user in the call (admitted to it again: the evict
        would hit their new connection)."""
        for commands in self._commands.values():
            commands.evict.pop((call_id, user_id), None)

    def end(self, worker_id: str, call_id: str) -> None:
        self._commands.setdefault(worker_id, Commands()).end[call_id] = None

    def commands_for(self, worker_id: str) -> Doc:
        """The reply to a worker's post: what it must do, each command sent once."""
        return self._commands.pop(worker_id, Commands()).reply()

    def forget_commands(self) -> None:
        """Drop every waiting command, as a restart would (cluster mode: this node no longer
        takes the workers' posts)."""
        self._commands.clear()


async def health(url: str, timeout: float) -> Doc | None:
    """GET `url` (http or https): the JSON object of a 200 answer within `timeout` seconds,
    None for anything else but ConnectionRefusedError (nothing listens there): raised.
    HTTP/1.0, so the body is plain bytes up to the close."""
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    answer = b""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                parts.hostname, parts.port or (443 if secure else 80), ssl=secure or None
            )
            try:
                writer.write(f"GET {path} HTTP/1.0\r\nHost: {parts.netloc}\r\n\r\n".encode("ascii"))
                while len(answer) < MAX_HEALTH_BYTES and (
                    chunk := await reader.read(MAX_HEALTH_BYTES - len(answer))
                ):
                    answer += chunk
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except ConnectionRefusedError:
        raise
    except (OSError, TimeoutError, ValueError):
        return None
    head, _, body = answer.partition(b"\r\n\r\n")
    if head.split(b"\r\n", 1)[0].split(b" ")[1:2] != [b"200"]:
        return None
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None
