"""The worker's side of FastSock's internal API (docs/calls.md, "Worker registry").

The worker registers (retrying until FastSock answers), then heartbeats every `heartbeat_s`
(FastSock's register reply) with its load and the calls it hosts, and reports peers joining
and leaving as batched events. Both replies carry commands: evict a participant, end a call.
A 404 means FastSock no longer knows this worker (it was taken out of rotation and its calls
moved): the worker drops every call and registers again. Every request carries a fresh
control token signed with the shared secret."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from fastsock.calls.sfu_tokens import MAX_JOIN_TTL_S, issue_control
from sfu.config import SfuSettings

log = logging.getLogger("sfu.control")

REQUEST_TIMEOUT_S = 5.0
RETRY_FIRST_S, RETRY_MAX_S = 0.2, 5.0
DEFAULT_HEARTBEAT_S = 2.0
MAX_BATCH = 256  # events per request (FastSock's limit)
MAX_QUEUED = 4096  # beyond this, the oldest events go: heartbeats reconcile who is where both ways


class Lost(Exception):
    """FastSock answered 404: it does not know this worker (any more)."""


class ControlClient:
    def __init__(
        self,
        settings: SfuSettings,
        worker_id: str,
        *,
        version: str,
        status: Callable[[], dict[str, Any]],
        on_commands: Callable[[list[dict[str, str]], list[str]], None],
        on_lost: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.worker_id = worker_id
        self.version = version
        self.status = status
        self.on_commands = on_commands
        self.on_lost = on_lost
        self.base = f"{settings.control_url.rstrip('/')}/internal/sfu/workers/{worker_id}"
        self.http = AsyncHTTPClient()
        self.registered = False
        self.registrations = 0
        self.heartbeat_s = DEFAULT_HEARTBEAT_S
        self.token_ttl_s = float(MAX_JOIN_TTL_S)  # how long FastSock's join tokens live
        self._events: deque[dict[str, str]] = deque(maxlen=MAX_QUEUED)
        self._beat = asyncio.Event()
        self._flushing: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self, flush_timeout_s: float = 2.0) -> None:
        """Send the events still queued (for a while), then stop heartbeating."""
        if self._flushing is not None:
            await asyncio.wait([self._flushing], timeout=flush_timeout_s)
        for task in (self._task, self._flushing):
            if task is not None:
                task.cancel()
        self._task = self._flushing = None

    def beat_now(self) -> None:
        self._beat.set()

    def event(self, type_: str, call_id: str, user_id: str, reason: str | None = None) -> None:
        event = {"type": type_, "call_id": call_id, "user_id": user_id}
        if reason is not None:
            event["reason"] = reason
        self._events.append(event)
        self._flush_soon()

    async def deregister(self) -> bool:
        try:
            await self._request("DELETE", "")
        except Exception as exc:
            log.warning("sfu_deregister_failed", extra={"fields": {"error": _why(exc)}})
            return False
        return True

    # --- loops ------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await self._register()
            self._flush_soon()
            while self.registered:
                try:
                    self._apply(await self._request("POST", "/heartbeat", self.status()))
                except Lost:
                    self._lost()
                except Exception as exc:
                    log.warning("sfu_heartbeat_failed", extra={"fields": {"error": _why(exc)}})
                with contextlib.suppress(TimeoutError):  # the next beat is due
                    await asyncio.wait_for(self._beat.wait(), self.heartbeat_s)
                self._beat.clear()

    async def _register(self) -> None:
        body = {
            "url": self.settings.public_url,
            "health_url": self.settings.probe_url,
            "capacity": self.settings.capacity,
            "version": self.version,
        }
        wait = RETRY_FIRST_S
        while True:
            try:
                reply = await self._request("POST", "/register", body)
            except Exception as exc:
                fields = {"error": _why(exc), "retry_s": wait}
                log.warning("sfu_register_failed", extra={"fields": fields})
            else:
                heartbeat_s = reply.get("heartbeat_s")
                if isinstance(heartbeat_s, int | float) and 0.05 <= heartbeat_s <= 60:
                    self.heartbeat_s = float(heartbeat_s)
                token_ttl_s = reply.get("token_ttl_s")
                if isinstance(token_ttl_s, int | float) and 0 < token_ttl_s <= MAX_JOIN_TTL_S:
                    self.token_ttl_s = float(token_ttl_s)
                self.registered = True
                self.registrations += 1
                fields = {"worker_id": self.worker_id, "heartbeat_s": self.heartbeat_s}
                log.info("sfu_registered", extra={"fields": fields})
                return
            await asyncio.sleep(wait)
            wait = min(wait * 2, RETRY_MAX_S)

    def _flush_soon(self) -> None:
        if self._flushing is None and self.registered and self._events:
            self._flushing = asyncio.ensure_future(self._flush())

    async def _flush(self) -> None:
        wait = RETRY_FIRST_S
        try:
            while self._events and self.registered:
                batch = [self._events.popleft() for _ in range(min(MAX_BATCH, len(self._events)))]
                try:
                    reply = await self._request("POST", "/events", {"events": batch})
                except Lost:
                    self._lost()
                    return
                except Exception as exc:
                    fields = {"error": _why(exc), "retry_s": wait}
                    log.warning("sfu_events_failed", extra={"fields": fields})
                    self._events.extendleft(reversed(batch))
                    await asyncio.sleep(wait)
                    wait = min(wait * 2, RETRY_MAX_S)
                    continue
                wait = RETRY_FIRST_S
                self._apply(reply)
        finally:
            self._flushing = None

    def _lost(self) -> None:
        if not self.registered:
            return
        log.warning("sfu_unknown_to_fastsock")  # drops every call, registers again
        self.registered = False
        self._events.clear()  # about calls FastSock has moved away already
        self.on_lost()
        self._beat.set()

    def _apply(self, reply: dict[str, Any]) -> None:
        evict = [
            e
            for e in reply.get("evict") or ()
            if isinstance(e, dict)
            and isinstance(e.get("call_id"), str)
            and isinstance(e.get("user_id"), str)
        ]
        end = [c for c in reply.get("end") or () if isinstance(c, str)]
        if evict or end:
            self.on_commands(evict, end)

    # --- HTTP -------------------------------------------------------------------------------

    async def _request(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        token = issue_control(self.settings.secret, self.worker_id, time.time())
        request = HTTPRequest(
            self.base + path,
            method=method,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            body=None if body is None else json.dumps(body),
            request_timeout=REQUEST_TIMEOUT_S,
            connect_timeout=REQUEST_TIMEOUT_S,
        )
        response = await self.http.fetch(request, raise_error=False)
        if response.code == 404 and path != "/register":
            raise Lost()
        if response.code >= 300:
            raise RuntimeError(
                f"{method} {path or '/'}: HTTP {response.code} {_error(response.body)}"
            )
        if not response.body:
            return {}
        reply = json.loads(response.body)
        return reply if isinstance(reply, dict) else {}


def _error(body: bytes | None) -> str:
    try:
        error = json.loads(body or b"{}").get("error", {})
        return f"{error.get('code')}: {error.get('message')}"
    except (ValueError, AttributeError):
        return ""


def _why(exc: Exception) -> str:
    return str(exc) or type(exc).__name__
