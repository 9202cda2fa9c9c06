"""Memberships: who is in which room, their role, their read pointer and their delivered
pointer. `read_log` (recent pointer moves, for read receipts) is a small JSON list on the row."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Any

from fastsock.store.base import READ_LOG_MAX
from fastsock.store.sqlite.codec import Doc, ident, ms, to_json, when
from fastsock.store.sqlite.columns import Column, Table, insert_sql
from fastsock.store.sqlite.engine import Database


def _encode_log(log: list[list[Any]]) -> str:
    return to_json([[str(m), ms(t)] for m, t in log][-READ_LOG_MAX:])


def _decode_log(text: str) -> list[list[Any]]:
    return [[m, when(t)] for m, t in json.loads(text)]


TABLE = Table(
    "memberships",
    Column("user_id", str),
    Column("room_id", str),
    Column("role"),
    Column("joined_at", ms, when),
    Column("last_read_message_id", ident, default=None),
    Column("last_read_at", ms, when, default=None),
    Column("read_log", _encode_log, _decode_log, default=[], fill_empty=True),
    Column("last_delivered_message_id", ident, default=None),
    Column("last_delivered_at", ms, when, default=None),
)
_ADD = insert_sql(
    "memberships",
    (
        "user_id",
        "room_id",
        "role",
        "joined_at",
        "last_read_message_id",
        "last_read_at",
    ),
)
_ADD += " ON CONFLICT (user_id, room_id) DO NOTHING"


def add(
    conn: sqlite3.Connection,
    room_id: str,
    user_id: str,
    role: str,
    at: int,
    read_up_to: str | None = None,
) -> bool:
    """Also used by rooms.create, inside its transaction. `read_up_to`: the read pointer
    starts there (MembershipsRepo.add)."""
    read_at = None if read_up_to is None else at
    return conn.execute(_ADD, (user_id, room_id, role, at, read_up_to, read_at)).rowcount == 1


def _remove(conn: sqlite3.Connection, room_id: str, user_id: str) -> bool:
    cursor = conn.execute(
        "DELETE FROM memberships WHERE user_id = ? AND room_id = ?", (user_id, room_id)
    )
    return cursor.rowcount == 1


def _get(conn: sqlite3.Connection, room_id: str, user_id: str) -> Doc | None:
    return TABLE.one(conn, "WHERE user_id = ? AND room_id = ?", (user_id, room_id))


def _for_user(conn: sqlite3.Connection, user_id: str) -> list[Doc]:
    return TABLE.all(conn, "WHERE user_id = ?", (user_id,))


def _of_room(conn: sqlite3.Connection, room_id: str) -> list[Doc]:
    return TABLE.all(conn, "WHERE room_id = ? ORDER BY joined_at, user_id", (room_id,))


def _member_ids(conn: sqlite3.Connection, room_id: str) -> list[str]:
    rows = conn.execute(
        "SELECT user_id FROM memberships WHERE room_id = ? ORDER BY joined_at, user_id",
        (room_id,),
    )
    return [r[0] for r in rows]


def _member_ids_of(conn: sqlite3.Connection, room_ids: list[str]) -> dict[str, list[str]]:
    # The single-room query once per room (each an index range of memberships_room), in one
    # job and one snapshot.
    return {room_id: _member_ids(conn, room_id) for room_id in room_ids}


def _co_members(conn: sqlite3.Connection, user_id: str) -> set[str]:
    # The user's rooms by the (user_id, room_id) key, their members by memberships_room.
    rows = conn.execute(
        "SELECT DISTINCT other.user_id FROM memberships mine"
        " JOIN memberships other ON other.room_id = mine.room_id"
        " WHERE mine.user_id = ?1 AND other.user_id != ?1",
        (user_id,),
    )
    return {r[0] for r in rows}


def _count(conn: sqlite3.Connection, room_id: str) -> int:
    return int(
        conn.execute("SELECT count(*) FROM memberships WHERE room_id = ?", (room_id,)).fetchone()[0]
    )


def _set_role(conn: sqlite3.Connection, room_id: str, user_id: str, role: str) -> None:
    conn.execute(
        "UPDATE memberships SET role = ? WHERE user_id = ? AND room_id = ?",
        (role, user_id, room_id),
    )


def _advance_read(
    conn: sqlite3.Connection, room_id: str, user_id: str, message_id: str, at: int
) -> bool:
    # Read-modify-write is atomic here: the writer thread runs one job at a time.
    row = conn.execute(
        "SELECT last_read_message_id, read_log FROM memberships WHERE user_id = ? AND room_id = ?",
        (user_id, room_id),
    ).fetchone()
    if row is None or (row[0] is not None and row[0] >= message_id):
        return False
    log = json.loads(row[1])
    log.append([message_id, at])
    conn.execute(
        "UPDATE memberships SET last_read_message_id = ?, last_read_at = ?, read_log = ?"
        " WHERE user_id = ? AND room_id = ?",
        (message_id, at, to_json(log[-READ_LOG_MAX:]), user_id, room_id),
    )
    return True


def _advance_delivered(
    conn: sqlite3.Connection, user_id: str, newest: list[tuple[str, str]], at: int
) -> None:
    # One conditional update per room, all in one write job.
    conn.executemany(
        "UPDATE memberships SET last_delivered_message_id = ?1, last_delivered_at = ?2"
        " WHERE user_id = ?3 AND room_id = ?4"
        " AND (last_delivered_message_id IS NULL OR last_delivered_message_id < ?1)",
        [(message_id, at, user_id, room_id) for room_id, message_id in newest],
    )


class Memberships:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(
        self, room_id: str, user_id: str, role: str, at: datetime, read_up_to: str | None = None
    ) -> bool:
        return await self.db.write(
            "memberships.add", add, str(room_id), str(user_id), role, ms(at), ident(read_up_to)
        )

    async def remove(self, room_id: str, user_id: str) -> bool:
        return await self.db.write("memberships.remove", _remove, str(room_id), str(user_id))

    async def get(self, room_id: str, user_id: str) -> Doc | None:
        return await self.db.read("memberships.get", _get, str(room_id), str(user_id))

    async def for_user(self, user_id: str) -> list[Doc]:
        return await self.db.read("memberships.for_user", _for_user, str(user_id))

    async def of_room(self, room_id: str) -> list[Doc]:
        return await self.db.read("memberships.of_room", _of_room, str(room_id))

    async def member_ids(self, room_id: str) -> list[str]:
        return await self.db.read("memberships.member_ids", _member_ids, str(room_id))

    async def member_ids_of(self, room_ids: list[str]) -> dict[str, list[str]]:
        rooms = [str(r) for r in room_ids]
        if not rooms:
            return {}
        return await self.db.read("memberships.member_ids_of", _member_ids_of, rooms)

    async def co_members(self, user_id: str) -> set[str]:
        return await self.db.read("memberships.co_members", _co_members, str(user_id))

    async def count(self, room_id: str) -> int:
        return await self.db.read("memberships.count", _count, str(room_id))

    async def set_role(self, room_id: str, user_id: str, role: str) -> None:
        await self.db.write("memberships.set_role", _set_role, str(room_id), str(user_id), role)

    async def advance_read(self, room_id: str, user_id: str, message_id: str, at: datetime) -> bool:
        return await self.db.write(
            "memberships.advance_read",
            _advance_read,
            str(room_id),
            str(user_id),
            str(message_id),
            ms(at),
        )

    async def advance_delivered(self, user_id: str, newest: dict[str, str], at: datetime) -> None:
        if not newest:
            return
        pairs = [(str(room_id), str(message_id)) for room_id, message_id in newest.items()]
        await self.db.write(
            "memberships.advance_delivered", _advance_delivered, str(user_id), pairs, ms(at)
        )
