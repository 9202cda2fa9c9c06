"""Uploads: one row per stored file. `attached` is set while a message or an avatar uses the
file; the garbage collector sweeps the rest (index uploads_unattached)."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

from fastsock.store.base import Duplicate
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

STORED = (
    "id",
    "owner_id",
    "name",
    "content_type",
    "size",
    "created_at",
    "attached",
    "avatar",
    "width",
    "height",
    "thumbnail_size",
)
COLUMNS = ", ".join(STORED)
_SELECT = f"SELECT {COLUMNS} FROM uploads"
_INSERT = insert_sql("uploads", STORED)
ENCODERS = {
    "owner_id": ident,
    "name": same,
    "content_type": same,
    "size": int,
    "created_at": ms,
    "attached": flag,
    "avatar": flag,
    "width": same,
    "height": same,
    "thumbnail_size": same,
}


def to_doc(row: tuple[Any, ...]) -> Doc:
    return {
        "_id": row[0],
        "owner_id": row[1],
        "name": row[2],
        "content_type": row[3],
        "size": row[4],
        "created_at": when(row[5]),
        "attached": bool(row[6]),
        "avatar": bool(row[7]),
        "width": row[8],
        "height": row[9],
        "thumbnail_size": row[10],
    }


def encode(doc: Doc) -> tuple[Any, ...]:
    return (
        str(doc["_id"]),
        str(doc["owner_id"]),
        doc["name"],
        doc["content_type"],
        int(doc["size"]),
        ms(doc["created_at"]),
        flag(doc.get("attached", False)),
        flag(doc.get("avatar", False)),
        doc.get("width"),
        doc.get("height"),
        doc.get("thumbnail_size"),
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


def _get(conn: sqlite3.Connection, upload_id: str) -> Doc | None:
    row = conn.execute(f"{_SELECT} WHERE id = ?", (upload_id,)).fetchone()
    return to_doc(row) if row else None


def _owned(conn: sqlite3.Connection, owner_id: str, ids: str) -> list[Doc]:
    rows = conn.execute(
        f"{_SELECT} WHERE id IN (SELECT value FROM json_each(?)) AND owner_id = ?",
        (ids, owner_id),
    )
    return [to_doc(r) for r in rows]


def _mark(conn: sqlite3.Connection, ids: str, changes: Doc) -> None:
    terms, params = assignments(changes, ENCODERS)
    if terms:
        conn.execute(
            f"UPDATE uploads SET {', '.join(terms)} WHERE id IN (SELECT value FROM json_each(?))",
            (*params, ids),
        )


def _unattached_before(conn: sqlite3.Connection, cutoff: int, limit: int) -> list[Doc]:
    rows = conn.execute(
        f"{_SELECT} WHERE attached = 0 AND created_at < ? ORDER BY created_at LIMIT ?",
        (cutoff, limit),
    )
    return [to_doc(r) for r in rows]


def _delete_if_unattached(conn: sqlite3.Connection, upload_id: str) -> bool:
    cursor = conn.execute("DELETE FROM uploads WHERE id = ? AND attached = 0", (upload_id,))
    return cursor.rowcount == 1


def _update(conn: sqlite3.Connection, upload_id: str, changes: Doc) -> Doc | None:
    terms, params = assignments(changes, ENCODERS)
    if terms:
        conn.execute(f"UPDATE uploads SET {', '.join(terms)} WHERE id = ?", (*params, upload_id))
    return _get(conn, upload_id)


class Uploads:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert(self, upload_id: str, doc: Doc) -> Doc:
        return await self.db.write("uploads.insert", _insert, {**doc, "_id": str(upload_id)})

    async def get(self, upload_id: str) -> Doc | None:
        return await self.db.read("uploads.get", _get, str(upload_id))

    async def owned(self, owner_id: str, upload_ids: list[str]) -> list[Doc]:
        return await self.db.read("uploads.owned", _owned, str(owner_id), id_array(upload_ids))

    async def mark(self, upload_ids: list[str], changes: Doc) -> None:
        await self.db.write("uploads.mark", _mark, id_array(upload_ids), changes)

    async def unattached_before(self, cutoff: datetime, limit: int) -> list[Doc]:
        return await self.db.read(
            "uploads.unattached_before", _unattached_before, ms(cutoff), limit
        )

    async def delete_if_unattached(self, upload_id: str) -> bool:
        return await self.db.write(
            "uploads.delete_if_unattached", _delete_if_unattached, str(upload_id)
        )

    async def update(self, upload_id: str, changes: Doc) -> Doc | None:
        return await self.db.write("uploads.update", _update, str(upload_id), changes)
