"""The SFU worker registry: one row per registered worker, its load as of its last heartbeat.
Ephemeral (not in COLLECTIONS, so `fastsock migrate` leaves it out): workers register again."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from fastsock.store.base import worker_load
from fastsock.store.sqlite.codec import Doc, flag, ms, when
from fastsock.store.sqlite.columns import ID, Column, Table
from fastsock.store.sqlite.engine import Database

UP, LOST = "up", "lost"

TABLE = Table(
    "sfu_workers",
    ID,
    Column("url"),
    Column("health_url", default=None),
    Column("version"),
    Column("capacity", int),
    Column("state", default=UP),
    Column("peers", int, default=0),
    Column("tracks", int, default=0),
    Column("rooms", int, default=0),
    Column("cpu", float, default=0.0),
    Column("draining", flag, bool, default=False),
    Column("pending", int, default=0),
    Column("registered_at", ms, when),
    Column("heartbeat_at", ms, when),
)


def _get(conn: sqlite3.Connection, worker_id: str) -> Doc | None:
    return TABLE.one(conn, "WHERE id = ?", (worker_id,))


def _upsert(conn: sqlite3.Connection, doc: Doc) -> Doc:
    row = TABLE.encode(doc)
    conn.execute(TABLE.upsert_sql(("id",)), row)
    return TABLE.to_doc(row)


def _heartbeat(conn: sqlite3.Connection, worker_id: str, fields: Doc, at: int) -> Doc | None:
    terms, params = TABLE.assignments(fields)
    cursor = conn.execute(
        f"UPDATE sfu_workers SET {', '.join([*terms, 'heartbeat_at = ?', 'pending = 0'])} "
        "WHERE id = ? AND state = ?",
        (*params, at, worker_id, UP),
    )
    return _get(conn, worker_id) if cursor.rowcount == 1 else None


def _live(conn: sqlite3.Connection) -> list[Doc]:
    return TABLE.all(conn, "WHERE state = ? ORDER BY id", (UP,))


def _reserve(conn: sqlite3.Connection, worker_id: str) -> None:
    conn.execute(
        "UPDATE sfu_workers SET pending = pending + 1 WHERE id = ? AND state = ?", (worker_id, UP)
    )


def _mark_lost(conn: sqlite3.Connection, worker_id: str, before: int) -> bool:
    cursor = conn.execute(
        "UPDATE sfu_workers SET state = ? WHERE id = ? AND state = ? AND heartbeat_at < ?",
        (LOST, worker_id, UP, before),
    )
    return cursor.rowcount == 1


def _remove(conn: sqlite3.Connection, worker_id: str) -> bool:
    return conn.execute("DELETE FROM sfu_workers WHERE id = ?", (worker_id,)).rowcount == 1


def _prune(conn: sqlite3.Connection, before: int) -> int:
    cursor = conn.execute(
        "DELETE FROM sfu_workers WHERE state = ? AND heartbeat_at < ?", (LOST, before)
    )
    return cursor.rowcount


class SfuWorkers:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def upsert(self, doc: Doc) -> Doc:
        return await self.db.write("sfu_workers.upsert", _upsert, doc)

    async def get(self, worker_id: str) -> Doc | None:
        return await self.db.read("sfu_workers.get", _get, str(worker_id))

    async def heartbeat(self, worker_id: str, fields: Doc, at: datetime) -> Doc | None:
        return await self.db.write(
            "sfu_workers.heartbeat", _heartbeat, str(worker_id), worker_load(fields), ms(at)
        )

    async def live(self) -> list[Doc]:
        return await self.db.read("sfu_workers.live", _live)

    async def reserve(self, worker_id: str) -> None:
        await self.db.write("sfu_workers.reserve", _reserve, str(worker_id))

    async def mark_lost(self, worker_id: str, heartbeat_before: datetime) -> bool:
        return await self.db.write(
            "sfu_workers.mark_lost", _mark_lost, str(worker_id), ms(heartbeat_before)
        )

    async def remove(self, worker_id: str) -> bool:
        return await self.db.write("sfu_workers.remove", _remove, str(worker_id))

    async def prune(self, before: datetime) -> int:
        return await self.db.write("sfu_workers.prune", _prune, ms(before))
