"""Call records: one row per call, written when it starts and when it changes state (the live
state machine is in services/calls.py)."""

from __future__ import annotations

import sqlite3
from typing import Any

from fastsock.store.sqlite.codec import Doc, ident, ms, when
from fastsock.store.sqlite.columns import ID, Column, Table
from fastsock.store.sqlite.engine import Database

TABLE = Table(
    "calls",
    ID,  # the live call's own id
    Column("room_id", ident),
    Column("kind", default="direct"),
    Column("media"),
    Column("caller_id", ident),
    Column("callee_id", ident),
    Column("state"),
    Column("outcome", default=None),
    Column("end_reason", default=None),
    Column("created_at", ms, when, default=None),
    Column("answered_at", ms, when, default=None),
    Column("ended_at", ms, when, default=None),
    Column("duration_s", int, default=0, fill_empty=True),
    unique=("id",),
    duplicate="_id",
)


def _update(conn: sqlite3.Connection, call_id: str, changes: Doc) -> None:
    # `_id` is the row's key, never set (a whole call document may come again).
    TABLE.update(conn, call_id, {k: v for k, v in changes.items() if k != "_id"})


def _page(conn: sqlite3.Connection, room_id: str, before: str | None, limit: int) -> Any:
    if before is None:
        docs = TABLE.all(conn, "WHERE room_id = ? ORDER BY id DESC LIMIT ?", (room_id, limit + 1))
    else:
        docs = TABLE.all(
            conn,
            "WHERE room_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
            (room_id, before, limit + 1),
        )
    return docs[:limit], len(docs) > limit


class Calls:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert(self, doc: Doc) -> Doc:
        return await self.db.write("calls.insert", TABLE.insert, doc)

    async def update(self, call_id: str, changes: Doc) -> None:
        await self.db.write("calls.update", _update, str(call_id), changes)

    async def page(self, room_id: str, *, before: str | None, limit: int) -> tuple[list[Doc], bool]:
        return await self.db.read("calls.page", _page, str(room_id), before, limit)
