"""Bulk copy in and out (`fastsock migrate`): whole documents, in key order, as the
repositories return them. An import replaces by key, so importing a batch twice changes
nothing; a message's reaction rows are replaced with it, and the triggers keep the full-text
index and the attachment index in step.

Copying messages into a database in key order (as a copy resuming after `last_key` does) keeps
rowids growing with ids, which newest-first search relies on. Fields a document carries that
no column holds (say, a membership's Mongo `_id`) are not kept."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastsock.store.base import COLLECTIONS
from fastsock.store.sqlite import (
    calls,
    deliveries,
    memberships,
    messages,
    reactions,
    rooms,
    tokens,
    uploads,
    users,
)
from fastsock.store.sqlite.codec import Doc, upsert_sql
from fastsock.store.sqlite.engine import Database


@dataclass(frozen=True)
class _Table:
    name: str
    key: tuple[str, ...]  # columns, in COLLECTIONS order
    columns: str
    stored: tuple[str, ...]
    to_doc: Callable[[tuple[Any, ...]], Doc]
    encode: Callable[[Doc], tuple[Any, ...]]

    @property
    def upsert(self) -> str:
        return upsert_sql(self.name, self.stored, self.key)


def _encode_message(doc: Doc) -> tuple[Any, ...]:
    kinds = sum(1 for users_ in (doc.get("reactions") or {}).values() if users_)
    return messages.encode(doc, kinds)


_ID = ("id",)
_TABLES: dict[str, _Table] = {
    "users": _Table("users", _ID, users.COLUMNS, users.STORED, users.to_doc, users.encode),
    "refresh_tokens": _Table(
        "refresh_tokens", _ID, tokens.COLUMNS, tokens.STORED, tokens.to_doc, tokens.encode
    ),
    "rooms": _Table("rooms", _ID, rooms.COLUMNS, rooms.STORED, rooms.to_doc, rooms.encode),
    "memberships": _Table(
        "memberships",
        ("user_id", "room_id"),
        memberships.COLUMNS,
        memberships.STORED,
        memberships.to_doc,
        memberships.encode,
    ),
    "messages": _Table(
        "messages", _ID, messages.COLUMNS, messages.STORED, messages.to_doc, _encode_message
    ),
    "deliveries": _Table(
        "deliveries",
        ("message_id", "user_id"),
        deliveries.COLUMNS,
        deliveries.STORED,
        deliveries.to_doc,
        deliveries.encode,
    ),
    "uploads": _Table(
        "uploads", _ID, uploads.COLUMNS, uploads.STORED, uploads.to_doc, uploads.encode
    ),
    "calls": _Table("calls", _ID, calls.COLUMNS, calls.STORED, calls.to_doc, calls.encode),
}
assert set(_TABLES) == set(COLLECTIONS)


def _table(collection: str) -> _Table:
    try:
        return _TABLES[collection]
    except KeyError:
        raise ValueError(f"no such collection {collection!r}") from None


def _export(conn: sqlite3.Connection, collection: str, after: str | None, limit: int) -> list[Doc]:
    t = _table(collection)
    key = ", ".join(t.key)
    # A row-value comparison on the key: one range scan of its unique index.
    parts = after.split(":", len(t.key) - 1) if after is not None else [""] * len(t.key)
    marks = ", ".join("?" * len(t.key))
    rows = conn.execute(
        f"SELECT {t.columns} FROM {t.name} WHERE ({key}) > ({marks}) ORDER BY {key} LIMIT ?",
        (*parts, limit),
    )
    docs = [t.to_doc(r) for r in rows]
    if collection == "messages":
        reactions.attach(conn, docs)
    return docs


def _import(conn: sqlite3.Connection, collection: str, docs: list[Doc]) -> None:
    t = _table(collection)
    sql = t.upsert
    for doc in docs:
        conn.execute(sql, t.encode(doc))
        if collection == "messages":
            reactions.replace(conn, str(doc["_id"]), doc.get("reactions") or {})


def _last_key(conn: sqlite3.Connection, collection: str) -> str | None:
    t = _table(collection)
    order = ", ".join(f"{c} DESC" for c in t.key)
    row = conn.execute(f"SELECT {', '.join(t.key)} FROM {t.name} ORDER BY {order} LIMIT 1")
    found = row.fetchone()
    return ":".join(found) if found else None


def _count(conn: sqlite3.Connection, collection: str) -> int:
    return conn.execute(f"SELECT count(*) FROM {_table(collection).name}").fetchone()[0]


def _optimize(conn: sqlite3.Connection) -> None:
    # One FTS5 segment instead of the many a bulk import leaves: until they are merged,
    # every new message pays for merging them (sends were 2-3x slower after a 1M import).
    conn.execute("INSERT INTO messages_fts (messages_fts) VALUES ('optimize')")
    conn.execute("PRAGMA optimize")


class Transfer:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def export(self, collection: str, after: str | None, limit: int) -> list[Doc]:
        return await self.db.read("transfer.export", _export, collection, after, limit)

    async def import_many(self, collection: str, docs: list[Doc]) -> None:
        _table(collection)  # an unknown name fails here, not in the writer
        if docs:
            await self.db.write("transfer.import", _import, collection, list(docs))

    async def last_key(self, collection: str) -> str | None:
        return await self.db.read("transfer.last_key", _last_key, collection)

    async def count(self, collection: str) -> int:
        return await self.db.read("transfer.count", _count, collection)

    async def finish(self) -> None:
        """Compact the full-text index and refresh planner statistics. Writes wait
        meanwhile: about 2 s per million messages."""
        await self.db.write("transfer.finish", _optimize)
