"""The store under test in the parity tests: each test runs once against SQLite (a temporary
file, as `make run` uses it) and once against MongoDB (the wire stand-in)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fastsock.store import Store
from fastsock.store.mongo import MongoStore
from fastsock.store.sqlite import SqliteStore
from tests.mongo_standin import EmbeddedMongo


@pytest.fixture(params=["sqlite", "mongo"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """A SQLite file, or a fresh database on the MongoDB stand-in."""
    if request.param == "sqlite":
        return tmp_path / "fastsock.db"
    mongo: EmbeddedMongo = request.getfixturevalue("mongo")
    return mongo.uri_for("p" + uuid.uuid4().hex[:12])


@pytest.fixture
async def store(target: Path | str) -> AsyncIterator[Store]:
    opened: Store = SqliteStore(target) if isinstance(target, Path) else MongoStore(target)
    await opened.prepare(30)
    yield opened
    await opened.close()
