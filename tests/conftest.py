"""Fixtures: one embedded wire database per test session (memory engine), a fresh database name
and a real FastSock server on an ephemeral port per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fastsock.app import Server
from fastsock.config import Limits, Settings
from fastsock.store.embedded import EmbeddedMongo
from tests.support import Api

JWT_SECRET = "test-secret-" + "x" * 40


@pytest.fixture(scope="session")
async def mongo() -> AsyncIterator[EmbeddedMongo]:
    db = EmbeddedMongo(sqlite_path=None)
    await db.start()
    yield db
    await db.stop()


# Tests drive users far faster than people type; the limits themselves are tested with the
# defaults in tests/realtime/test_limits.py.
RELAXED = Limits(
    send_per_s=1000,
    send_burst=1000,
    typing_per_s=1000,
    typing_burst=1000,
    reactions_per_s=1000,
    reactions_burst=1000,
    invites_per_min=10000,
    logins_per_min=10000,
)


def make_settings(mongo_uri: str, data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": 0,
        "data_dir": data_dir,
        "mongo_uri": mongo_uri,
        "jwt_secret": JWT_SECRET,
        "limits": RELAXED,
    }
    return Settings(**(values | overrides))  # type: ignore[arg-type]


@pytest.fixture
async def server(mongo: EmbeddedMongo, tmp_path: Path) -> AsyncIterator[Server]:
    srv = Server(make_settings(mongo.uri_for("t" + uuid.uuid4().hex[:12]), tmp_path))
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def api(server: Server) -> Api:
    return Api(server.port)
