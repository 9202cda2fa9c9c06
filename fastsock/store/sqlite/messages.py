"""Messages. Within a room they order by id; `seq` (the rowid) grows with the id, because the
writer issues new ids itself, each above the newest stored one. Deleted messages stay as
tombstones. `(sender_id, client_msg_id)` is unique: sends are idempotent."""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from typing import Any

from fastsock.store.base import UNREAD_WINDOW
from fastsock.store.ids import new_id
from fastsock.store.sqlite import reactions, search
from fastsock.store.sqlite.codec import (
    Doc,
    flag,
    from_json,
    id_array,
    ident,
    ms,
    opt_json,
    to_json,
    when,
)
from fastsock.store.sqlite.columns import ID, Column, Derived, Table
from fastsock.store.sqlite.engine import Database

Page = tuple[list[Doc], bool]

# A message reads back without its reactions (reactions.attach adds them): they are rows of
# their own, and reaction_kinds follows from them, so neither is set as a plain column.
TABLE = Table(
    "messages",
    ID,
    Column("room_id", str),
    Column("sender_id", str),
    Column("type"),
    Column("text", default="", fill_empty=True),
    Column("attachments", to_json, from_json, default=[], fill_empty=True),
    Column("call", opt_json, from_json, default=None),
    Column("mentions", to_json, from_json, default=[], fill_empty=True),
    Column("mention_room", flag, bool, default=False),
    Column("reply_to_id", ident, default=None),
    Column("system", opt_json, from_json, default=None),
    Column("client_msg_id"),
    Column("created_at", ms, when),
    Column("edited_at", ms, when, default=None),
    Column("deleted", flag, bool, default=False),
    Column("deleted_at", ms, when, default=None),
    Derived("reaction_kinds", "reactions", reactions.kinds, read=True),
    Column("version", int, default=0),
    Column("announced", flag, bool, default=True),
    unique=("sender_id", "client_msg_id"),
    duplicate="client_msg_id",
)
_SEARCH = search.sql(TABLE.selected_of("m"))


def _attach_one(conn: sqlite3.Connection, doc: Doc | None) -> Doc | None:
    return reactions.attach(conn, [doc])[0] if doc else None


def load(conn: sqlite3.Connection, message_id: str) -> Doc | None:
    return _attach_one(conn, TABLE.one(conn, "WHERE id = ?", (message_id,)))


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
    stored = TABLE.insert(conn, {**doc, "_id": message_id})
    if given:
        reactions.replace(conn, message_id, given)
        return reactions.attach(conn, [stored])[0]
    stored["reactions"] = {}
    return stored


def _by_client_id(conn: sqlite3.Connection, sender_id: str, client_msg_id: str) -> Doc | None:
    doc = TABLE.one(conn, "WHERE sender_id = ? AND client_msg_id = ?", (sender_id, client_msg_id))
    return _attach_one(conn, doc)


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
    docs = TABLE.all(
        conn, f"WHERE {' AND '.join(terms)} ORDER BY id {order} LIMIT ?", (*params, limit + 1)
    )
    more, docs = len(docs) > limit, docs[:limit]
    if after is not None:
        docs.reverse()
    return reactions.attach(conn, docs), more


def _newest_live(conn: sqlite3.Connection, room_id: str) -> Doc | None:
    """The room's newest live message, without its reactions."""
    return TABLE.one(conn, "WHERE room_id = ? AND deleted = 0 ORDER BY id DESC LIMIT 1", (room_id,))


def _latest_visible(conn: sqlite3.Connection, room_id: str) -> Doc | None:
    return _attach_one(conn, _newest_live(conn, room_id))


# --- Counting -----------------------------------------------------------------------------
# Unread, for a member: live messages by others after their read pointer, no history lines,
# among the room's newest UNREAD_WINDOW (so a member far behind costs no more than that: the
# count stops there). Mentioning them: all of those, however far back, that name them
# (message_mentions) or `@room` (messages_room_mention). Each count is one range of an index.

# The newest id below the window ("" while the room has no more messages than it), so that
# one bound, max(pointer, floor), starts each range.
_FLOOR = f"""
    SELECT id FROM messages INDEXED BY messages_live
    WHERE room_id = ? AND deleted = 0 AND type <> 'system'
    ORDER BY id DESC LIMIT 1 OFFSET {UNREAD_WINDOW}
"""
# Unread after each distinct start of the JSON list ?2 in room ?1, a start being a pointer
# raised to the floor ?3, by sender: members who read up to the same message (most of a room)
# and all who are behind the window share one range, so at most UNREAD_WINDOW + 1 ranges.
_UNREAD = """
    SELECT p.start, m.sender_id, count(*)
    FROM (SELECT DISTINCT max(value, ?3) AS start FROM json_each(?2)) AS p
    JOIN messages AS m INDEXED BY messages_live
        ON m.room_id = ?1 AND m.id > p.start AND m.deleted = 0 AND m.type <> 'system'
    GROUP BY p.start, m.sender_id
"""
# One member's unread (count_unread, which needs no mention count): one range from ?2.
_UNREAD_ONE = """
    SELECT count(*) FROM messages INDEXED BY messages_live
    WHERE room_id = ?1 AND id > ?2 AND deleted = 0 AND type <> 'system' AND sender_id <> ?3
"""
# Per (user id, pointer) of the JSON object ?2: the unread messages in room ?1 naming them,
# then those with `@room` (ranges that are empty for most members).
_MENTIONS = """
    SELECT p.key,
        (SELECT count(*) FROM message_mentions AS x JOIN messages AS m ON m.id = x.message_id
         WHERE x.room_id = ?1 AND x.user_id = p.key AND x.message_id > p.value
             AND m.deleted = 0 AND m.mention_room = 0 AND m.sender_id <> p.key)
        + (SELECT count(*) FROM messages AS m INDEXED BY messages_room_mention
           WHERE m.room_id = ?1 AND m.id > p.value AND m.deleted = 0 AND m.mention_room = 1
               AND m.sender_id <> p.key)
    FROM json_each(?2) AS p
"""
_POINTERS = """
    SELECT user_id, coalesce(last_read_message_id, '') FROM memberships
    WHERE room_id = ? AND user_id IN (SELECT value FROM json_each(?))
"""


def _counts(
    conn: sqlite3.Connection, room_id: str, pointers: dict[str, str]
) -> dict[str, tuple[int, int]]:
    """(unread, mentioning) per user of `pointers` (user id -> read pointer, "" for none)."""
    floor = _floor(conn, room_id)
    ranges = (room_id, to_json(list(pointers.values())), floor)
    by_sender: dict[str, dict[str, int]] = defaultdict(dict)
    for start, sender, n in conn.execute(_UNREAD, ranges).fetchall():
        by_sender[start][sender] = n
    out = {}
    for user, mentions in conn.execute(_MENTIONS, (room_id, to_json(pointers))).fetchall():
        senders = by_sender[max(pointers[user], floor)]  # as SQLite's max() of the two texts
        out[str(user)] = (sum(senders.values()) - senders.get(user, 0), int(mentions))
    return out


def _floor(conn: sqlite3.Connection, room_id: str) -> str:
    row = conn.execute(_FLOOR, (room_id,)).fetchone()
    return str(row[0]) if row else ""


def _count_unread(conn: sqlite3.Connection, room_id: str, user_id: str, after: str) -> int:
    start = max(after, _floor(conn, room_id))
    return int(conn.execute(_UNREAD_ONE, (room_id, start, user_id)).fetchone()[0])


def _unread_counts(
    conn: sqlite3.Connection, room_id: str, user_ids: str
) -> dict[str, tuple[int, int]]:
    pointers = dict(conn.execute(_POINTERS, (room_id, user_ids)).fetchall())
    return _counts(conn, room_id, pointers) if pointers else {}


def _summaries(
    conn: sqlite3.Connection, user_id: str, pointers: list[tuple[str, str]]
) -> dict[str, tuple[int, int, Doc | None]]:
    """`_counts` and `_latest_visible` per room, in one job and one snapshot; the latest
    messages' reactions are attached with one query for all of them."""
    out: dict[str, tuple[int, int, Doc | None]] = {}
    latest: list[Doc] = []
    for room_id, after in pointers:
        doc = _newest_live(conn, room_id)
        if doc is not None:
            latest.append(doc)
        out[room_id] = (*_counts(conn, room_id, {user_id: after})[user_id], doc)
    reactions.attach(conn, latest)
    return out


def _update(conn: sqlite3.Connection, message_id: str, expect: Doc, changes: Doc) -> Doc | None:
    if "reaction_kinds" in changes and "reactions" not in changes:
        raise ValueError("reaction_kinds follows reactions; set reactions")
    # Tombstones set reactions={} (and reaction_kinds=0): the rows go, the count follows.
    plain = {k: v for k, v in changes.items() if k != "reaction_kinds"}
    sets, set_params = TABLE.assignments(plain)
    where, where_params = TABLE.conditions(expect)
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
    docs = TABLE.all(
        conn,
        "WHERE room_id = ? AND version > ? ORDER BY version LIMIT ?",
        (room_id, after_version, limit + 1),
    )
    return reactions.attach(conn, docs[:limit]), len(docs) > limit


def _many(conn: sqlite3.Connection, ids: str) -> list[Doc]:
    docs = TABLE.all(conn, "WHERE id IN (SELECT value FROM json_each(?))", (ids,))
    return reactions.attach(conn, docs)


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
    conn: sqlite3.Connection, room_ids: list[str], words: list[str], before: str | None, limit: int
) -> Page:
    if not room_ids:
        return [], False
    expression = search.match_expression(words, room_ids)
    if expression is None:
        return [], False
    params = (expression, search.bound(conn, before), id_array(room_ids), limit + 1)
    rows = conn.execute(_SEARCH, params).fetchall()
    return reactions.attach(conn, [TABLE.to_doc(r) for r in rows[:limit]]), len(rows) > limit


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

    async def unread_counts(self, room_id: str, user_ids: list[str]) -> dict[str, tuple[int, int]]:
        if not user_ids:
            return {}
        return await self.db.read(
            "messages.unread_counts", _unread_counts, str(room_id), id_array(user_ids)
        )

    async def summaries(
        self, user_id: str, read_pointers: dict[str, str | None]
    ) -> dict[str, tuple[int, int, Doc | None]]:
        if not read_pointers:
            return {}
        # As count_unread: "" is below every id.
        pointers = [(str(r), "" if a is None else str(a)) for r, a in read_pointers.items()]
        return await self.db.read("messages.summaries", _summaries, str(user_id), pointers)

    async def update(self, message_id: str, expect: Doc, changes: Doc) -> Doc | None:
        return await self.db.write("messages.update", _update, str(message_id), expect, changes)

    async def changed(self, room_id: str, after_version: int, limit: int) -> Page:
        return await self.db.read("messages.changed", _changed, str(room_id), after_version, limit)

    async def many(self, message_ids: list[str]) -> list[Doc]:
        return await self.db.read("messages.many", _many, id_array(message_ids))

    async def search(
        self, room_ids: list[str], words: list[str], *, before: str | None, limit: int
    ) -> Page:
        rooms = [str(r) for r in room_ids]
        return await self.db.read("messages.search", _search, rooms, words, before, limit)

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
