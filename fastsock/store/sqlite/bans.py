"""Bans: who an admin removed from a group, kept from rejoining until an admin lets them."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from fastsock.store.sqlite.codec import Doc, id_array, ms, when
from fastsock.store.sqlite.columns import Column, Table
from fastsock.store.sqlite.engine import Database

TABLE = Table(
    "bans",
    Column("room_id", str),
    Column("user_id", str),
    Column("banned_by", str),
    Column("banned_at", ms, when),
)


def _add(conn: sqlite3.Connection, doc: Doc) -> None:
    conn.execute(TABLE.upsert_sql(("room_id", "user_id")), TABLE.encode(doc))


def _remove(conn: sqlite3.Connection, room_id: str, user_ids: str) -> list[str]:
    rows = conn.execute(
        "DELETE FROM bans WHERE room_id = ? AND user_id IN (SELECT value FROM json_each(?))"
        " RETURNING user_id",
        (room_id, user_ids),
    )
    return [user_id for (user_id,) in rows]


def _get(conn: sqlite3.Connection, room_id: str, user_id: str) -> Doc | None:
    return TABLE.one(conn, "WHERE room_id = ? AND user_id = ?", (room_id, user_id))


def _of_room(conn: sqlite3.Connection, room_id: str) -> list[Doc]:
    return TABLE.all(conn, "WHERE room_id = ? ORDER BY banned_at, user_id", (room_id,))


class Bans:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, room_id: str, user_id: str, banned_by: str, at: datetime) -> None:
        doc = {"room_id": room_id, "user_id": user_id, "banned_by": banned_by, "banned_at": at}
        await self.db.write("bans.add", _add, doc)

    async def remove(self, room_id: str, user_ids: list[str]) -> list[str]:
        if not user_ids:
            return []
        return await self.db.write("bans.remove", _remove, room_id, id_array(user_ids))

    async def get(self, room_id: str, user_id: str) -> Doc | None:
        return await self.db.read("bans.get", _get, room_id, user_id)

    async def of_room(self, room_id: str) -> list[Doc]:
        return await self.db.read("bans.of_room", _of_room, room_id)
