"""Fixtures for SFU worker tests: a stand-in for FastSock's internal worker API, real worker
processes, and ICE on loopback for the test's own aiortc peers.

`StubControl` answers the worker routes of docs/calls.md ("Worker registry") the way FastSock
does, checks each request's control token with fastsock.calls.sfu_tokens.verify_control, and
records what workers sent; a test queues commands (`evict`, `end`) or makes it forget a worker
(404 unknown_worker). Tests through FastSock's own control plane use its server instead."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application, RequestHandler

from fastsock.calls.sfu_tokens import TokenRefused, issue_join, verify_control
from tests.sfu.media import loopback_ice
from tests.sfu.workers import SfuWorker

SFU_SECRET = "sfu-test-secret-" + "s" * 40
WAIT_S = 20.0  # bound on waits for something a worker does (a failure detector, not a timer)


class StubControl:
    def __init__(self, secret: str = SFU_SECRET, heartbeat_s: float = 0.3, port: int = 0) -> None:
        self.secret = secret
        self.heartbeat_s = heartbeat_s
        self.registrations: list[tuple[str, dict[str, Any]]] = []
        self.heartbeats: dict[str, list[dict[str, Any]]] = {}
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.deleted: list[str] = []
        self.refused: list[int] = []  # statuses of requests refused for their token
        self.commands: dict[str, dict[str, list[Any]]] = {}  # sent with the next reply
        self.forgotten: set[str] = set()  # answered 404 unknown_worker once
        self.port = port
        self._server: HTTPServer | None = None
        self._changed = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> StubControl:
        route = r"/internal/sfu/workers/([0-9a-f]{24})(/\w+)?"
        app = Application([(route, _WorkerRoute, {"stub": self})])
        self._server = HTTPServer(app)
        [sock] = bind_sockets(self.port, "127.0.0.1")
        self.port = sock.getsockname()[1]
        self._server.add_sockets([sock])
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    # --- what tests do ----------------------------------------------------------------------

    def evict(self, worker_id: str, call_id: str, user_id: str) -> None:
        self._queue(worker_id)["evict"].append({"call_id": call_id, "user_id": user_id})

    def end(self, worker_id: str, call_id: str) -> None:
        self._queue(worker_id)["end"].append(call_id)

    def forget(self, worker_id: str) -> None:
        self.forgotten.add(worker_id)

    def token(
        self, worker_id: str, user_id: str, call_id: str, room_id: str = "r1", **kw: Any
    ) -> str:
        """A join token as FastSock's `call.sfu` hands out."""
        kw.setdefault("now", time.time())
        return issue_join(
            kw.pop("secret", self.secret),
            user_id=user_id,
            room_id=room_id,
            call_id=call_id,
            worker_id=worker_id,
            **kw,
        )

    def events_of(self, worker_id: str) -> list[dict[str, Any]]:
        return [event for wid, event in self.events if wid == worker_id]

    def last_heartbeat(self, worker_id: str) -> dict[str, Any]:
        return (self.heartbeats.get(worker_id) or [{}])[-1]

    async def wait_for(self, condition: Callable[[], object], timeout: float = WAIT_S) -> None:
        async def until() -> None:
            while not condition():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(until(), timeout)

    # --- what the routes do -----------------------------------------------------------------

    def _queue(self, worker_id: str) -> dict[str, list[Any]]:
        return self.commands.setdefault(worker_id, {"evict": [], "end": []})

    def _take(self, worker_id: str) -> dict[str, list[Any]]:
        return self.commands.pop(worker_id, None) or {"evict": [], "end": []}

    def _record(self) -> None:
        self._changed.set()


class _WorkerRoute(RequestHandler):
    def initialize(self, stub: StubControl) -> None:
        self.stub = stub

    def prepare(self) -> None:
        scheme, _, token = (self.request.headers.get("Authorization") or "").partition(" ")
        try:
            if scheme != "Bearer":
                raise TokenRefused("invalid")
            subject = verify_control(self.stub.secret, token, time.time())
        except TokenRefused:
            self._refuse(401, "unauthenticated")
            return
        if subject != self.path_args[0]:
            self._refuse(403, "forbidden")

    def _refuse(self, status: int, code: str) -> None:
        self.stub.refused.append(status)
        self.stub._record()
        self.set_status(status)
        self.finish({"error": {"code": code, "message": code}})

    def post(self, worker_id: str, action: str | None) -> None:
        stub = self.stub
        body = json.loads(self.request.body)
        if action == "/register":
            stub.registrations.append((worker_id, body))
            stub.forgotten.discard(worker_id)
            stub._record()
            self.finish(
                {"heartbeat_s": stub.heartbeat_s, "missed_heartbeats": 3, "token_ttl_s": 60}
            )
            return
        if worker_id in stub.forgotten or worker_id not in {w for w, _ in stub.registrations}:
            self.set_status(404)
            self.finish({"error": {"code": "unknown_worker", "message": "unknown worker"}})
            return
        if action == "/heartbeat":
            stub.heartbeats.setdefault(worker_id, []).append(body)
        elif action == "/events":
            stub.events.extend((worker_id, event) for event in body["events"])
        else:
            self.send_error(404)
            return
        stub._record()
        self.finish(stub._take(worker_id))

    def delete(self, worker_id: str, action: str | None) -> None:
        self.stub.deleted.append(worker_id)
        self.stub._record()
        self.set_status(204)
        self.finish()


@pytest.fixture(scope="module")
async def control() -> AsyncIterator[StubControl]:
    stub = await StubControl().start()
    yield stub
    await stub.stop()


@pytest.fixture(scope="module")
async def worker(control: StubControl) -> AsyncIterator[SfuWorker]:
    """One worker shared by a module's tests (each test uses calls of its own)."""
    async with SfuWorker(control.url, SFU_SECRET) as sfu:
        yield sfu


@pytest.fixture
def client_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test's own aiortc peers gather candidates on 127.0.0.1 (where workers listen)."""
    loopback_ice(monkeypatch)
