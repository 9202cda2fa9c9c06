"""MongoDB going away and coming back: 503 while it is gone, recovery without a restart. (The
embedded SQLite store is a file in the server's own process: it cannot go away like this.)"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fastsock.app import Server
from tests.conftest import make_settings
from tests.mongo_standin import EmbeddedMongo
from tests.support import Api

pytestmark = pytest.mark.mongo_only


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[EmbeddedMongo]:
    mongo = EmbeddedMongo(sqlite_path=tmp_path / "db.sqlite3")
    await mongo.start()
    yield mongo
    await mongo.stop()


@pytest.fixture
async def own_server(db: EmbeddedMongo, tmp_path: Path) -> AsyncIterator[Server]:
    server = Server(make_settings(db.uri_for("outage" + uuid.uuid4().hex[:6]), tmp_path))
    await server.start()
    yield server
    await server.stop()


async def _wait_ready(api: Api, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (await api.get("/readyz")).status == 200:
            return
        await asyncio.sleep(0.2)
    raise AssertionError("server did not become ready again")


async def test_database_down_gives_503_then_recovers(db: EmbeddedMongo, own_server: Server) -> None:
    api = Api(own_server.port)
    alice = await api.register()
    room = await api.group(alice)
    await api.send(alice, room, "before the outage")
    ws = await api.ws(alice)

    await db.stop()
    r = await api.get("/rooms", alice)
    assert r.status == 503 and r.error_code == "unavailable"
    assert r.headers["Retry-After"]
    assert (await api.get("/readyz")).status == 503
    assert (await api.get("/healthz")).status == 200  # the process itself is alive
    r = await api.post(f"/rooms/{room}/messages", {"client_msg_id": "lost?", "text": "x"}, alice)
    assert r.status == 503
    await ws.send("message.send", {"room_id": room, "client_msg_id": "ws1", "text": "x"}, "s1")
    err = await ws.expect("error", timeout=10)
    assert err["code"] == "unavailable" and err["__ref"] == "s1"

    await db.start()  # same port, same file
    await _wait_ready(api)
    history = (await api.get(f"/history/room/{room}", alice)).body["messages"]
    assert [m["text"] for m in history] == ["before the outage"]
    # The refused send can be retried and is stored exactly once.
    await ws.send("message.send", {"room_id": room, "client_msg_id": "ws1", "text": "x"}, "s2")
    ack = await ws.expect("message.ack", lambda f: f.get("ref") == "s2", timeout=10)
    assert ack["message"]["text"] == "x"
    assert len((await api.get(f"/history/room/{room}", alice)).body["messages"]) == 2


async def test_crashed_embedded_database_is_restarted(
    db: EmbeddedMongo, own_server: Server
) -> None:
    api = Api(own_server.port)
    alice = await api.register()
    old_pid = db.pid
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while db.pid == old_pid and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert db.pid != old_pid, "the watchdog did not restart the database"
    await _wait_ready(api)
    assert (await api.get("/users/me", alice)).status == 200


async def test_indexes_are_created_idempotently(db: EmbeddedMongo, tmp_path: Path) -> None:
    uri = db.uri_for("idx" + uuid.uuid4().hex[:6])
    for _ in range(2):  # a second start on the same database must not fail
        server = Server(make_settings(uri, tmp_path))
        await server.start()
        assert server.ctx is not None
        indexes = await server.ctx.store.db.users.index_information()
        await server.stop()
    assert any(ix.get("unique") and ix["key"] == [("username", 1)] for ix in indexes.values())
