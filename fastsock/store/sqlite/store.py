"""The SQLite store: every repository over one database file (see engine.py for threads,
group commit and durability, schema.py for tables and migrations)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

from fastsock.store.sqlite import schema
from fastsock.store.sqlite.bans import Bans
from fastsock.store.sqlite.calls import Calls
from fastsock.store.sqlite.codec import now_ms
from fastsock.store.sqlite.deliveries import Deliveries
from fastsock.store.sqlite.engine import Database
from fastsock.store.sqlite.memberships import Memberships
from fastsock.store.sqlite.messages import Messages
from fastsock.store.sqlite.rooms import Rooms
from fastsock.store.sqlite.sfu_workers import SfuWorkers
from fastsock.store.sqlite.tokens import RefreshTokens
from fastsock.store.sqlite.transfer import Transfer
from fastsock.store.sqlite.uploads import Uploads
from fastsock.store.sqlite.users import Users


def _ping(conn: sqlite3.Connection) -> bool:
    return bool(conn.execute("SELECT 1").fetchone() == (1,))


class SqliteStore:
    def __init__(
        self,
        path: Path,
        *,
        synchronous: str = "full",
        observe: Callable[[str, float], None] | None = None,
    ) -> None:
        """`observe(operation, seconds)` is told how long each database call took, as its
        caller waited for it (queueing and, for writes, the commit included)."""
        self.path = Path(path)
        self.db = Database(self.path, synchronous=synchronous, observe=observe)
        self.users = Users(self.db)
        self.tokens = RefreshTokens(self.db)
        self.rooms = Rooms(self.db)
        self.memberships = Memberships(self.db)
        self.messages = Messages(self.db)
        self.deliveries = Deliveries(self.db)
        self.uploads = Uploads(self.db)
        self.calls = Calls(self.db)
        self.sfu_workers = SfuWorkers(self.db)
        self.bans = Bans(self.db)
        self.transfer = Transfer(self.db)
        self.description = f"embedded database: {self.path}"

    async def prepare(self, timeout_s: float) -> None:
        """Open the file (created 0600), migrate the schema, purge expired refresh tokens.
        Idempotent. There is no server to wait for: opening waits at most the busy timeout
        for a lock another process may hold, so `timeout_s` is not needed."""
        await self.db.open()
        await self.db.write("prepare", schema.prepare, now_ms())

    async def ping(self, timeout_s: float = 2.0) -> bool:
        try:
            return await asyncio.wait_for(self.db.read("ping", _ping), timeout_s)
        except Exception:  # any failure, a timeout included, means not ready
            return False

    async def close(self) -> None:
        await self.db.close()
