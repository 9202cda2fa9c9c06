"""Rooms: groups and direct messages. A DM carries `dm_key` (the two user ids, sorted) under a
unique key, so get-or-create is idempotent even when both users start the DM at once."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from fastsock.store.base import Duplicate
from fastsock.store.ids import new_id
from fastsock.store.sqlite import memberships
from fastsock.store.sqlite.codec import (
    Doc,
    assignments,
    flag,
    id_array,
    ident,
    insert_sql,
    ms,
    same,
    unique_columns,
    when,
)
from fastsock.store.sqlite.engine import Database

COLUMNS = "id, kind, name, private, dm_key, created_by, created_at, last_activity_at, version"
STORED = (*(c.strip() for c in COLUMNS.split(",")), "name_fold")
_SELECT = f"SELECT {COLUMNS} FROM rooms"
_INSERT = insert_sql("rooms", STORED)
ENCODERS = {
    "kind": same,
    "name": same,
    "private": flag,
    "dm_key": same,
    "created_by": ident,
    "created_at": ms,
    "last_activity_at": ms,
    "version": int,
}


def _fold(name: str | None) -> str | None:
    return None if name is None else name.casefold()


def to_doc(row: tuple[Any, ...]) -> Doc:
    return {
        "_id": row[0],
        "kind": row[1],
        "name": row[2],
        "private": bool(row[3]),
        "dm_key": row[4],
        "created_by": row[5],
        "created_at": when(row[6]),
        "last_activity_at": when(row[7]),
        "version": row[8],
    }


def encode(doc: Doc) -> tuple[Any, ...]:
    return (
        str(doc["_id"]),
        doc["kind"],
        doc.get("name"),
        flag(doc.get("private", False)),
        doc.get("dm_key"),
        ident(doc.get("created_by")),
        ms(doc["created_at"]),
        ms(doc.get("last_activity_at") or doc["created_at"]),
        int(doc.get("version", 0)),
        _fold(doc.get("name")),
    )


def _create(conn: sqlite3.Connection, doc: Doc, members: list[tuple[str, str]], at: int) -> Doc:
    # One write job is one savepoint: a refused room takes no memberships with it.
    row = encode({**doc, "_id": doc.get("_id") or new_id()})
    try:
        conn.execute(_INSERT, row)
    except sqlite3.IntegrityError as exc:
        if unique_columns(exc) == ("dm_key",):
            raise Duplicate("dm_key") from exc
        raise
    for user_id, role in members:
        memberships.add(conn, row[0], str(user_id), role, at)
    return to_doc(row)


def _get(conn: sqlite3.Connection, room_id: str) -> Doc | None:
    row = conn.execute(f"{_SELECT} WHERE id = ?", (room_id,)).fetchone()
    return to_doc(row) if row else None


def _by_dm_key(conn: sqlite3.Connection, dm_key: str) -> Doc | None:
    row = conn.execute(f"{_SELECT} WHERE dm_key = ?", (dm_key,)).fetchone()
    return to_doc(row) if row else None


def _many(conn: sqlite3.Connection, ids: str) -> list[Doc]:
    rows = conn.execute(f"{_SELECT} WHERE id IN (SELECT value FROM json_each(?))", (ids,))
    return [to_doc(r) for r in rows]


def _public(conn: sqlite3.Connection, query: str, limit: int) -> list[Doc]:
    # The literals match the partial index's WHERE, so rooms_public serves the order; the
    # substring test (no index can serve "contains") only reads public groups.
    sql = f"{_SELECT} WHERE kind = 'group' AND private = 0"
    params: tuple[Any, ...] = (limit,)
    if query:
        sql += " AND instr(name_fold, ?) > 0"
        params = (query.casefold(), limit)
    rows = conn.execute(f"{sql} ORDER BY last_activity_at DESC LIMIT ?", params)
    return [to_doc(r) for r in rows]


def _update(conn: sqlite3.Connection, room_id: str, changes: Doc) -> Doc | None:
    terms, params = assignments(changes, ENCODERS)
    if "name" in changes:
        terms.append("name_fold = ?")
        params.append(_fold(changes["name"]))
    if terms:
        try:
            conn.execute(f"UPDATE rooms SET {', '.join(terms)} WHERE id = ?", (*params, room_id))
        except sqlite3.IntegrityError as exc:
            if unique_columns(exc) == ("dm_key",):
                raise Duplicate("dm_key") from exc
            raise
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
