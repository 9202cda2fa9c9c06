"""Unread and mention counts on both backends (store/base.py MessagesRepo): what counts
(live messages by others after the read pointer, no history lines), what mentions a member
(their id in `mentions`, or `@room`), one grouped call for many members, and the fields a
message carries for mentions, replies and history lines."""

from __future__ import annotations

from pathlib import Path

import pytest
from bson import ObjectId

from fastsock.store import Store
from fastsock.store.base import UNREAD_WINDOW
from fastsock.store.ids import new_id
from fastsock.store.mongo import MongoStore
from fastsock.store.sqlite import SqliteStore
from tests.store.documents import T0, count_reads, message_doc, new_group, new_user, tombstone

pytestmark = pytest.mark.once  # covers both backends itself


async def _post(store: Store, room: str, sender: str, **fields: object) -> str:
    version = await store.rooms.next_version(room, T0)
    doc = message_doc(room, sender, "hi", new_id(), version=version, **fields)
    return str((await store.messages.insert(doc))["_id"])


async def test_unread_counts_skip_own_deleted_and_system_and_count_mentions(store: Store) -> None:
    alice, bob, carol = [await new_user(store, n) for n in ("alice", "bob", "carol")]
    room = await new_group(store, alice, bob, carol)
    first = await _post(store, room, alice)
    await _post(store, room, alice, mentions=[bob])
    await _post(store, room, bob, mentions=[carol], mention_room=True)  # bob's own
    gone = await _post(store, room, alice, mentions=[bob, carol])
    await store.messages.update(gone, {"deleted": False}, tombstone(9))
    await _post(store, room, alice, type="system", system={"event": "member_left"})
    await _post(store, room, carol, mention_room=True)
    assert await store.memberships.advance_read(room, carol, first, T0)
    stranger = await new_user(store, "dave")  # not a member: no key

    counts = await store.messages.unread_counts(room, [alice, bob, carol, stranger])
    assert counts == {
        alice: (2, 2),  # bob's and carol's, both @room
        bob: (3, 2),  # alice's x2 (one naming bob), carol's @room
        carol: (2, 1),  # after `first`: alice's second, bob's @room (her own not counted)
    }
    assert await store.messages.unread_counts(room, [bob]) == {bob: (3, 2)}
    assert await store.messages.unread_counts(room, []) == {}
    assert await store.messages.count_unread(room, bob, None) == 3  # no history lines
    # The room list's summaries carry the same counts.
    summary = await store.messages.summaries(bob, {room: None})
    assert summary[room][:2] == (3, 2)


async def test_message_fields_round_trip(store: Store) -> None:
    alice, bob = await new_user(store, "alice"), await new_user(store, "bob")
    room = await new_group(store, alice, bob)
    original = await _post(store, room, alice)
    reply = await _post(store, room, bob, mentions=[alice], mention_room=True, reply_to_id=original)
    line = {"event": "room_renamed", "actor_id": alice, "user_ids": [], "name": "x"}
    system = await _post(store, room, alice, type="system", system=line)
    got = await store.messages.get(reply)
    assert got is not None
    assert (got["mentions"], got["mention_room"], got["reply_to_id"]) == ([alice], True, original)
    sys_doc = await store.messages.get(system)
    assert sys_doc is not None and sys_doc["system"] == line
    plain = await store.messages.get(original)
    assert plain is not None and not plain.get("mentions") and not plain.get("mention_room")
    assert plain.get("reply_to_id") is None and plain.get("system") is None
    changed = await store.messages.update(reply, {}, {"mentions": [], "mention_room": False})
    assert changed is not None and (changed["mentions"], changed["mention_room"]) == ([], False)


async def test_unread_counts_is_one_reader_job_on_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqliteStore(tmp_path / "fastsock.db")
    await store.prepare(30)
    try:
        users = [await new_user(store, f"user{i}") for i in range(6)]
        room = await new_group(store, *users)
        await _post(store, room, users[0], mentions=users[1:3])
        jobs = count_reads(store, monkeypatch)
        counts = await store.messages.unread_counts(room, users[1:])
        assert jobs == ["messages.unread_counts"]
        assert counts == {u: (1, 1 if u in users[1:3] else 0) for u in users[1:]}
    finally:
        await store.close()


async def test_unread_stops_at_the_window_and_mentions_do_not(store: Store) -> None:
    alice, bob = await new_user(store, "alice"), await new_user(store, "bob")
    room = await new_group(store, alice, bob)
    await _post(store, room, alice, mentions=[bob])  # the oldest: outside the window
    await _post(store, room, alice, mention_room=True)
    for _ in range(UNREAD_WINDOW - 1):
        await _post(store, room, alice)
    await _post(store, room, bob)  # bob's own, inside the window: not his unread
    assert await store.messages.unread_counts(room, [bob]) == {bob: (UNREAD_WINDOW - 1, 2)}
    assert await store.messages.count_unread(room, bob, None) == UNREAD_WINDOW - 1
    assert (await store.messages.summaries(bob, {room: None}))[room][:2] == (UNREAD_WINDOW - 1, 2)
    assert await store.messages.unread_counts(room, [alice]) == {alice: (1, 0)}


async def test_pointers_behind_the_window_and_inside_it_each_count_right(store: Store) -> None:
    users = [await new_user(store, f"reader{i}") for i in range(5)]
    sender, behind, far_behind, inside, none = users
    room = await new_group(store, *users)
    ids = [await _post(store, room, sender) for _ in range(UNREAD_WINDOW + 20)]
    await _post(store, room, behind)  # his own, inside the window: never his unread
    for user, pointer in ((behind, ids[10]), (far_behind, ids[2]), (inside, ids[-6])):
        assert await store.memberships.advance_read(room, user, pointer, T0)
    # Behind the window (or no pointer) all start at its floor and share one range.
    expected = {
        behind: (UNREAD_WINDOW - 1, 0),  # the window holds his own newest message
        far_behind: (UNREAD_WINDOW, 0),
        none: (UNREAD_WINDOW, 0),
        inside: (6, 0),
    }
    assert await store.messages.unread_counts(room, list(expected)) == expected
    for user, (unread, _) in expected.items():
        pointer = (await store.memberships.get(room, user))["last_read_message_id"]
        assert await store.messages.count_unread(room, user, pointer) == unread


class _Calls:
    """A collection that counts the calls made through it, by method name."""

    def __init__(self, coll: object) -> None:
        self.coll = coll
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> object:
        if name in ("aggregate", "count_documents", "find", "find_one"):
            self.calls.append(name)
        return getattr(self.coll, name)


async def test_mongo_counts_one_aggregation_per_room(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not isinstance(store, MongoStore):
        pytest.skip("counts MongoDB commands (SQLite: one reader job, counted above)")
    alice, bob = await new_user(store, "alice"), await new_user(store, "bob")
    rooms = [await new_group(store, alice, bob, name=f"r{i}") for i in range(3)]
    for room in rooms:
        await _post(store, room, alice, mentions=[bob])
    spy = _Calls(store.messages.coll)
    monkeypatch.setattr(store.messages, "coll", spy)
    summaries = await store.messages.summaries(bob, dict.fromkeys(rooms))
    assert {r: s[:2] for r, s in summaries.items()} == dict.fromkeys(rooms, (1, 1))
    # Per room: one counting aggregation and the latest message's find; no second count.
    assert sorted(spy.calls) == sorted(["aggregate", "find_one"] * 3)
    spy.calls.clear()
    assert await store.messages.count_unread(rooms[0], bob, None) == 1
    assert spy.calls == ["aggregate"]  # no mention count for who only asks "any unread?"


async def test_mongo_stores_the_replied_to_id_as_an_object_id(store: Store) -> None:
    if not isinstance(store, MongoStore):
        pytest.skip("how MongoDB stores the reference")
    alice = await new_user(store, "alice")
    room = await new_group(store, alice)
    original = await _post(store, room, alice)
    reply = await _post(store, room, alice, reply_to_id=original)
    raw = await store.messages.coll.find_one({"_id": ObjectId(reply)})
    assert raw is not None and raw["reply_to_id"] == ObjectId(original)
    got = await store.messages.get(reply)
    assert got is not None and got["reply_to_id"] == original  # a string, as on SQLite
