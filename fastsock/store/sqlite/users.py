"""Users: one row per account; `username` is unique (and lowercase, as the services make it)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from fastsock.store.ids import new_id
from fastsock.store.sqlite.codec import Doc, flag, fold, id_array, ident, ms, to_json, when
from fastsock.store.sqlite.columns import ID, Column, Derived, From, Table
from fastsock.store.sqlite.engine import Database

TABLE = Table(
    "users",
    ID,
    Column("username"),
    Column("display_name", default=From("username"), fill_empty=True),
    Column("password_hash", default=""),
    Column("status_message", default="", fill_empty=True),
    Column("avatar_url", default=None),
    Column("avatar_upload_id", ident, default=None),
    Column("created_at", ms, when),
    Column("deactivated_at", ms, when, default=None),
    Column("server_admin", flag, bool, default=False),
    Derived("display_name_fold", "display_name", fold),  # prefix search (users_display_name)
    unique=("username",),
    duplicate="username",
)
_TOP = "\U0010ffff"  # sorts after any character: the upper end of a prefix range


def _insert(conn: sqlite3.Connection, doc: Doc) -> Doc:
    return TABLE.insert(conn, {**doc, "_id": doc.get("_id") or new_id()})


def _get(conn: sqlite3.Connection, user_id: str) -> Doc | None:
    return TABLE.one(conn, "WHERE id = ?", (user_id,))


def _by_username(conn: sqlite3.Connection, username: str) -> Doc | None:
    return TABLE.one(conn, "WHERE username = ?", (username,))


def _by_usernames(conn: sqlite3.Connection, usernames: str) -> list[Doc]:
    return TABLE.all(conn, "WHERE username IN (SELECT value FROM json_each(?))", (usernames,))


def _many(conn: sqlite3.Connection, ids: str) -> list[Doc]:
    return TABLE.all(conn, "WHERE id IN (SELECT value FROM json_each(?))", (ids,))


def _search(conn: sqlite3.Connection, query: str, limit: int) -> list[Doc]:
    if not query:
        return TABLE.all(conn, "WHERE deactivated_at IS NULL ORDER BY username LIMIT ?", (limit,))
    # Prefix ranges on two indexes (usernames are lowercase already); substr() makes the
    # match exact where the range's upper bound is approximate.
    q = query.casefold()
    return TABLE.all(
        conn,
        "WHERE ((username >= ?1 AND username < ?2 AND substr(username, 1, ?3) = ?1)"
        " OR (display_name_fold >= ?1 AND display_name_fold < ?2"
        " AND substr(display_name_fold, 1, ?3) = ?1)) AND deactivated_at IS NULL"
        " ORDER BY username LIMIT ?4",
        (q, q + _TOP, len(q), limit),
    )


def _update(conn: sqlite3.Connection, user_id: str, changes: Doc) -> Doc | None:
    TABLE.update(conn, user_id, changes)
    return _get(conn, user_id)


def _oldest(conn: sqlite3.Connection) -> Doc | None:
    return TABLE.one(conn, "ORDER BY id LIMIT 1", ())


class Users:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert(self, doc: Doc) -> Doc:
        return await self.db.write("users.insert", _insert, doc)

    async def get(self, user_id: str) -> Doc | None:
        return await self.db.read("users.get", _get, str(user_id))

    async def by_username(self, username: str) -> Doc | None:
        return await self.db.read("users.by_username", _by_username, username)

    async def by_usernames(self, usernames: list[str]) -> list[Doc]:
        if not usernames:
            return []
        return await self.db.read("users.by_usernames", _by_usernames, to_json(usernames))

    async def many(self, user_ids: Iterable[str]) -> list[Doc]:
        return await self.db.read("users.many", _many, id_array(user_ids))

    async def search(self, query: str, limit: int) -> list[Doc]:
        return await self.db.read("users.search", _search, query, limit)

    async def update(self, user_id: str, changes: Doc) -> Doc | None:
        return await self.db.write("users.update", _update, str(user_id), changes)

    async def oldest(self) -> Doc | None:
        return await self.db.read("users.oldest", _oldest)
