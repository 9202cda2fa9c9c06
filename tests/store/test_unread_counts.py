"""Unread and mention counts on both backends (store/base.py MessagesRepo): what counts
(live messages by others after the read pointer, no history lines), what mentions a member
(their id in `mentions`, or `@room`), one grouped call for many members, and the fields a
message carries for mentions, replies and history lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastsock.store import Store
from fastsock.store.base import UNREAD_WINDOW
from fastsock.store.ids import new_id
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
