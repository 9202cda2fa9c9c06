"""Bulk copy in and out (`fastsock migrate`): whole documents, in key order, as the
repositories return them. An import replaces by key, so importing a batch twice changes
nothing; a message's reaction rows are replaced with it, and the triggers keep the full-text
index and the attachment index in step.

Copying messages into a database in key order (as a copy resuming after `last_key` does) keeps
rowids growing with ids, which newest-first search relies on. Fields a document carries that
no column holds (say, a membership's Mongo `_id`) are not kept."""

from __future__ import annotations

import sqlite3

from fastsock.store.base import COLLECTIONS
from fastsock.store.sqlite import (
    bans,
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
from fastsock.store.sqlite.codec import Doc
from fastsock.store.sqlite.columns import Table
from fastsock.store.sqlite.engine import Database

# Each collection is the table of its name (not sfu_workers: the registry is not copied).
_TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        users.TABLE,
        tokens.TABLE,
        rooms.TABLE,
        memberships.TABLE,
        messages.TABLE,
        deliveries.TABLE,
        uploads.TABLE,
        calls.TABLE,
        bans.TABLE,
    )
}
assert set(_TABLES) == set(COLLECTIONS)


def _table(collection: str) -> tuple[Table, tuple[str, ...]]:
    """The collection's table and its key columns, in COLLECTIONS order."""
    try:
        table = _TABLES[collection]
    except KeyError:
        raise ValueError(f"no such collection {collection!r}") from None
    return table, tuple(table.column_of(f) for f in COLLECTIONS[collection])


def _export(conn: sqlite3.Connection, collection: str, after: str | None, limit: int) -> list[Doc]:
    t, key_columns = _table(collection)
    key = ", ".join(key_columns)
    # A row-value comparison on the key: one range scan of its unique index.
    parts = after.split(":", len(key_columns) - 1) if after is not None else [""] * len(key_columns)
    marks = ", ".join("?" * len(key_columns))
    docs = t.all(conn, f"WHERE ({key}) > ({marks}) ORDER BY {key} LIMIT ?", (*parts, limit))
    if collection == "messages":
        reactions.attach(conn, docs)
    return docs


def _import(conn: sqlite3.Connection, collection: str, docs: list[Doc]) -> None:
    t, key_columns = _table(collection)
    sql = t.upsert_sql(key_columns)
    for doc in docs:
        conn.execute(sql, t.encode(doc))
        if collection == "messages":
            reactions.replace(conn, str(doc["_id"]), doc.get("reactions") or {})


def _last_key(conn: sqlite3.Connection, collection: str) -> str | None:
    t, key_columns = _table(collection)
    order = ", ".join(f"{c} DESC" for c in key_columns)
    row = conn.execute(f"SELECT {', '.join(key_columns)} FROM {t.name} ORDER BY {order} LIMIT 1")
    found = row.fetchone()
    return ":".join(found) if found else None


def _count(conn: sqlite3.Connection, collection: str) -> int:
    return int(conn.execute(f"SELECT count(*) FROM {_table(collection)[0].name}").fetchone()[0])


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
