"""Store parity for group calls and the SFU worker registry (store/base.py `CallsRepo` group
methods, `SfuWorkersRepo`): the same calls give the same results on SQLite and MongoDB (the
`store` fixture of conftest.py), conditional writes included: of writers racing for the same
change exactly one wins."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from fastsock.store import Duplicate, Store
from fastsock.store.ids import new_id
from fastsock.store.sqlite import SqliteStore
from tests.store.documents import T0, direct_call_doc, group_call_doc, worker_doc

pytestmark = pytest.mark.once  # covers both backends itself

RACERS = 8  # concurrent writers aiming at one conditional change


def _ids(n: int) -> list[str]:
    return sorted(new_id() for _ in range(n))


def _no_database(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Any database call on the calls repository from now on fails the test."""
    handle = "db" if isinstance(store, SqliteStore) else "coll"
    monkeypatch.setattr(store.calls, handle, None)


# --- group calls ---------------------------------------------------------------------------


async def test_one_live_group_call_per_room(store: Store) -> None:
    room, other = new_id(), new_id()
    starter, worker = new_id(), new_id()
    first_id, second_id, third_id = _ids(3)
    started = await store.calls.start_group(group_call_doc(first_id, room, starter, worker))
    assert started == group_call_doc(first_id, room, starter, worker)
    assert await store.calls.live_group(room) == started

    with pytest.raises(Duplicate) as refused:
        await store.calls.start_group(group_call_doc(second_id, room, starter, worker))
    assert refused.value.args == ("room_id",)
    with pytest.raises(Duplicate) as same_id:  # the id of a call that exists, in another room
        await store.calls.start_group(group_call_doc(first_id, other, starter, worker))
    assert same_id.value.args == ("_id",)
    # Refused writes left nothing behind; another room has its own live call.
    assert await store.calls.live_group(other) is None
    assert (await store.calls.page(room, before=None, limit=10))[0] == [started]
    await store.calls.start_group(group_call_doc(second_id, other, starter, worker))

    # A 1:1 call in progress does not count as the room's group call, nor the reverse.
    await store.calls.insert(direct_call_doc(new_id(), room, starter, new_id(), state="active"))

    ended_at = T0 + timedelta(minutes=12)
    ended = await store.calls.end_group(first_id, ended_at, 720, "empty")
    assert ended == {
        **started,
        "state": "ended",
        "outcome": "completed",
        "end_reason": "empty",
        "ended_at": ended_at,
        "duration_s": 720,
    }
    assert await store.calls.live_group(room) is None
    # Once it ended, the room may have a new one.
    again = await store.calls.start_group(group_call_doc(third_id, room, starter, worker))
    assert await store.calls.live_group(room) == again
    assert await store.calls.end_group(first_id, ended_at, 1, "empty") is None  # ended already
    assert await store.calls.end_group(new_id(), ended_at, 1, "empty") is None


async def test_live_group_queries(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    rooms = _ids(4)
    quiet = new_id()
    starter = new_id()
    busy_worker, idle_worker = new_id(), new_id()
    calls = _ids(4)
    docs = [
        await store.calls.start_group(group_call_doc(c, r, starter, busy_worker))
        for c, r in zip(calls[:3], rooms[:3], strict=True)
    ]
    await store.calls.start_group(group_call_doc(calls[3], rooms[3], starter, idle_worker))
    await store.calls.end_group(calls[3], T0, 0, "empty")
    await store.calls.end_group(calls[1], T0, 0, "empty")
    live = [docs[0], docs[2]]
    await store.calls.insert(direct_call_doc(new_id(), quiet, starter, new_id(), state="active"))

    assert await store.calls.live_groups() == live
    assert await store.calls.live_on_worker(busy_worker) == live
    assert await store.calls.live_on_worker(idle_worker) == []
    assert await store.calls.live_groups_in([*rooms, quiet, new_id()]) == {
        rooms[0]: docs[0],
        rooms[2]: docs[2],
    }
    assert await store.calls.live_groups_in([rooms[1]]) == {}
    assert await store.calls.live_group(rooms[1]) is None

    _no_database(store, monkeypatch)
    assert await store.calls.live_groups_in([]) == {}


async def test_participants_join_leave_and_rejoin(store: Store) -> None:
    room, worker = new_id(), new_id()
    ann, ben = new_id(), new_id()
    call_id = new_id()
    await store.calls.start_group(group_call_doc(call_id, room, ann, worker))

    doc, added = await store.calls.add_participant(call_id, ann)
    assert added is True and doc is not None
    assert doc["participant_ids"] == [ann] and doc["present_ids"] == [ann]
    doc, added = await store.calls.add_participant(call_id, ann)  # a second device, a move
    assert added is False and doc is not None and doc["present_ids"] == [ann]
    doc, added = await store.calls.add_participant(call_id, ben)
    assert added is True and doc is not None
    assert doc["participant_ids"] == [ann, ben] and doc["present_ids"] == [ann, ben]

    doc, removed = await store.calls.remove_participant(call_id, ann)
    assert removed is True and doc is not None
    assert doc["present_ids"] == [ben] and doc["participant_ids"] == [ann, ben]
    doc, removed = await store.calls.remove_participant(call_id, ann)
    assert removed is False and doc is not None and doc["present_ids"] == [ben]
    # Back again: present after ben, and still once among the participants, in join order.
    doc, added = await store.calls.add_participant(call_id, ann)
    assert added is True and doc is not None
    assert doc["present_ids"] == [ben, ann] and doc["participant_ids"] == [ann, ben]
    assert await store.calls.live_group(room) == doc

    ended = await store.calls.end_group(call_id, T0, 60, "worker_lost")
    assert ended is not None and ended["present_ids"] == [] and ended["end_reason"] == "worker_lost"
    assert ended["participant_ids"] == [ann, ben]
    # A call that is not live takes nobody in and lets nobody out.
    assert await store.calls.add_participant(call_id, new_id()) == (None, False)
    assert await store.calls.remove_participant(call_id, ben) == (None, False)
    assert await store.calls.add_participant(new_id(), ann) == (None, False)
    assert await store.calls.remove_participant(new_id(), ann) == (None, False)
    [stored], _ = await store.calls.page(room, before=None, limit=5)
    assert stored == ended


async def test_moves_between_workers(store: Store) -> None:
    room, starter = new_id(), new_id()
    lost, spare, other = new_id(), new_id(), new_id()
    call_id = new_id()
    await store.calls.start_group(group_call_doc(call_id, room, starter, lost))
    moved_at = T0 + timedelta(seconds=7)

    assert await store.calls.move(call_id, spare, other, moved_at) is False  # not on spare
    assert await store.calls.move(call_id, lost, spare, moved_at) is True
    doc = await store.calls.live_group(room)
    assert doc is not None and doc["worker_id"] == spare and doc["moved_at"] == moved_at
    assert await store.calls.live_on_worker(lost) == []
    assert await store.calls.live_on_worker(spare) == [doc]
    assert await store.calls.move(call_id, lost, other, moved_at) is False  # moved already

    await store.calls.end_group(call_id, T0, 0, "empty")
    assert await store.calls.move(call_id, spare, other, moved_at) is False
    assert await store.calls.live_on_worker(spare) == []


async def test_racing_writers_have_one_winner(store: Store) -> None:
    room, starter, worker = new_id(), new_id(), new_id()
    call_id = new_id()
    await store.calls.start_group(group_call_doc(call_id, room, starter, worker))
    user = new_id()

    joins = await asyncio.gather(
        *(store.calls.add_participant(call_id, user) for _ in range(RACERS))
    )
    assert [added for _, added in joins].count(True) == 1
    leaves = await asyncio.gather(
        *(store.calls.remove_participant(call_id, user) for _ in range(RACERS))
    )
    assert [removed for _, removed in leaves].count(True) == 1

    targets = [new_id() for _ in range(RACERS)]
    moves = await asyncio.gather(*(store.calls.move(call_id, worker, t, T0) for t in targets))
    assert moves.count(True) == 1
    doc = await store.calls.live_group(room)
    assert doc is not None and doc["worker_id"] == targets[moves.index(True)]

    ends = await asyncio.gather(
        *(store.calls.end_group(call_id, T0, s, "empty") for s in range(RACERS))
    )
    winners = [e for e in ends if e is not None]
    assert len(winners) == 1
    [stored], _ = await store.calls.page(room, before=None, limit=5)
    assert stored == winners[0] and stored["duration_s"] == ends.index(winners[0])


async def test_direct_calls_are_unaffected(store: Store) -> None:
    room, caller, callee = new_id(), new_id(), new_id()
    direct_id, group_id = _ids(2)
    await store.calls.insert(direct_call_doc(direct_id, room, caller, callee))
    ended = T0 + timedelta(seconds=30)
    changes = {"state": "ended", "outcome": "completed", "ended_at": ended, "duration_s": 30}
    await store.calls.update(direct_id, changes)
    await store.calls.start_group(group_call_doc(group_id, room, caller, new_id()))

    (group, direct), more = await store.calls.page(room, before=None, limit=5)
    assert more is False
    assert group["kind"] == "group" and group["callee_id"] is None
    expected = direct_call_doc(direct_id, room, caller, callee, **changes)
    assert {k: direct[k] for k in expected} == expected
    # Fields of group calls a 1:1 call does not have read as empty (SQLite) or absent (Mongo).
    assert not any(direct.get(f) for f in ("worker_id", "participant_ids", "present_ids"))
    assert await store.calls.live_groups() == [group]
    assert await store.calls.add_participant(direct_id, caller) == (None, False)
    assert await store.calls.end_group(direct_id, ended, 0, "empty") is None


# --- the SFU worker registry ---------------------------------------------------------------


async def test_workers_register_heartbeat_and_reserve(store: Store) -> None:
    first, second = _ids(2)
    registered = await store.sfu_workers.upsert(worker_doc(second))
    assert registered == worker_doc(second)
    await store.sfu_workers.upsert(worker_doc(first, capacity=2))
    assert await store.sfu_workers.get(second) == registered
    assert await store.sfu_workers.get(new_id()) is None
    assert [w["_id"] for w in await store.sfu_workers.live()] == [first, second]

    await store.sfu_workers.reserve(first)
    await store.sfu_workers.reserve(first)
    assert (await store.sfu_workers.get(first))["pending"] == 2
    load = {"peers": 3, "tracks": 12, "rooms": 1, "cpu": 0.25, "capacity": 4, "draining": True}
    beat_at = T0 + timedelta(seconds=2)
    beat = await store.sfu_workers.heartbeat(first, load, beat_at)
    assert beat == worker_doc(first, **load, pending=0, heartbeat_at=beat_at)
    assert await store.sfu_workers.get(first) == beat
    with pytest.raises(ValueError, match="state"):
        await store.sfu_workers.heartbeat(first, {"peers": 9, "state": "up"}, beat_at)
    assert await store.sfu_workers.get(first) == beat  # refused: nothing changed
    assert await store.sfu_workers.heartbeat(new_id(), load, beat_at) is None

    # Registering again replaces the whole entry.
    again = worker_doc(first, url="ws://10.0.0.2:8890/ws", registered_at=beat_at)
    assert await store.sfu_workers.upsert(again) == again
    assert await store.sfu_workers.get(first) == again
    assert await store.sfu_workers.remove(first) is True
    assert await store.sfu_workers.remove(first) is False
    assert await store.sfu_workers.get(first) is None


async def test_workers_lost_once_then_pruned(store: Store) -> None:
    stale, fresh, gone = _ids(3)
    await store.sfu_workers.upsert(worker_doc(stale))
    await store.sfu_workers.upsert(worker_doc(fresh, heartbeat_at=T0 + timedelta(seconds=10)))
    await store.sfu_workers.upsert(worker_doc(gone, state="lost"))
    cutoff = T0 + timedelta(seconds=6)

    assert await store.sfu_workers.mark_lost(fresh, cutoff) is False  # heard from since
    assert await store.sfu_workers.mark_lost(stale, T0) is False  # not older than T0
    marks = await asyncio.gather(
        *(store.sfu_workers.mark_lost(stale, cutoff) for _ in range(RACERS))
    )
    assert marks.count(True) == 1
    assert (await store.sfu_workers.get(stale))["state"] == "lost"
    assert [w["_id"] for w in await store.sfu_workers.live()] == [fresh]
    # A lost worker's heartbeat is refused (it registers again); reservations skip it.
    assert await store.sfu_workers.heartbeat(stale, {"peers": 1}, cutoff) is None
    await store.sfu_workers.reserve(stale)
    assert (await store.sfu_workers.get(stale))["pending"] == 0

    assert await store.sfu_workers.prune(T0) == 0  # none older than T0
    await store.sfu_workers.mark_lost(fresh, T0 + timedelta(minutes=1))
    assert await store.sfu_workers.prune(cutoff) == 2  # stale and gone; fresh is newer
    assert await store.sfu_workers.get(fresh) is not None
    assert await store.sfu_workers.get(stale) is None and await store.sfu_workers.get(gone) is None
    await store.sfu_workers.upsert(worker_doc(stale))  # back after a restart with the same id
    assert [w["_id"] for w in await store.sfu_workers.live()] == [stale]
