"""`memberships.co_members`: who shares a room with a user (the recipients of their profile
changes), the same on both backends, in one database call."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastsock.store import Store
from fastsock.store.sqlite import SqliteStore
from tests.store.documents import T0, count_reads, new_group, new_user


async def test_everyone_sharing_a_room_once_and_no_one_else(store: Store) -> None:
    alice, bob, carol, dave, erin = [
        await new_user(store, name) for name in ("alice", "bob", "carol", "dave", "erin")
    ]
    await new_group(store, alice, bob, carol, name="one")
    await new_group(store, alice, bob, name="two")  # bob twice: counted once
    await new_group(store, dave, erin, name="apart")
    assert await store.memberships.co_members(alice) == {bob, carol}
    assert await store.memberships.co_members(carol) == {alice, bob}
    assert await store.memberships.co_members(dave) == {erin}

    # A room of one's own shares nothing; no rooms at all, nothing either.
    await new_group(store, erin, name="alone")
    assert await store.memberships.co_members(erin) == {dave}
    frank = await new_user(store, "frank")
    assert await store.memberships.co_members(frank) == set()


async def test_follows_membership_changes(store: Store) -> None:
    alice, bob, carol = [await new_user(store, name) for name in ("alice", "bob", "carol")]
    room = await new_group(store, alice, bob, name="one")
    await store.memberships.add(room, carol, "member", T0)
    assert await store.memberships.co_members(carol) == {alice, bob}
    await store.memberships.remove(room, bob)
    assert await store.memberships.co_members(alice) == {carol}
    assert await store.memberships.co_members(bob) == set()


async def test_one_reader_job_on_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = SqliteStore(tmp_path / "fastsock.db")
    await store.prepare(30)
    try:
        alice, bob = await new_user(store, "alice"), await new_user(store, "bob")
        for i in range(3):
            await new_group(store, alice, bob, name=f"r{i}")
        jobs = count_reads(store, monkeypatch)
        assert await store.memberships.co_members(alice) == {bob}
        assert jobs == ["memberships.co_members"]
    finally:
        await store.close()
