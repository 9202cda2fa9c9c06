"""Uploads: one row per stored file. `attached` is set while a message or an avatar uses the
file; the garbage collector sweeps the rest (index uploads_unattached)."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from fastsock.store.sqlite.codec import Doc, flag, id_array, ident, ms, when
from fastsock.store.sqlite.columns import ID, Column, Table
from fastsock.store.sqlite.engine import Database

TABLE = Table(
    "uploads",
    ID,
    Column("owner_id", ident),
    Column("name"),
    Column("content_type"),
    Column("size", int),
    Column("created_at", ms, when),
    Column("attached", flag, bool, default=False),
    Column("avatar", flag, bool, default=False),
    Column("width", default=None),  # width, height, thumbnail_size: images only
    Column("height", default=None),
    Column("thumbnail_size", default=None),
    unique=("id",),
    duplicate="_id",
)


def _get(conn: sqlite3.Connection, upload_id: str) -> Doc | None:
    return TABLE.one(conn, "WHERE id = ?", (upload_id,))


def _owned(conn: sqlite3.Connection, owner_id: str, ids: str) -> list[Doc]:
    return TABLE.all(
        conn, "WHERE id IN (SELECT value FROM json_each(?)) AND owner_id = ?", (ids, owner_id)
    )


def _mark(conn: sqlite3.Connection, ids: str, changes: Doc) -> None:
    terms, params = TABLE.assignments(changes)
    if terms:
        conn.execute(
            f"UPDATE uploads SET {', '.join(terms)} WHERE id IN (SELECT value FROM json_each(?))",
            (*params, ids),
        )


def _unattached_before(conn: sqlite3.Connection, cutoff: int, limit: int) -> list[Doc]:
    return TABLE.all(
        conn, "WHERE attached = 0 AND created_at < ? ORDER BY created_at LIMIT ?", (cutoff, limit)
    )


def _delete_if_unattached(conn: sqlite3.Connection, upload_id: str) -> bool:
    cursor = conn.execute("DELETE FROM uploads WHERE id = ? AND attached = 0", (upload_id,))
    return cursor.rowcount == 1


def _update(conn: sqlite3.Connection, upload_id: str, changes: Doc) -> Doc | None:
    TABLE.update(conn, upload_id, changes)
    return _get(conn, upload_id)


class Uploads:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert(self, upload_id: str, doc: Doc) -> Doc:
        return await self.db.write("uploads.insert", TABLE.insert, {**doc, "_id": str(upload_id)})

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
