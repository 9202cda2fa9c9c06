"""The reactions table: one row per (message, emoji, user). Emoji are values, never column or
field names; the `{emoji: [user_id, ...]}` map is assembled when a message is read."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

from fastsock.store.sqlite.codec import Doc, id_array

Reactions = dict[str, list[str]]

_ORDER = "ORDER BY kind_seq, seq"  # emoji by first appearance, then users by reaction time


def kinds(reactions: Mapping[str, Any] | None) -> int:
    """Distinct emoji in a reactions map: an emoji nobody uses holds no slot."""
    return sum(1 for users in (reactions or {}).values() if users)


def of_message(conn: sqlite3.Connection, message_id: str) -> Reactions:
    reactions: Reactions = {}
    rows = conn.execute(
        f"SELECT emoji, user_id FROM reactions WHERE message_id = ? {_ORDER}", (message_id,)
    )
    for emoji, user_id in rows:
        reactions.setdefault(emoji, []).append(user_id)
    return reactions


def attach(conn: sqlite3.Connection, docs: list[Doc]) -> list[Doc]:
    """Fill in each document's `reactions`, with one query for all that have any
    (reaction_kinds says which: most messages have none and cost nothing)."""
    wanted = [d["_id"] for d in docs if d["reaction_kinds"]]
    maps: dict[str, Reactions] = {}
    if len(wanted) == 1:
        maps[wanted[0]] = of_message(conn, wanted[0])
    elif wanted:
        rows = conn.execute(
            "SELECT message_id, emoji, user_id FROM reactions"
            f" WHERE message_id IN (SELECT value FROM json_each(?)) {_ORDER}",
            (id_array(wanted),),
        )
        for message_id, emoji, user_id in rows:
            maps.setdefault(message_id, {}).setdefault(emoji, []).append(user_id)
    for doc in docs:
        doc["reactions"] = maps.get(doc["_id"], {})
    return docs


def _next_seq(conn: sqlite3.Connection, message_id: str) -> int:
    row = conn.execute(
        "SELECT coalesce(max(seq), 0) + 1 FROM reactions WHERE message_id = ?", (message_id,)
    ).fetchone()
    return int(row[0])


def add(conn: sqlite3.Connection, message_id: str, emoji: str, user_id: str, max_kinds: int) -> int:
    """Add one reaction; returns the change in distinct emoji (0 or 1), or -1 when nothing
    changed (already there, or a new emoji over the cap)."""
    users = conn.execute(
        "SELECT user_id, kind_seq FROM reactions WHERE message_id = ? AND emoji = ?",
        (message_id, emoji),
    ).fetchall()
    if any(u == user_id for u, _ in users):
        return -1
    kinds = 0
    seq = _next_seq(conn, message_id)
    if users:
        kind_seq = users[0][1]
    else:
        row = conn.execute(
            "SELECT reaction_kinds FROM messages WHERE id = ?", (message_id,)
        ).fetchone()
        if row[0] >= max_kinds:
            return -1
        kind_seq, kinds = seq, 1
    conn.execute(
        "INSERT INTO reactions (message_id, emoji, user_id, kind_seq, seq) VALUES (?, ?, ?, ?, ?)",
        (message_id, emoji, user_id, kind_seq, seq),
    )
    return kinds


def remove(conn: sqlite3.Connection, message_id: str, emoji: str, user_id: str) -> int | None:
    """Remove one reaction; returns the change in distinct emoji (0 or -1, an emptied emoji
    frees its slot), or None when it was not there."""
    cursor = conn.execute(
        "DELETE FROM reactions WHERE message_id = ? AND emoji = ? AND user_id = ?",
        (message_id, emoji, user_id),
    )
    if cursor.rowcount == 0:
        return None
    left = conn.execute(
        "SELECT 1 FROM reactions WHERE message_id = ? AND emoji = ? LIMIT 1", (message_id, emoji)
    ).fetchone()
    return 0 if left else -1


def replace(conn: sqlite3.Connection, message_id: str, reactions: Mapping[str, Any]) -> int:
    """Make the rows say exactly `reactions` (in its order); returns the distinct emoji."""
    conn.execute("DELETE FROM reactions WHERE message_id = ?", (message_id,))
    rows = []
    seq = 0
    for emoji, users in reactions.items():
        kind_seq = seq + 1
        for user_id in dict.fromkeys(str(u) for u in users):
            seq += 1
            rows.append((message_id, emoji, user_id, kind_seq, seq))
    conn.executemany(
        "INSERT INTO reactions (message_id, emoji, user_id, kind_seq, seq) VALUES (?, ?, ?, ?, ?)",
        rows,
    )
    return kinds(reactions)
