"""SQLite schema 2 (fastsock/store/sqlite/schema.py): a schema-1 file with 1:1 calls is rebuilt
so group calls fit (`callee_id` nullable), its calls kept as they were; and the group-call and
worker-registry queries are served by their indexes, as the real repositories issue them."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from fastsock.store.base import Doc
from fastsock.store.errors import Duplicate
from fastsock.store.ids import new_id
from fastsock.store.sqlite import SqliteStore, calls, schema, sfu_workers
from fastsock.store.sqlite.codec import id_array, ms
from tests.store.documents import T0, direct_call_doc, group_call_doc, worker_doc

pytestmark = pytest.mark.once  # the SQLite backend itself, whatever the suite's backend

V1_CALL_FIELDS = (
    "_id",
    "room_id",
    "kind",
    "media",
    "caller_id",
    "callee_id",
    "state",
    "outcome",
    "end_reason",
    "created_at",
    "answered_at",
    "ended_at",
    "duration_s",
)
TIMES = ("created_at", "answered_at", "ended_at")


@contextlib.contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def _v1_file(path: Path, docs: list[Doc]) -> None:
    """A database as FastSock with schema 1 left it, holding these calls."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = ", ".join("id" if f == "_id" else f for f in V1_CALL_FIELDS)
    rows = [tuple(ms(d[f]) if f in TIMES else d[f] for f in V1_CALL_FIELDS) for d in docs]
    with raw(path) as conn:
        conn.execute("BEGIN")
        for statement in schema.MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        marks = ", ".join("?" * len(V1_CALL_FIELDS))
        conn.executemany(f"INSERT INTO calls ({columns}) VALUES ({marks})", rows)
        conn.execute("COMMIT")


async def test_schema_1_calls_survive_the_rebuild(tmp_path: Path) -> None:
    path = tmp_path / "fastsock.db"
    room, ann, ben = new_id(), new_id(), new_id()
    missed, answered = sorted(new_id() for _ in range(2))
    ended = T0 + timedelta(seconds=42)
    docs = [
        direct_call_doc(missed, room, ann, ben, state="ended", outcome="missed", ended_at=T0),
        direct_call_doc(
            answered,
            room,
            ben,
            ann,
            media="video",
            state="ended",
            outcome="completed",
            end_reason="hangup",
            answered_at=T0,
            ended_at=ended,
            duration_s=42,
        ),
    ]
    _v1_file(path, docs)

    store = SqliteStore(path)
    await store.prepare(5.0)
    try:
        page, more = await store.calls.page(room, before=None, limit=10)
        assert more is False
        no_group = {"worker_id": None, "participant_ids": [], "present_ids": [], "moved_at": None}
        assert page == [{**d, **no_group} for d in reversed(docs)]
        # A group call, with no callee, now fits beside them; one live per room.
        started = await store.calls.start_group(group_call_doc(new_id(), room, ann, new_id()))
        with pytest.raises(Duplicate):
            await store.calls.start_group(group_call_doc(new_id(), room, ben, new_id()))
        assert await store.calls.live_group(room) == started
        await store.sfu_workers.upsert(worker_doc(new_id()))
    finally:
        await store.close()

    with raw(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.VERSION >= 2
        not_null = {r[1]: r[3] for r in conn.execute("PRAGMA table_info(calls)")}
        assert not_null["callee_id"] == 0 and not_null["caller_id"] == 1
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert {"calls_room", "calls_live_group", "calls_live_worker", "sfu_workers"} <= names
    assert "calls_v2" not in names


def _plans(path: Path, work: Callable[..., Any], *args: Any) -> list[str]:
    """The query plan of each statement `work(conn, *args)` runs, as the repository runs it."""
    statements: list[str] = []
    with raw(path) as conn:
        conn.set_trace_callback(statements.append)  # with the bound values filled in
        work(conn, *args)
        conn.set_trace_callback(None)
        return [
            " / ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {s}")) for s in statements
        ]


@pytest.mark.parametrize(
    ("work", "args", "index"),
    [
        (calls._live_group, (new_id(),), "calls_live_group (room_id=?)"),
        (calls._live_groups_in, (id_array([new_id(), new_id()]),), "calls_live_group (room_id=?)"),
        (calls._live_groups, (), "SCAN calls USING INDEX calls_live_group"),
        (calls._live_on_worker, (new_id(),), "calls_live_worker (worker_id=?)"),
        (sfu_workers._live, (), "sfu_workers_state (state=?)"),
        (sfu_workers._prune, (0,), "sfu_workers_state (state=? AND heartbeat_at<?)"),
    ],
    ids=["live_group", "live_groups_in", "live_groups", "live_on_worker", "live", "prune"],
)
async def test_group_call_and_worker_queries_use_their_indexes(
    tmp_path: Path, work: Callable[..., Any], args: tuple[Any, ...], index: str
) -> None:
    path = tmp_path / "fastsock.db"
    store = SqliteStore(path)
    await store.prepare(5.0)
    await store.close()
    [plan] = _plans(path, work, *args)
    assert index in plan, plan
