"""Users: one row per account; `username` is unique (and lowercase, as the services make it)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from fastsock.store.base import Duplicate
from fastsock.store.ids import new_id
from fastsock.store.sqlite.codec import (
    Doc,
    assignments,
    id_array,
    ident,
    insert_sql,
    ms,
    same,
    unique_columns,
    when,
)
from fastsock.store.sqlite.engine import Database

COLUMNS = (
    "id, username, display_name, password_hash, status_message, avatar_url, avatar_upload_id,"
    " created_at"
)
_SELECT = f"SELECT {COLUMNS} FROM users"
ENCODERS = {
    "username": same,
    "display_name": same,
    "password_hash": same,
    "status_message": same,
    "avatar_url": same,
    "avatar_upload_id": ident,
    "created_at": ms,
}
# What encode() returns, in order.
STORED = (
    "id",
    "username",
    "display_name",
    "password_hash",
    "status_message",
    "avatar_url",
    "avatar_upload_id",
    "created_at",
    "display_name_fold",
)
_INSERT = insert_sql("users", STORED)
_TOP = "\U0010ffff"  # sorts after any character: the upper end of a prefix range


def to_doc(row: tuple[Any, ...]) -> Doc:
    return {
        "_id": row[0],
        "username": row[1],
        "display_name": row[2],
        "password_hash": row[3],
        "status_message": row[4],
        "avatar_url": row[5],
        "avatar_upload_id": row[6],
        "created_at": when(row[7]),
    }


def encode(doc: Doc) -> tuple[Any, ...]:
    """The STORED values of a whole document."""
    display_name = doc.get("display_name") or doc["username"]
    return (
        str(doc["_id"]),
        doc["username"],
        display_name,
        doc.get("password_hash", ""),
        doc.get("status_message") or "",
        doc.get("avatar_url"),
        ident(doc.get("avatar_upload_id")),
        ms(doc["created_at"]),
        display_name.casefold(),
    )


def _insert(conn: sqlite3.Connection, doc: Doc) -> Doc:
    row = encode({**doc, "_id": doc.get("_id") or new_id()})
    try:
        conn.execute(_INSERT, row)
    except sqlite3.IntegrityError as exc:
        if unique_columns(exc) == ("username",):
            raise Duplicate("username") from exc
        raise
    return to_doc(row)


def _get(conn: sqlite3.Connection, user_id: str) -> Doc | None:
    row = conn.execute(f"{_SELECT} WHERE id = ?", (user_id,)).fetchone()
    return to_doc(row) if row else None


def _by_username(conn: sqlite3.Connection, username: str) -> Doc | None:
    row = conn.execute(f"{_SELECT} WHERE username = ?", (username,)).fetchone()
    return to_doc(row) if row else None


def _many(conn: sqlite3.Connection, ids: str) -> list[Doc]:
    rows = conn.execute(f"{_SELECT} WHERE id IN (SELECT value FROM json_each(?))", (ids,))
    return [to_doc(r) for r in rows]


def _search(conn: sqlite3.Connection, query: str, limit: int) -> list[Doc]:
    if not query:
        rows = conn.execute(f"{_SELECT} ORDER BY username LIMIT ?", (limit,))
        return [to_doc(r) for r in rows]
    # Prefix ranges on two indexes (usernames are lowercase already); substr() makes the
    # match exact where the range's upper bound is approximate.
    q = query.casefold()
    rows = conn.execute(
        f"{_SELECT} WHERE (username >= ?1 AND username < ?2 AND substr(username, 1, ?3) = ?1)"
        " OR (display_name_fold >= ?1 AND display_name_fold < ?2"
        " AND substr(display_name_fold, 1, ?3) = ?1)"
        " ORDER BY username LIMIT ?4",
        (q, q + _TOP, len(q), limit),
    )
    return [to_doc(r) for r in rows]


def _update(conn: sqlite3.Connection, user_id: str, changes: Doc) -> Doc | None:
    terms, params = assignments(changes, ENCODERS)
    if "display_name" in changes:
        terms.append("display_name_fold = ?")
        params.append(str(changes["display_name"]).casefold())
    if terms:
        try:
            conn.execute(f"UPDATE users SET {', '.join(terms)} WHERE id = ?", (*params, user_id))
        except sqlite3.IntegrityError as exc:
            if unique_columns(exc) == ("username",):
                raise Duplicate("username") from exc
            raise
    return _get(conn, user_id)


class Users:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert(self, doc: Doc) -> Doc:
        return await self.db.write("users.insert", _insert, doc)

    async def get(self, user_id: str) -> Doc | None:
        return await self.db.read("users.get", _get, str(user_id))

    async def by_username(self, username: str) -> Doc | None:
        return await self.db.read("users.by_username", _by_username, username)

    async def many(self, user_ids: Iterable[str]) -> list[Doc]:
        return await self.db.read("users.many", _many, id_array(user_ids))

    async def search(self, query: str, limit: int) -> list[Doc]:
        return await self.db.read("users.search", _search, query, limit)

    async def update(self, user_id: str, changes: Doc) -> Doc | None:
        return await self.db.write("users.update", _update, str(user_id), changes)
