"""Messages. Within a room they order by id; `seq` (the rowid) grows with the id, because the
writer issues new ids itself, each above the newest stored one. Deleted messages stay as
tombstones. `(sender_id, client_msg_id)` is unique: sends are idempotent."""

from __future__ import annotations

import sqlite3
from typing import Any

from fastsock.store.base import Duplicate
from fastsock.store.ids import new_id
from fastsock.store.sqlite import reactions, search
from fastsock.store.sqlite.codec import (
    Doc,
    assignments,
    conditions,
    flag,
    from_json,
    id_array,
    insert_sql,
    ms,
    opt_json,
    same,
    to_json,
    unique_columns,
    when,
)
from fastsock.store.sqlite.engine import Database

Page = tuple[list[Doc], bool]

_NAMES = (
    "id",
    "room_id",
    "sender_id",
    "type",
    "text",
    "attachments",
    "call",
    "client_msg_id",
    "created_at",
    "edited_at",
    "deleted",
    "deleted_at",
    "reaction_kinds",
    "version",
    "announced",
)
COLUMNS = ", ".join(_NAMES)
COLUMNS_OF_M = ", ".join(f"m.{c}" for c in _NAMES)  # for joins
STORED = _NAMES
_SELECT = f"SELECT {COLUMNS} FROM messages"
_INSERT = insert_sql("messages", STORED)
_SEARCH = search.sql(COLUMNS_OF_M)
# Fields update() may set or match. `reactions` is rows of its own, and reaction_kinds follows
# from it (the number of distinct emoji), so neither is a plain column write.
ENCODERS = {
    "room_id": str,
    "sender_id": str,
    "type": same,
    "text": same,
    "attachments": to_json,
    "call": opt_json,
    "client_msg_id": same,
    "created_at": ms,
    "edited_at": ms,
    "deleted": flag,
    "deleted_at": ms,
    "version": int,
    "announced": flag,
}


def to_doc(row: tuple[Any, ...]) -> Doc:
    """A message without its reactions (reactions.attach adds them)."""
    return {
        "_id": row[0],
        "room_id": row[1],
        "sender_id": row[2],
        "type": row[3],
        "text": row[4],
        "attachments": from_json(row[5]),
        "call": from_json(row[6]),
        "client_msg_id": row[7],
        "created_at": when(row[8]),
        "edited_at": when(row[9]),
        "deleted": bool(row[10]),
        "deleted_at": when(row[11]),
        "reaction_kinds": row[12],
        "version": row[13],
        "announced": bool(row[14]),
    }


def encode(doc: Doc, kinds: int) -> tuple[Any, ...]:
    return (
        str(doc["_id"]),
        str(doc["room_id"]),
        str(doc["sender_id"]),
        doc["type"],
        doc.get("text") or "",
        to_json(doc.get("attachments") or []),
        opt_json(doc.get("call")),
        doc["client_msg_id"],
        ms(doc["created_at"]),
        ms(doc.get("edited_at")),
        flag(doc.get("deleted", False)),
        ms(doc.get("deleted_at")),
        kinds,
        int(doc.get("version", 0)),
        flag(doc.get("announced", True)),
    )


def load(conn: sqlite3.Connection, message_id: str) -> Doc | None:
    row = conn.execute(f"{_SELECT} WHERE id = ?", (message_id,)).fetchone()
    return reactions.attach(conn, [to_doc(row)])[0] if row else None


def _next_id(conn: sqlite3.Connection) -> str:
    """A fresh id above every stored one, so ids and rowids grow together (an ObjectId from
    a clock that stepped back, or a counter that wrapped, is bumped past the newest)."""
    candidate = new_id()
    row = conn.execute("SELECT id FROM messages ORDER BY id DESC LIMIT 1").fetchone()
    if row is not None and row[0] >= candidate:
        return f"{int(row[0], 16) + 1:024x}"
    return candidate


def _insert(conn: sqlite3.Connection, doc: Doc) -> Doc:
    message_id = str(doc.get("_id") or _next_id(conn))
    given = doc.get("reactions") or {}
    row = encode({**doc, "_id": message_id}, sum(1 for users in given.values() if users))
    try:
        conn.execute(_INSERT, row)
    except sqlite3.IntegrityError as exc:
        if unique_columns(exc) == ("sender_id", "client_msg_id"):
            raise Duplicate("client_msg_id") from exc
        raise
    stored = to_doc(row)
    if given:
        reactions.replace(conn, message_id, given)
        return reactions.attach(conn, [stored])[0]
    stored["reactions"] = {}
    return stored


def _by_client_id(conn: sqlite3.Connection, sender_id: str, client_msg_id: str) -> Doc | None:
    row = conn.execute(
        f"{_SELECT} WHERE sender_id = ? AND client_msg_id = ?", (sender_id, client_msg_id)
    ).fetchone()
    return reactions.attach(conn, [to_doc(row)])[0] if row else None


def _page(
    conn: sqlite3.Connection, room_id: str, before: str | None, after: str | None, limit: int
) -> Page:
    terms, params = ["room_id = ?"], [room_id]
    if before is not None:
        terms.append("id < ?")
        params.append(before)
    if after is not None:
        terms.append("id > ?")
        params.append(after)
    order = "ASC" if after is not None else "DESC"
    rows = conn.execute(
        f"{_SELECT} WHERE {' AND '.join(terms)} ORDER BY id {order} LIMIT ?", (*params, limit + 1)
    ).fetchall()
    docs = [to_doc(r) for r in rows[:limit]]
    if after is not None:
        docs.reverse()
    return reactions.attach(conn, docs), len(rows) > limit


def _latest_visible(conn: sqlite3.Connection, room_id: str) -> Doc | None:
    row = conn.execute(
        f"{_SELECT} WHERE room_id = ? AND deleted = 0 ORDER BY id DESC LIMIT 1", (room_id,)
    ).fetchone()
    return reactions.attach(conn, [to_doc(row)])[0] if row else None


def _count_unread(conn: sqlite3.Connection, room_id: str, user_id: str, after: str) -> int:
    # Served by the partial index messages_live alone: (room_id, id, sender_id), live only.
    return conn.execute(
        "SELECT count(*) FROM messages INDEXED BY messages_live"
        " WHERE room_id = ? AND deleted = 0 AND id > ? AND sender_id <> ?",
        (room_id, after, user_id),
    ).fetchone()[0]


def _update(conn: sqlite3.Connection, message_id: str, expect: Doc, changes: Doc) -> Doc | None:
    plain = {k: v for k, v in changes.items() if k not in ("reactions", "reaction_kinds")}
    if "reaction_kinds" in changes and "reactions" not in changes:
        raise ValueError("reaction_kinds follows reactions; set reactions")
    sets, set_params = assignments(plain, ENCODERS)
    where, where_params = conditions(expect, ENCODERS)
    if "reactions" in changes:
        # Tombstones set reactions={} (and reaction_kinds=0): the rows go, the count follows.
        kinds = sum(1 for users in changes["reactions"].values() if users)
        sets.append("reaction_kinds = ?")
        set_params.append(kinds)
    match = " AND ".join(["id = ?", *where])
    if sets:
        sql = f"UPDATE messages SET {', '.join(sets)} WHERE {match} RETURNING id"
    else:
        sql = f"SELECT id FROM messages WHERE {match}"
    if conn.execute(sql, (*set_params, message_id, *where_params)).fetchone() is None:
        return None
    if "reactions" in changes:
        reactions.replace(conn, message_id, changes["reactions"])
    return load(conn, message_id)


def _changed(conn: sqlite3.Connection, room_id: str, after_version: int, limit: int) -> Page:
    rows = conn.execute(
        f"{_SELECT} WHERE room_id = ? AND version > ? ORDER BY version LIMIT ?",
        (room_id, after_version, limit + 1),
    ).fetchall()
    return reactions.attach(conn, [to_doc(r) for r in rows[:limit]]), len(rows) > limit


def _many(conn: sqlite3.Connection, ids: str) -> list[Doc]:
    rows = conn.execute(f"{_SELECT} WHERE id IN (SELECT value FROM json_each(?))", (ids,))
    return reactions.attach(conn, [to_doc(r) for r in rows])


def _add_reaction(
    conn: sqlite3.Connection, message_id: str, emoji: str, user_id: str, version: int, cap: int
) -> Doc | None:
    row = conn.execute("SELECT deleted FROM messages WHERE id = ?", (message_id,)).fetchone()
    if row is None or row[0]:
        return None
    kinds = reactions.add(conn, message_id, emoji, user_id, cap)
    if kinds < 0:
        return None
    conn.execute(
        "UPDATE messages SET version = ?, reaction_kinds = reaction_kinds + ? WHERE id = ?",
        (version, kinds, message_id),
    )
    return load(conn, message_id)


def _remove_reaction(
    conn: sqlite3.Connection, message_id: str, emoji: str, user_id: str, version: int
) -> Doc | None:
    row = conn.execute("SELECT deleted FROM messages WHERE id = ?", (message_id,)).fetchone()
    if row is None or row[0]:
        return None
    kinds = reactions.remove(conn, message_id, emoji, user_id)
    if kinds is None:
        return None
    conn.execute(
        "UPDATE messages SET version = ?, reaction_kinds = reaction_kinds + ? WHERE id = ?",
        (version, kinds, message_id),
    )
    return load(conn, message_id)


def _search(
    conn: sqlite3.Connection, room_ids: list[str], query: str, before: str | None, limit: int
) -> Page:
    if not room_ids:
        return [], False
    expression = search.match_expression(query, room_ids)
    if expression is None:
        return [], False
    params = (expression, search.bound(conn, before), id_array(room_ids), limit + 1)
    rows = conn.execute(_SEARCH, params).fetchall()
    return reactions.attach(conn, [to_doc(r) for r in rows[:limit]]), len(rows) > limit


def _shares_upload(conn: sqlite3.Connection, upload_id: str, rooms: str | None) -> bool:
    sql = (
        "SELECT 1 FROM message_attachments AS a JOIN messages AS m ON m.id = a.message_id"
        " WHERE a.upload_id = ? AND m.deleted = 0"
    )
    params: tuple[Any, ...] = (upload_id,)
    if rooms is not None:
        sql += " AND a.room_id IN (SELECT value FROM json_each(?))"
        params = (upload_id, rooms)
    return conn.execute(f"{sql} LIMIT 1", params).fetchone() is not None


class Messages:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert(self, doc: Doc) -> Doc:
        return await self.db.write("messages.insert", _insert, doc)

    async def get(self, message_id: str) -> Doc | None:
        return await self.db.read("messages.get", load, str(message_id))

    async def by_client_id(self, sender_id: str, client_msg_id: str) -> Doc | None:
        return await self.db.read(
            "messages.by_client_id", _by_client_id, str(sender_id), client_msg_id
        )

    async def page(
        self, room_id: str, *, before: str | None, after: str | None, limit: int
    ) -> Page:
        return await self.db.read("messages.page", _page, str(room_id), before, after, limit)

    async def latest_visible(self, room_id: str) -> Doc | None:
        return await self.db.read("messages.latest_visible", _latest_visible, str(room_id))

    async def count_unread(self, room_id: str, user_id: str, after: str | None) -> int:
        # "" is below every id: no pointer counts every message.
        after_id = "" if after is None else str(after)
        return await self.db.read(
            "messages.count_unread", _count_unread, str(room_id), str(user_id), after_id
        )

    async def update(self, message_id: str, expect: Doc, changes: Doc) -> Doc | None:
        return await self.db.write("messages.update", _update, str(message_id), expect, changes)

    async def changed(self, room_id: str, after_version: int, limit: int) -> Page:
        return await self.db.read("messages.changed", _changed, str(room_id), after_version, limit)

    async def many(self, message_ids: list[str]) -> list[Doc]:
        return await self.db.read("messages.many", _many, id_array(message_ids))

    async def search(
        self, room_ids: list[str], query: str, *, before: str | None, limit: int
    ) -> Page:
        rooms = [str(r) for r in room_ids]
        return await self.db.read("messages.search", _search, rooms, query, before, limit)

    async def add_reaction(
        self, message_id: str, emoji: str, user_id: str, version: int, max_kinds: int
    ) -> Doc | None:
        return await self.db.write(
            "messages.add_reaction",
            _add_reaction,
            str(message_id),
            emoji,
            str(user_id),
            version,
            max_kinds,
        )

    async def remove_reaction(
        self, message_id: str, emoji: str, user_id: str, version: int
    ) -> Doc | None:
        return await self.db.write(
            "messages.remove_reaction",
            _remove_reaction,
            str(message_id),
            emoji,
            str(user_id),
            version,
        )

    async def shares_upload(self, upload_id: str, room_ids: list[str] | None) -> bool:
        rooms = None if room_ids is None else id_array(room_ids)
        return await self.db.read("messages.shares_upload", _shares_upload, str(upload_id), rooms)
