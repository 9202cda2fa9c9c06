"""Store parity: the same calls give the same results on both backends (store/base.py).

Each test runs against SQLite (a temporary file, as `make run` uses it) and MongoDB (the wire
stand-in), the `store` fixture of conftest.py, with the same expectations, so a behaviour one
backend has and the other lacks fails here before any service sees it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fastsock.store import Duplicate, Store
from fastsock.store.ids import new_id
from fastsock.store.mongo import MongoStore
from fastsock.store.sqlite import SqliteStore
from fastsock.store.words import search_words
from tests.store.documents import T0, count_reads, new_group, new_user, send, tombstone

pytestmark = pytest.mark.once  # covers both backends itself


async def _send(store: Store, room: str, sender: str, text: str, cid: str | None = None) -> str:
    return (await send(store, room, sender, text, cid=cid))["_id"]


async def test_users_unicode_search_and_duplicates(store: Store) -> None:
    ids = [
        await new_user(store, n, d)
        for n, d in (("zoë", "Zoë Ünal"), ("zed", "Zed"), ("amy", "Ζωή"))
    ]
    assert [u["username"] for u in await store.users.search("z", 10)] == ["zed", "zoë"]
    assert [u["username"] for u in await store.users.search("ζω", 10)] == ["amy"]
    with pytest.raises(Duplicate):
        await new_user(store, "zed")
    got = await store.users.get(ids[0])
    assert got is not None and got["display_name"] == "Zoë Ünal" and got["created_at"] == T0
    updated = await store.users.update(ids[0], {"status_message": "🌴 away", "avatar_url": "/a"})
    assert updated is not None and updated["status_message"] == "🌴 away"
    assert {u["_id"] for u in await store.users.many([*ids, new_id()])} == set(ids)


async def test_users_by_usernames_finds_only_the_named(store: Store) -> None:
    ids = {n: await new_user(store, n) for n in ("ann", "ben", "cat")}
    found = await store.users.by_usernames(["cat", "ann", "nobody"])
    assert sorted((u["username"], u["_id"]) for u in found) == [
        ("ann", ids["ann"]),
        ("cat", ids["cat"]),
    ]
    assert await store.users.by_usernames([]) == []


async def test_rooms_are_created_with_their_members_and_dms_are_unique(store: Store) -> None:
    alice, bob = await new_user(store, "alice"), await new_user(store, "bob")
    room = await new_group(store, alice, bob)
    assert await store.memberships.member_ids(room) == [alice, bob]
    assert (await store.memberships.get(room, alice))["role"] == "admin"
    dm = {
        "kind": "direct",
        "name": None,
        "private": True,
        "dm_key": f"{alice}:{bob}",
        "created_by": alice,
        "created_at": T0,
        "last_activity_at": T0,
        "version": 0,
    }
    first = await store.rooms.create(dm, [(alice, "member"), (bob, "member")], T0)
    with pytest.raises(Duplicate):
        await store.rooms.create(dm, [(alice, "member"), (bob, "member")], T0)
    # The refused copy left no memberships behind: each user is in exactly two rooms.
    assert sorted(m["room_id"] for m in await store.memberships.for_user(bob)) == sorted(
        [room, first["_id"]]
    )
    assert (await store.rooms.by_dm_key(f"{alice}:{bob}"))["_id"] == first["_id"]
    assert [r["_id"] for r in await store.rooms.public("GEN", 10)] == [room]
    assert await store.rooms.next_version(room) == 1
    assert await store.rooms.next_version(new_id()) == 0


async def test_history_paging_edges_and_ties(store: Store) -> None:
    alice, bob = await new_user(store, "alice"), await new_user(store, "bob")
    room = await new_group(store, alice, bob)
    ids = [await _send(store, room, alice, f"m{i}") for i in range(7)]
    newest, more = await store.messages.page(room, before=None, after=None, limit=7)
    assert [m["_id"] for m in newest] == ids[::-1] and not more
    page, more = await store.messages.page(room, before=ids[5], after=None, limit=3)
    assert [m["_id"] for m in page] == [ids[4], ids[3], ids[2]] and more
    page, more = await store.messages.page(room, before=ids[3], after=None, limit=3)
    assert [m["_id"] for m in page] == [ids[2], ids[1], ids[0]] and not more
    page, more = await store.messages.page(room, before=None, after=ids[1], limit=2)
    assert [m["_id"] for m in page] == [ids[3], ids[2]] and more
    page, more = await store.messages.page(room, before=ids[6], after=ids[3], limit=5)
    assert [m["_id"] for m in page] == [ids[5], ids[4]] and not more
    assert await store.messages.page(new_id(), before=None, after=None, limit=5) == ([], False)

    changed, more = await store.messages.changed(room, 4, 2)
    assert [m["version"] for m in changed] == [5, 6] and more
    assert await store.messages.count_unread(room, bob, None) == 7
    assert await store.messages.count_unread(room, bob, ids[4]) == 2
    assert await store.messages.count_unread(room, alice, None) == 0


async def test_updates_tombstones_and_latest_visible(store: Store) -> None:
    alice = await new_user(store, "alice")
    room = await new_group(store, alice)
    first, second = await _send(store, room, alice, "one"), await _send(store, room, alice, "two")
    assert await store.messages.update(second, {"deleted": True}, {"text": "x"}) is None
    edited = await store.messages.update(second, {"deleted": False}, {"text": "deux ✏️"})
    assert edited is not None and edited["text"] == "deux ✏️"
    await store.messages.add_reaction(second, "👍", alice, 9, 20)
    gone = await store.messages.update(second, {"deleted": False}, tombstone(10))
    assert gone is not None and gone["deleted"] and gone["reactions"] == {}
    assert (await store.messages.get(second))["reactions"] == {}
    assert (await store.messages.latest_visible(room))["_id"] == first
    claimed = await store.messages.update(first, {"announced": False}, {"announced": True})
    assert claimed is not None
    assert await store.messages.update(first, {"announced": False}, {"announced": True}) is None


async def test_reactions_keep_every_user_and_emoji(store: Store) -> None:
    users = [await new_user(store, f"u{i}") for i in range(3)]
    room = await new_group(store, *users)
    mid = await _send(store, room, users[0], "react")
    kinds = ["👍", "👩‍👩‍👧‍👦", "👍🏽", "🇫🇷", "1️⃣", "❤️"]
    for emoji in kinds:
        for user in users[:2]:
            assert await store.messages.add_reaction(mid, emoji, user, 1, 20) is not None
    assert await store.messages.add_reaction(mid, "👍", users[0], 2, 20) is None  # already
    doc = await store.messages.get(mid)
    assert list(doc["reactions"]) == kinds
    assert all(v == users[:2] for v in doc["reactions"].values())
    assert doc["reaction_kinds"] == 6

    # The cap counts distinct emoji; an emptied emoji frees its slot.
    assert await store.messages.add_reaction(mid, "🎉", users[2], 3, 6) is None
    assert await store.messages.add_reaction(mid, "👍", users[2], 3, 6) is not None
    assert await store.messages.remove_reaction(mid, "1️⃣", users[2], 4) is None
    await store.messages.remove_reaction(mid, "1️⃣", users[0], 4)
    left = await store.messages.remove_reaction(mid, "1️⃣", users[1], 5)
    assert left is not None and "1️⃣" not in left["reactions"] and left["reaction_kinds"] == 5
    added = await store.messages.add_reaction(mid, "🎉", users[2], 6, 6)
    assert added is not None and added["reactions"]["🎉"] == [users[2]]
    assert added["reactions"]["👍"] == users and added["version"] == 6


async def test_concurrent_writers(store: Store) -> None:
    users = [await new_user(store, f"w{i}") for i in range(20)]
    room = await new_group(store, *users)
    mid = await _send(store, room, users[0], "popular")

    async def send_twice(i: int) -> list[str]:
        out = []
        for _ in range(2):
            try:
                out.append(await _send(store, room, users[i % 20], "hi", cid=f"dup{i}"))
            except Duplicate:
                out.append("dup")
        return out

    results = await asyncio.gather(
        *(send_twice(i) for i in range(40)),
        *(store.messages.add_reaction(mid, "🔥", u, 1, 20) for u in users),
    )
    sends = results[:40]
    assert all(r[1] == "dup" for r in sends)  # the second send of each id was refused
    page, _ = await store.messages.page(room, before=None, after=None, limit=100)
    assert len(page) == 41
    assert sorted((await store.messages.get(mid))["reactions"]["🔥"]) == sorted(users)


def _search_paths(store: Store) -> Iterator[str]:
    """Each way the backend searches: MongoDB also as on a server without text search. The
    stand-in has text search, so its regex fallback is forced here (the store is the test's
    own)."""
    yield "index"
    if isinstance(store, MongoStore):
        assert store.messages.text_search, "the stand-in lost text search: test the fallback as is"
        store.messages.text_search = False
        yield "regex fallback"


async def _found(store: Store, rooms: list[str], query: str) -> set[str]:
    found, _ = await store.messages.search(rooms, search_words(query), before=None, limit=50)
    return {m["_id"] for m in found}


async def test_search_whole_words_member_scoped(store: Store) -> None:
    alice = await new_user(store, "alice")
    mine, other = await new_group(store, alice), await new_group(store, alice)
    hit = await _send(store, mine, alice, "the Needle is here")
    await _send(store, other, alice, "needle elsewhere")
    dead = await _send(store, mine, alice, "needle deleted")
    await store.messages.update(dead, {"deleted": False}, {"deleted": True, "text": ""})
    for path in _search_paths(store):
        found, more = await store.messages.search([mine], ["needle"], before=None, limit=10)
        assert [m["_id"] for m in found] == [hit] and not more, path
        found, _ = await store.messages.search([mine, other], ["NEEDLE"], before=None, limit=1)
        assert len(found) == 1 and found[0]["room_id"] == other, path
        assert await store.messages.search([mine], [], before=None, limit=10) == ([], False)
        assert await store.messages.search([], ["needle"], before=None, limit=10) == ([], False)


async def test_search_finds_words_joined_by_punctuation(store: Store) -> None:
    """A query's words are searched for one by one: "e-mail" is `e` and `mail`, and finds
    "e-mail" on every path (the regex fallback once looked for the substring "e mail")."""
    alice = await new_user(store, "alice")
    room = await new_group(store, alice)
    texts = ["send me an E-Mail", "I don't know", "see you at 10:30", "call foo.bar()", "Việt"]
    ids = [await _send(store, room, alice, text) for text in texts]
    await _send(store, room, alice, "nothing to find here")
    for path in _search_paths(store):
        for query, hit in zip(texts, ids, strict=True):
            assert await _found(store, [room], query) == {hit}, (path, query)
        assert await _found(store, [room], "e-mail?") == {ids[0]}, path
        assert await _found(store, [room], "foo.bar") == {ids[3]}, path
        # Typed with decomposed accents, found composed (words are NFC).
        assert await _found(store, [room], "Vie\u0323\u0302t") == {ids[4]}, path


async def test_search_needs_every_word_except_with_mongodb_text_search(store: Store) -> None:
    """SQLite and MongoDB's regex fallback need every word; MongoDB's $text any of them
    (docs/api.md, "Search semantics")."""
    alice = await new_user(store, "alice")
    room = await new_group(store, alice)
    both = await _send(store, room, alice, "a needle in a haystack")
    needle = await _send(store, room, alice, "just a needle")
    hay = await _send(store, room, alice, "a haystack, no more")
    for path in _search_paths(store):
        anyword = isinstance(store, MongoStore) and path == "index"
        expected = {both, needle, hay} if anyword else {both}
        assert await _found(store, [room], "needle haystack") == expected, path


async def test_memberships_read_pointer_and_log(store: Store) -> None:
    alice, bob = await new_user(store, "alice"), await new_user(store, "bob")
    room = await new_group(store, alice, bob)
    ids = [await _send(store, room, alice, f"m{i}") for i in range(3)]
    later = T0 + timedelta(seconds=5)
    assert await store.memberships.advance_read(room, bob, ids[1], T0)
    assert not await store.memberships.advance_read(room, bob, ids[0], later)  # never back
    assert await store.memberships.advance_read(room, bob, ids[2], later)
    m = await store.memberships.get(room, bob)
    assert m["last_read_message_id"] == ids[2] and m["last_read_at"] == later
    assert m["read_log"] == [[ids[1], T0], [ids[2], later]]
    assert not await store.memberships.add(room, bob, "member", T0)
    await store.memberships.set_role(room, bob, "admin")
    assert [x["role"] for x in await store.memberships.of_room(room)] == ["admin", "admin"]
    assert await store.memberships.remove(room, bob) and not await store.memberships.remove(
        room, bob
    )
    assert await store.memberships.count(room) == 1


async def test_a_member_added_caught_up_starts_with_the_read_pointer_there(store: Store) -> None:
    alice, bob, carol = [await new_user(store, n) for n in ("alice", "bob", "carol")]
    room = await new_group(store, alice)
    newest = await _send(store, room, alice, "before bob")
    later = T0 + timedelta(seconds=5)
    assert await store.memberships.add(room, bob, "member", later, newest)
    assert await store.memberships.add(room, carol, "member", later)  # a room without messages
    m = await store.memberships.get(room, bob)
    assert (m["last_read_message_id"], m["last_read_at"]) == (newest, later)
    assert m["read_log"] == [] and m["last_delivered_message_id"] is None
    c = await store.memberships.get(room, carol)
    assert c["last_read_message_id"] is None
    # A member already there keeps their own pointers.
    assert not await store.memberships.add(room, carol, "member", later, newest)
    assert (await store.memberships.get(room, carol))["last_read_message_id"] is None
    assert await store.messages.count_unread(room, bob, newest) == 0


async def test_memberships_delivered_pointers(store: Store) -> None:
    alice, bob, carol = [await new_user(store, n) for n in ("alice", "bob", "carol")]
    room, other = await new_group(store, alice, bob), await new_group(store, alice, bob)
    ids = [await _send(store, room, alice, f"m{i}") for i in range(3)]
    elsewhere = await _send(store, other, alice, "x")
    later = T0 + timedelta(seconds=5)
    m = await store.memberships.get(room, bob)
    assert m["last_delivered_message_id"] is None and m["last_delivered_at"] is None

    def pointer(m: dict) -> tuple:
        return m["last_delivered_message_id"], m["last_delivered_at"]

    await store.memberships.advance_delivered(bob, {room: ids[1], other: elsewhere}, T0)
    assert pointer(await store.memberships.get(room, bob)) == (ids[1], T0)
    assert pointer(await store.memberships.get(other, bob)) == (elsewhere, T0)
    await store.memberships.advance_delivered(bob, {room: ids[0]}, later)  # never back
    await store.memberships.advance_delivered(bob, {room: ids[1]}, later)  # nor sideways
    assert pointer(await store.memberships.get(room, bob)) == (ids[1], T0)
    await store.memberships.advance_delivered(bob, {room: ids[2]}, later)
    await store.memberships.advance_delivered(carol, {room: ids[2]}, later)  # not a member
    await store.memberships.advance_delivered(bob, {}, later)
    by_user = {m["user_id"]: m for m in await store.memberships.of_room(room)}
    assert set(by_user) == {alice, bob}
    assert pointer(by_user[bob]) == (ids[2], later)
    assert pointer(by_user[alice]) == (None, None)
    assert (await store.memberships.get(room, bob))["last_read_message_id"] is None
    assert {m["room_id"]: pointer(m) for m in await store.memberships.for_user(bob)} == {
        room: (ids[2], later),
        other: (elsewhere, T0),
    }


async def test_deliveries_tokens_uploads_calls(store: Store) -> None:
    alice, bob = await new_user(store, "alice"), await new_user(store, "bob")
    room = await new_group(store, alice, bob)
    m1, m2 = await _send(store, room, alice, "a"), await _send(store, room, alice, "b")
    assert await store.deliveries.record(bob, [m1], T0) == {m1}
    assert await store.deliveries.record(bob, [m1, m2], T0) == {m2}
    assert await store.deliveries.for_message(m1) == {bob: T0}

    await store.tokens.insert("jti-1", bob, "fam", T0, datetime.now(UTC) + timedelta(days=1))
    await store.tokens.insert("jti-old", bob, "fam2", T0, datetime.now(UTC) - timedelta(days=1))
    assert await store.tokens.get("jti-old") is None  # expired
    assert await store.tokens.mark_used("jti-1", T0) and not await store.tokens.mark_used(
        "jti-1", T0
    )
    assert not await store.tokens.family_revoked("fam")
    await store.tokens.revoke_family("fam")
    assert await store.tokens.family_revoked("fam")

    upload = new_id()
    fields = {"owner_id": bob, "name": "ü.png", "content_type": "image/png", "size": 3}
    await store.uploads.insert(upload, {**fields, "created_at": T0, "attached": False})
    await store.uploads.insert(new_id(), {**fields, "created_at": T0, "attached": False})
    assert [u["_id"] for u in await store.uploads.owned(bob, [upload])] == [upload]
    assert await store.uploads.owned(alice, [upload]) == []
    cutoff = T0 + timedelta(seconds=1)
    assert len(await store.uploads.unattached_before(cutoff, 10)) == 2
    await store.uploads.mark([upload], {"attached": True})
    assert not await store.uploads.delete_if_unattached(upload)
    att = [{"id": upload, "name": "ü.png"}]
    await store.messages.update(m1, {"deleted": False}, {"attachments": att})
    assert await store.messages.shares_upload(upload, [room])
    assert not await store.messages.shares_upload(upload, [new_id()])

    call = new_id()
    base = {"kind": "direct", "media": "audio", "caller_id": alice, "callee_id": bob}
    await store.calls.insert({"_id": call, "room_id": room, **base, "state": "ringing"})
    await store.calls.update(call, {"state": "ended", "outcome": "missed", "ended_at": T0})
    [doc], more = await store.calls.page(room, before=None, limit=5)
    assert doc["_id"] == call and doc["outcome"] == "missed" and doc["caller_id"] == alice
    assert not more


async def test_room_list_batches_equal_the_single_room_calls(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob, carol, dave = [await new_user(store, n) for n in ("alice", "bob", "carol", "dave")]
    busy = await new_group(store, alice, bob, carol)  # unread, deleted, a reaction on the newest
    ids = [await _send(store, busy, s, f"b{i}") for i, s in enumerate([alice, bob] * 4)]
    assert await store.memberships.advance_read(busy, bob, ids[1], T0)
    for dead in (ids[4], ids[5]):
        await store.messages.update(dead, {"deleted": False}, {"deleted": True, "text": ""})
    await store.messages.add_reaction(ids[7], "👍", alice, 50, 20)
    await store.messages.add_reaction(ids[7], "🎉", carol, 51, 20)
    tail = await new_group(store, bob, alice)  # its newest message deleted; never read by bob
    kept = await _send(store, tail, alice, "kept")
    gone = await _send(store, tail, alice, "gone")
    await store.messages.update(gone, {"deleted": False}, {"deleted": True, "text": ""})
    quiet = await new_group(store, bob, dave)  # no messages
    ghost = await new_group(store, bob)  # only a deleted message
    await store.messages.update(
        await _send(store, ghost, bob, "oops"), {"deleted": False}, {"deleted": True, "text": ""}
    )
    read = await new_group(store, bob, alice)  # everything read
    last = await _send(store, read, alice, "seen")
    assert await store.memberships.advance_read(read, bob, last, T0)
    # Joining order: joined together -> by user id; then later joiners.
    await store.memberships.add(quiet, carol, "member", T0 + timedelta(seconds=1))
    await store.memberships.add(quiet, alice, "member", T0 + timedelta(seconds=2))
    missing = new_id()  # no such room

    pointers = {
        str(m["room_id"]): m.get("last_read_message_id")
        for m in await store.memberships.for_user(bob)
    }
    assert pointers[busy] == ids[1] and pointers[tail] is None
    pointers[missing] = None
    rooms = list(pointers)

    summaries = await store.messages.summaries(bob, pointers)
    assert summaries == {
        r: (
            await store.messages.count_unread(r, bob, p),
            0,  # no mentions here (tests/store/test_unread_counts.py counts them)
            await store.messages.latest_visible(r),
        )
        for r, p in pointers.items()
    }
    # Not vacuous: each case is there.
    assert summaries[busy][0] == 2 and summaries[busy][2]["_id"] == ids[7]
    assert summaries[busy][2]["reactions"] == {"👍": [alice], "🎉": [carol]}
    assert summaries[tail] == (1, 0, await store.messages.get(kept))
    assert summaries[quiet] == summaries[ghost] == summaries[missing] == (0, 0, None)
    assert summaries[read][0] == 0 and summaries[read][2]["_id"] == last
    for user in (alice, carol):  # other readers, their own messages not counted
        theirs = dict.fromkeys(rooms)
        assert await store.messages.summaries(user, theirs) == {
            r: (
                await store.messages.count_unread(r, user, None),
                0,
                await store.messages.latest_visible(r),
            )
            for r in rooms
        }

    members = await store.memberships.member_ids_of(rooms)
    assert members == {r: await store.memberships.member_ids(r) for r in rooms}
    assert members[quiet] == [bob, dave, carol, alice] and members[missing] == []
    assert members[busy] == [alice, bob, carol]
    assert await store.memberships.member_ids_of([quiet]) == {quiet: members[quiet]}

    # No rooms: empty answers, and no database call.
    if isinstance(store, SqliteStore):

        async def no_reads(*args: object) -> None:
            raise AssertionError("a database call for no rooms")

        monkeypatch.setattr(store.db, "read", no_reads)
    assert await store.messages.summaries(bob, {}) == {}
    assert await store.memberships.member_ids_of([]) == {}


async def test_room_list_batches_are_one_reader_job_each_on_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqliteStore(tmp_path / "fastsock.db")
    await store.prepare(30)
    try:
        alice, bob = await new_user(store, "alice"), await new_user(store, "bob")
        rooms = [await new_group(store, alice, bob, name=f"r{i}") for i in range(5)]
        for room in rooms:
            await _send(store, room, alice, "hi")
        jobs = count_reads(store, monkeypatch)
        summaries = await store.messages.summaries(bob, dict.fromkeys(rooms))
        members = await store.memberships.member_ids_of(rooms)
        assert jobs == ["messages.summaries", "memberships.member_ids_of"]
        assert all(summaries[r][0] == 1 for r in rooms)
        assert all(members[r] == [alice, bob] for r in rooms)
    finally:
        await store.close()


async def test_moderation_bans_oldest_user_and_revoking_a_users_logins(store: Store) -> None:
    alice, bob, carol = [await new_user(store, n) for n in ("alice", "bob", "carol")]
    room = await new_group(store, alice, bob)
    oldest = await store.users.oldest()
    assert oldest is not None and oldest["_id"] == alice

    assert await store.bans.get(room, carol) is None
    await store.bans.add(room, carol, alice, T0)
    await store.bans.add(room, bob, alice, T0 + timedelta(seconds=1))
    await store.bans.add(room, carol, bob, T0 + timedelta(seconds=2))  # again: the latest counts
    bans = await store.bans.of_room(room)
    assert [(b["user_id"], b["banned_by"], b["banned_at"]) for b in bans] == [
        (bob, alice, T0 + timedelta(seconds=1)),
        (carol, bob, T0 + timedelta(seconds=2)),
    ]
    assert set(bans[0]) == {"room_id", "user_id", "banned_by", "banned_at"}
    assert await store.bans.remove(room, [alice, carol]) == [carol]
    assert await store.bans.remove(room, []) == []
    assert [b["user_id"] for b in await store.bans.of_room(room)] == [bob]

    # Deactivated accounts are left out of the directory.
    await store.users.update(bob, {"deactivated_at": T0})
    assert [u["username"] for u in await store.users.search("", 10)] == ["alice", "carol"]
    assert [u["username"] for u in await store.users.search("b", 10)] == []

    later = T0 + timedelta(days=1)
    for jti, user, family in (("a1", bob, "f1"), ("a2", bob, "f1"), ("b1", bob, "f2")):
        await store.tokens.insert(jti, user, family, T0, later.replace(year=2100))
    await store.tokens.insert("c1", carol, "f3", T0, later.replace(year=2100))
    assert sorted(await store.tokens.revoke_user(bob)) == ["f1", "f2"]
    assert await store.tokens.family_revoked("f1") and await store.tokens.family_revoked("f2")
    assert not await store.tokens.family_revoked("f3")
    assert await store.tokens.revoke_user(bob) == []
