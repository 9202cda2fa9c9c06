"""Full-text search over messages (FTS5, table messages_fts; see schema.py).

The user's words (store/words.py) never reach FTS5 as syntax: each becomes a quoted prefix
term (`"need"*`) on the text column, the terms are ANDed, and no words match nothing. Within
the quotes FTS5 tokenizes a word as it tokenized the text, so a mark `unicode61` splits at
(a Devanagari vowel sign) makes the word a phrase of adjacent tokens, still found.

FTS5 walks the matches newest-first (ORDER BY rowid DESC, the `before` cursor as a rowid bound)
and stops after one page: no sort over every match. Each hit is joined to its message, which
keeps live messages in the caller's rooms. For a handful of rooms the rooms are part of the
match too (`room_id : ("r1" OR "r2")`, room ids are indexed as tokens): FTS5 then intersects
the word's doclist with the rooms' instead of walking, say, every "the" on the server to find
the few in one quiet room. For many rooms the rooms' doclists are most of the index anyway and
the OR over them costs more than the join filter, so the join alone filters."""

from __future__ import annotations

import sqlite3

NO_BOUND = 2**63 - 1
ROOMS_IN_MATCH = 50  # up to this many rooms, the rooms are part of the FTS5 match


def sql(columns_of_m: str) -> str:
    """Parameters: match expression, rowid bound, room ids (JSON array), limit."""
    # CROSS JOIN pins the order: the FTS index drives, each hit looks up one message row.
    return f"""
        SELECT {columns_of_m}
        FROM messages_fts CROSS JOIN messages AS m ON m.seq = messages_fts.rowid
        WHERE messages_fts MATCH ? AND messages_fts.rowid < ?
          AND m.deleted = 0 AND m.room_id IN (SELECT value FROM json_each(?))
        ORDER BY messages_fts.rowid DESC
        LIMIT ?
    """


def _quoted(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def match_expression(words: list[str], room_ids: list[str]) -> str | None:
    """`text : ("w1"* AND "w2"*)`, with `AND room_id : ("r1" OR ...)` for a few rooms; None
    without words. Anything quoted is a string to FTS5, never syntax."""
    if not words:
        return None
    expression = "text : (" + " AND ".join(f"{_quoted(w)}*" for w in words) + ")"
    if len(room_ids) <= ROOMS_IN_MATCH:
        expression += " AND room_id : (" + " OR ".join(map(_quoted, room_ids)) + ")"
    return expression


def bound(conn: sqlite3.Connection, before: str | None) -> int:
    """The rowid below which to search: that of `before`, or of the first message after it
    when `before` names no message (rowids follow ids, so either way the page continues
    exactly below the cursor)."""
    if before is None:
        return NO_BOUND
    row = conn.execute(
        "SELECT seq FROM messages WHERE id >= ? ORDER BY id LIMIT 1", (before,)
    ).fetchone()
    return row[0] if row else NO_BOUND
