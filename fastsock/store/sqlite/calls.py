"""Call records: one row per call, written when it starts and when it changes state (the live
state machine is in services/calls.py)."""

from __future__ import annotations

import sqlite3
from typing import Any

from fastsock.store.base import Duplicate
from fastsock.store.sqlite.codec import (
    Doc,
    assignments,
    ident,
    insert_sql,
    ms,
    same,
    unique_columns,
    when,
)
from fastsock.store.sqlite.engine import Database

STORED = (
    "id",
    "room_id",
    "kind",
    "media",
    "caller_id",
    "callee_id",
    "state",
    "outcome",
    "end_reason",
    "created_at",
    "answered_at",
    "ended_at",
    "duration_s",
)
COLUMNS = ", ".join(STORED)
_SELECT = f"SELECT {COLUMNS} FROM calls"
_INSERT = insert_sql("calls", STORED)
ENCODERS = {
    "room_id": ident,
    "kind": same,
    "media": same,
    "caller_id": ident,
    "callee_id": ident,
    "state": same,
    "outcome": same,
    "end_reason": same,
    "created_at": ms,
    "answered_at": ms,
    "ended_at": ms,
    "duration_s": int,
}


def to_doc(row: tuple[Any, ...]) -> Doc:
    return {
        "_id": row[0],
        "room_id": row[1],
        "kind": row[2],
        "media": row[3],
        "caller_id": row[4],
        "callee_id": row[5],
        "state": row[6],
        "outcome": row[7],
        "end_reason": row[8],
        "created_at": when(row[9]),
        "answered_at": when(row[10]),
        "ended_at": when(row[11]),
        "duration_s": row[12],
    }


def encode(doc: Doc) -> tuple[Any, ...]:
    return (
        str(doc["_id"]),
        str(doc["room_id"]),
        doc.get("kind", "direct"),
        doc["media"],
        str(doc["caller_id"]),
        str(doc["callee_id"]),
        doc["state"],
        doc.get("outcome"),
        doc.get("end_reason"),
        ms(doc.get("created_at")),
        ms(doc.get("answered_at")),
        ms(doc.get("ended_at")),
        int(doc.get("duration_s") or 0),
    )


def _insert(conn: sqlite3.Connection, doc: Doc) -> Doc:
    row = encode(doc)
    try:
        conn.execute(_INSERT, row)
    except sqlite3.IntegrityError as exc:
        if unique_columns(exc) == ("id",):
            raise Duplicate("_id") from exc
        raise
    return to_doc(row)


def _update(conn: sqlite3.Connection, call_id: str, changes: Doc) -> None:
    terms, params = assignments({k: v for k, v in changes.items() if k != "_id"}, ENCODERS)
    if terms:
        conn.execute(f"UPDATE calls SET {', '.join(terms)} WHERE id = ?", (*params, call_id))


def _page(conn: sqlite3.Connection, room_id: str, before: str | None, limit: int) -> Any:
    if before is None:
        rows = conn.execute(
            f"{_SELECT} WHERE room_id = ? ORDER BY id DESC LIMIT ?", (room_id, limit + 1)
        ).fetchall()
    else:
        rows = conn.execute(
            f"{_SELECT} WHERE room_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
            (room_id, before, limit + 1),
        ).fetchall()
    return [to_doc(r) for r in rows[:limit]], len(rows) > limit


class Calls:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert(self, doc: Doc) -> Doc:
        return await self.db.write("calls.insert", _insert, doc)

    async def update(self, call_id: str, changes: Doc) -> None:
        await self.db.write("calls.update", _update, str(call_id), changes)

    async def page(self, room_id: str, *, before: str | None, limit: int) -> tuple[list[Doc], bool]:
        return await self.db.read("calls.page", _page, str(room_id), before, limit)
