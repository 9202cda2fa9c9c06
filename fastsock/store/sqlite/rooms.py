"""Rooms: groups and direct messages. A DM carries `dm_key` (the two user ids, sorted) under a
unique key, so get-or-create is idempotent even when both users start the DM at once."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from fastsock.store.ids import new_id
from fastsock.store.sqlite import memberships
from fastsock.store.sqlite.codec import Doc, flag, fold, id_array, ident, ms, when
from fastsock.store.sqlite.columns import ID, Column, Derived, From, Table
from fastsock.store.sqlite.engine import Database

TABLE = Table(
    "rooms",
    ID,
    Column("kind"),
    Column("name", default=None),
    Column("private", flag, bool, default=False),
    Column("dm_key", default=None),
    Column("created_by", ident, default=None),
    Column("created_at", ms, when),
    Column("last_activity_at", ms, when, default=From("created_at"), fill_empty=True),
    Column("version", int, default=0),
    Derived("name_fold", "name", fold),  # public(): "name contains", in any case
    unique=("dm_key",),
    duplicate="dm_key",
)


def _create(conn: sqlite3.Connection, doc: Doc, members: list[tuple[str, str]], at: int) -> Doc:
    # One write job is one savepoint: a refused room takes no memberships with it.
    room = TABLE.insert(conn, {**doc, "_id": doc.get("_id") or new_id()})
    for user_id, role in members:
        memberships.add(conn, room["_id"], str(user_id), role, at)
    return room


def _get(conn: sqlite3.Connection, room_id: str) -> Doc | None:
    return TABLE.one(conn, "WHERE id = ?", (room_id,))


def _by_dm_key(conn: sqlite3.Connection, dm_key: str) -> Doc | None:
    return TABLE.one(conn, "WHERE dm_key = ?", (dm_key,))


def _many(conn: sqlite3.Connection, ids: str) -> list[Doc]:
    return TABLE.all(conn, "WHERE id IN (SELECT value FROM json_each(?))", (ids,))


def _public(conn: sqlite3.Connection, query: str, limit: int) -> list[Doc]:
    # The literals match the partial index's WHERE, so rooms_public serves the order; the
    # substring test (no index can serve "contains") only reads public groups.
    clause = "WHERE kind = 'group' AND private = 0"
    params: tuple[Any, ...] = (limit,)
    if query:
        clause += " AND instr(name_fold, ?) > 0"
        params = (query.casefold(), limit)
    return TABLE.all(conn, f"{clause} ORDER BY last_activity_at DESC LIMIT ?", params)


def _update(conn: sqlite3.Connection, room_id: str, changes: Doc) -> Doc | None:
    TABLE.update(conn, room_id, changes)
    return _get(conn, room_id)


def _next_version(conn: sqlite3.Connection, room_id: str, activity_at: int | None) -> int:
    row = conn.execute(
        "UPDATE rooms SET version = version + 1,"
        " last_activity_at = coalesce(?, last_activity_at) WHERE id = ? RETURNING version",
        (activity_at, room_id),
    ).fetchone()
    return int(row[0]) if row else 0


class Rooms:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, doc: Doc, members: list[tuple[str, str]], at: datetime) -> Doc:
        return await self.db.write("rooms.create", _create, doc, list(members), ms(at))

    async def get(self, room_id: str) -> Doc | None:
        return await self.db.read("rooms.get", _get, str(room_id))

    async def by_dm_key(self, dm_key: str) -> Doc | None:
        return await self.db.read("rooms.by_dm_key", _by_dm_key, dm_key)

    async def many(self, room_ids: Iterable[str]) -> list[Doc]:
        return await self.db.read("rooms.many", _many, id_array(room_ids))

    async def public(self, query: str, limit: int) -> list[Doc]:
        return await self.db.read("rooms.public", _public, query, limit)

    async def update(self, room_id: str, changes: Doc) -> Doc | None:
        return await self.db.write("rooms.update", _update, str(room_id), changes)

    async def next_version(self, room_id: str, activity_at: datetime | None = None) -> int:
        return await self.db.write(
            "rooms.next_version", _next_version, str(room_id), ms(activity_at)
        )
