"""Group-call test support: FastSock servers with group calls on, and fake SFU workers with no
media, just the worker's side of the internal API over real HTTP (docs/calls.md, "Group
calls"), with control tokens minted here and a /healthz that answers until the worker "dies".
A participant "joins" when the test hands the worker the `call.sfu` a member received: the
worker checks its join token as a real one would and reports `peer_joined`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application, RequestHandler

from fastsock.app import Server
from fastsock.calls.registry import PROBE_TIMEOUT_S
from fastsock.calls.sfu_tokens import JoinClaims, issue_control, verify_join
from fastsock.store.ids import new_id
from tests.conftest import SFU_SECRET, make_settings
from tests.support import Api, Response, Socket, User

WAIT_S = 20.0  # bound on waits for the sweeper (generous: a loaded 2-core machine)


class GroupServers:
    """FastSock servers with group calls on (settings overridden per server), on the test's
    database (stopped by the fixture that made it, or by the test: a restart)."""

    def __init__(self, db_uri: str | None, tmp_path: Path) -> None:
        self.db_uri = db_uri
        self.tmp_path = tmp_path
        self.running: list[Server] = []

    async def start(self, **overrides: Any) -> Server:
        values: dict[str, Any] = {
            "sfu_secret": SFU_SECRET,
            "sfu_heartbeat_s": 5.0,  # tests that do not look at failover never miss one
            "call_empty_grace_s": 30.0,
        }
        srv = Server(make_settings(self.db_uri, self.tmp_path, **(values | overrides)))
        await srv.start()
        self.running.append(srv)
        return srv

    async def stop(self, srv: Server) -> None:
        self.running.remove(srv)
        await srv.stop()

    async def stop_all(self) -> None:
        while self.running:
            await self.stop(self.running[-1])


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not await check():
        assert time.monotonic() < deadline, f"not within {WAIT_S}s: {what}"
        await asyncio.sleep(0.05)


async def join(ws: Socket, room: str, **extra: Any) -> dict[str, Any]:
    """`call.join`; the reply frame (call.sfu, call.unavailable or error)."""
    return await ws.request("call.join", {"room_id": room, **extra})


async def joined(ws: Socket, room: str, worker: FakeWorker) -> dict[str, Any]:
    """Join through FastSock and connect to the worker; the call.sfu data."""
    reply = await join(ws, room)
    assert reply["type"] == "call.sfu", reply
    await worker.admit(reply["data"])
    return reply["data"]


async def active_call(api: Api, user: User, room: str) -> dict[str, Any] | None:
    r = await api.get(f"/rooms/{room}", user)
    assert r.status == 200, r.body
    return r.body["active_call"]


async def metric(api: Api, line: str) -> float | None:
    r = await api.get("/metrics")
    for text in r.body.splitlines():
        if text.startswith(line + " "):
            return float(text.split()[-1])
    return None


class _Health(RequestHandler):
    def initialize(self, worker: FakeWorker) -> None:
        self.worker = worker

    async def get(self) -> None:
        if self.worker.hung:  # too busy to answer in time: FastSock's probe gives up first
            await asyncio.sleep(PROBE_TIMEOUT_S * 3)
        self.write({"ok": True, "worker_id": self.worker.id})  # as sfu/app.py: who answers


@dataclass
class FakeWorker:
    api: Api
    capacity: int = 10
    secret: str = SFU_SECRET
    id: str = field(default_factory=new_id)
    calls: dict[str, set[str]] = field(default_factory=dict)  # call -> users connected
    rooms: dict[str, str] = field(default_factory=dict)  # call -> room
    draining: bool = False
    hung: bool = False  # /healthz accepts connections but never answers
    beat_at: float = 0.0  # time.time() after FastSock took its latest heartbeat
    extra_peers: int = 0  # load from elsewhere (rooms the test does not look at)
    evicted: list[tuple[str, str]] = field(default_factory=list)  # commands received
    ended: list[str] = field(default_factory=list)
    heartbeat_s: float = 1.0
    _health: HTTPServer | None = None
    _port: int = 0
    _beating: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self._port}/ws"

    @property
    def peers(self) -> int:
        return self.extra_peers + sum(len(users) for users in self.calls.values())

    async def start(self, *, beat: bool = True) -> FakeWorker:
        """Serve /healthz, register, and heartbeat as FastSock says (unless `beat` is off)."""
        sockets = bind_sockets(0, "127.0.0.1")
        self._port = sockets[0].getsockname()[1]
        self._health = HTTPServer(Application([("/healthz", _Health, {"worker": self})]))
        self._health.add_sockets(sockets)
        r = await self.register()
        assert r.status == 200, r.body
        self.beat_at = time.time()
        self.heartbeat_s = r.body["heartbeat_s"]
        if beat:
            self._beating = asyncio.ensure_future(self._beat())
        return self

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            with contextlib.suppress(Exception):  # a test may have stopped FastSock meanwhile
                await self.heartbeat()

    async def stop_beating(self) -> None:
        if self._beating is not None:
            self._beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beating
            self._beating = None

    async def die(self) -> None:
        """Like kill -9: no more heartbeats, and /healthz stops answering."""
        await self.stop_beating()
        if self._health is not None:
            self._health.stop()
            self._health = None

    # --- the internal API ---------------------------------------------------------------------

    def control_token(self) -> str:
        return issue_control(self.secret, self.id, time.time())

    async def post(self, what: str, body: Any = None, *, method: str = "POST") -> Response:
        path = f"/internal/sfu/workers/{self.id}" + (f"/{what}" if what else "")
        r = await self.api.request(method, path, body, token=self.control_token())
        if r.status == 200 and isinstance(r.body, dict) and "evict" in r.body:
            self._apply(r.body)
        return r

    async def register(self) -> Response:
        return await self.post(
            "register",
            {
                "url": self.url,
                "health_url": f"http://127.0.0.1:{self._port}/healthz",
                "capacity": self.capacity,
                "version": "1",
            },
        )

    def heartbeat_body(self) -> dict[str, Any]:
        return {
            "peers": self.peers,
            "tracks": 0,
            "rooms": len(self.calls),
            "cpu": 0.01,
            "capacity": self.capacity,
            "draining": self.draining,
            "calls": [
                {"call_id": c, "room_id": self.rooms[c], "user_ids": sorted(users)}
                for c, users in self.calls.items()
            ],
        }

    async def heartbeat(self) -> Response:
        r = await self.post("heartbeat", self.heartbeat_body())
        if r.status == 200:
            self.beat_at = time.time()
        return r

    async def event(
        self, type_: str, call_id: str, user_id: str, reason: str | None = None
    ) -> Response:
        event = {"type": type_, "call_id": call_id, "user_id": user_id}
        if reason is not None:
            event["reason"] = reason
        r = await self.post("events", {"events": [event]})
        assert r.status == 200, r.body
        return r

    async def deregister(self) -> Response:
        await self.stop_beating()
        return await self.post("", method="DELETE")

    # --- participants -------------------------------------------------------------------------

    async def admit(self, sfu: dict[str, Any]) -> JoinClaims:
        """A client arrives with the `call.sfu` (or `call.sfu_moved`) data it was given."""
        assert sfu["worker_url"] == self.url, (sfu["worker_url"], self.url)
        claims = verify_join(self.secret, sfu["token"], worker_id=self.id, now=time.time())
        assert (claims.call_id, claims.room_id) == (sfu["call_id"], sfu["room_id"])
        self.calls.setdefault(claims.call_id, set()).add(claims.user_id)
        self.rooms[claims.call_id] = claims.room_id
        await self.event("peer_joined", claims.call_id, claims.user_id)
        return claims

    async def drop(self, call_id: str, user_id: str, reason: str = "leave") -> Response:
        self.calls.get(call_id, set()).discard(user_id)
        return await self.event("peer_left", call_id, user_id, reason)

    def _apply(self, commands: dict[str, Any]) -> None:
        for evict in commands["evict"]:
            self.evicted.append((evict["call_id"], evict["user_id"]))
            self.calls.get(evict["call_id"], set()).discard(evict["user_id"])
        for call_id in commands["end"]:
            self.ended.append(call_id)
            self.calls.pop(call_id, None)
