"""Call records: one row per call. A 1:1 call's row is written when it starts and when it
changes state (the live state machine is in services/direct_calls.py); a group call's row is
its live state, changed only by the conditional writes below (services/group_calls.py). Each
write runs in one writer job, so its check and its change are one atomic step."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

from fastsock.store.base import Duplicate
from fastsock.store.sqlite.codec import Doc, from_json, id_array, ident, ms, to_json, when
from fastsock.store.sqlite.columns import ID, Column, Table, unique_columns
from fastsock.store.sqlite.engine import Database

GROUP_LIVE = "kind = 'group' AND state = 'active'"  # the partial indexes' condition

TABLE = Table(
    "calls",
    ID,  # the live call's own id
    Column("room_id", ident),
    Column("kind", default="direct"),
    Column("media"),
    Column("caller_id", ident),
    Column("callee_id", ident, default=None),  # None for group calls
    Column("state"),
    Column("outcome", default=None),
    Column("end_reason", default=None),
    Column("created_at", ms, when, default=None),
    Column("answered_at", ms, when, default=None),
    Column("ended_at", ms, when, default=None),
    Column("duration_s", int, default=0, fill_empty=True),
    Column("worker_id", ident, default=None),
    Column("participant_ids", to_json, from_json, default=[], fill_empty=True),
    Column("present_ids", to_json, from_json, default=[], fill_empty=True),
    Column("moved_at", ms, when, default=None),
    unique=("id",),
    duplicate="_id",
)


def _get(conn: sqlite3.Connection, call_id: str) -> Doc | None:
    return TABLE.one(conn, "WHERE id = ?", (call_id,))


def _update(conn: sqlite3.Connection, call_id: str, changes: Doc) -> None:
    # `_id` is the row's key, never set (a whole call document may come again).
    TABLE.update(conn, call_id, {k: v for k, v in changes.items() if k != "_id"})


def _page(conn: sqlite3.Connection, room_id: str, before: str | None, limit: int) -> Any:
    if before is None:
        docs = TABLE.all(conn, "WHERE room_id = ? ORDER BY id DESC LIMIT ?", (room_id, limit + 1))
    else:
        docs = TABLE.all(
            conn,
            "WHERE room_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
            (room_id, before, limit + 1),
        )
    return docs[:limit], len(docs) > limit


def _start_group(conn: sqlite3.Connection, doc: Doc) -> Doc:
    try:
        return TABLE.insert(conn, doc)
    except sqlite3.IntegrityError as exc:  # the partial unique index calls_live_group
        if unique_columns(exc) == ("room_id",):
            raise Duplicate("room_id") from exc
        raise


def _live_group(conn: sqlite3.Connection, room_id: str) -> Doc | None:
    return TABLE.one(conn, f"WHERE room_id = ? AND {GROUP_LIVE}", (room_id,))


def _live_groups_in(conn: sqlite3.Connection, room_ids: str) -> dict[str, Doc]:
    docs = TABLE.all(
        conn, f"WHERE room_id IN (SELECT value FROM json_each(?)) AND {GROUP_LIVE}", (room_ids,)
    )
    return {d["room_id"]: d for d in docs}


def _live_on_worker(conn: sqlite3.Connection, worker_id: str) -> list[Doc]:
    return TABLE.all(conn, f"WHERE worker_id = ? AND {GROUP_LIVE} ORDER BY id", (worker_id,))


def _live_groups(conn: sqlite3.Connection) -> list[Doc]:
    # `+id`: sort the few live calls rather than walk every call ever made in id order.
    return TABLE.all(conn, f"WHERE {GROUP_LIVE} ORDER BY +id", ())


def _live(conn: sqlite3.Connection, call_id: str) -> Doc | None:
    return TABLE.one(conn, f"WHERE id = ? AND {GROUP_LIVE}", (call_id,))


def _add_participant(
    conn: sqlite3.Connection, call_id: str, user_id: str
) -> tuple[Doc | None, bool]:
    doc = _live(conn, call_id)
    if doc is None:
        return None, False
    changes = {
        field: [*doc[field], user_id]
        for field in ("participant_ids", "present_ids")
        if user_id not in doc[field]
    }
    _update(conn, call_id, changes)
    return {**doc, **changes}, "present_ids" in changes


def _remove_participant(
    conn: sqlite3.Connection, call_id: str, user_id: str
) -> tuple[Doc | None, bool]:
    doc = _live(conn, call_id)
    if doc is None or user_id not in doc["present_ids"]:
        return doc, False
    present = [u for u in doc["present_ids"] if u != user_id]
    _update(conn, call_id, {"present_ids": present})
    return {**doc, "present_ids": present}, True


def _move(
    conn: sqlite3.Connection, call_id: str, from_worker: str, to_worker: str, at: int
) -> bool:
    cursor = conn.execute(
        f"UPDATE calls SET worker_id = ?, moved_at = ? WHERE id = ? AND worker_id = ? "
        f"AND {GROUP_LIVE}",
        (to_worker, at, call_id, from_worker),
    )
    return cursor.rowcount == 1


def _end_group(
    conn: sqlite3.Connection, call_id: str, ended_at: datetime, duration_s: int, reason: str
) -> Doc | None:
    doc = _live(conn, call_id)
    if doc is None:
        return None
    changes = {
        "state": "ended",
        "outcome": "completed",
        "end_reason": reason,
        "ended_at": ended_at,
        "duration_s": duration_s,
        "present_ids": [],
    }
    _update(conn, call_id, changes)
    return _get(conn, call_id)  # as it reads back (times at millisecond precision)


class Calls:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert(self, doc: Doc) -> Doc:
        return await self.db.write("calls.insert", TABLE.insert, doc)

    async def update(self, call_id: str, changes: Doc) -> None:
        await self.db.write("calls.update", _update, str(call_id), changes)

    async def page(self, room_id: str, *, before: str | None, limit: int) -> tuple[list[Doc], bool]:
        return await self.db.read("calls.page", _page, str(room_id), before, limit)

    async def start_group(self, doc: Doc) -> Doc:
        return await self.db.write("calls.start_group", _start_group, doc)

    async def live_group(self, room_id: str) -> Doc | None:
        return await self.db.read("calls.live_group", _live_group, str(room_id))

    async def live_groups_in(self, room_ids: list[str]) -> dict[str, Doc]:
        if not room_ids:
            return {}
        return await self.db.read("calls.live_groups_in", _live_groups_in, id_array(room_ids))

    async def live_on_worker(self, worker_id: str) -> list[Doc]:
        return await self.db.read("calls.live_on_worker", _live_on_worker, str(worker_id))

    async def live_groups(self) -> list[Doc]:
        return await self.db.read("calls.live_groups", _live_groups)

    async def add_participant(self, call_id: str, user_id: str) -> tuple[Doc | None, bool]:
        return await self.db.write(
            "calls.add_participant", _add_participant, str(call_id), str(user_id)
        )

    async def remove_participant(self, call_id: str, user_id: str) -> tuple[Doc | None, bool]:
        return await self.db.write(
            "calls.remove_participant", _remove_participant, str(call_id), str(user_id)
        )

    async def move(self, call_id: str, from_worker: str, to_worker: str, at: datetime) -> bool:
        return await self.db.write(
            "calls.move", _move, str(call_id), str(from_worker), str(to_worker), ms(at)
        )

    async def end_group(
        self, call_id: str, ended_at: datetime, duration_s: int, reason: str
    ) -> Doc | None:
        return await self.db.write(
            "calls.end_group", _end_group, str(call_id), ended_at, duration_s, reason
        )
