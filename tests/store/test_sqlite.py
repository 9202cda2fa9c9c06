"""The SQLite store (fastsock/store/sqlite): every repository's semantics (mirroring the Mongo
ones), search, group commit, concurrency, file modes, migrations and transfer."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import stat
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from fastsock.store.base import COLLECTIONS, READ_LOG_MAX, key_of
from fastsock.store.errors import Duplicate
from fastsock.store.ids import new_id
from fastsock.store.sqlite import SqliteStore, is_unavailable, schema, search
from fastsock.store.sqlite.engine import Database, InUse
from fastsock.store.sqlite.errors import Closed
from fastsock.store.words import search_words
from tests.store.documents import T0, message_doc, new_group, new_user, send, tombstone

pytestmark = pytest.mark.once  # the SQLite backend itself, whatever the suite's backend

Doc = dict[str, Any]
WAIT_S = 30.0  # upper bound for a thread handshake; only reached when something is broken

# Emoji that are more than one code point: skin tones, ZWJ sequences, flags, keycaps.
THUMBS = "👍"
THUMBS_DARK = "👍🏿"
FAMILY = "👨‍👩‍👧‍👦"
RAINBOW_FLAG = "🏳️‍🌈"
KEYCAP = "1️⃣"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "fastsock.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(db_path)
    await s.prepare(5.0)
    yield s
    await s.close()


# --- helpers -------------------------------------------------------------------------------


def ids(docs: list[Doc]) -> list[str]:
    return [d["_id"] for d in docs]


@contextlib.contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection of the test's own, as another process would open the file."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


@contextlib.asynccontextmanager
async def writer_blocked(store: SqliteStore) -> AsyncIterator[threading.Event]:
    """Park the writer thread inside a job (and its transaction) until the event is set, so
    that writes submitted meanwhile queue up and make the next batch. Always released."""
    release = threading.Event()
    entered = threading.Event()

    def park(conn: sqlite3.Connection) -> None:
        entered.set()
        release.wait(WAIT_S)

    task = asyncio.ensure_future(store.db.write("park", park))
    try:
        await until(entered.is_set, "the writer to park")  # its batch is formed by now
        yield release
    finally:
        release.set()
        await task


async def until(predicate: Any, what: str) -> None:
    """Yield to other tasks until `predicate()` holds (bounded, for broken code only)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)


# --- users ---------------------------------------------------------------------------------


async def test_users_insert_get_and_duplicate(store: SqliteStore) -> None:
    user_id = await new_user(store, "alice", "Alice A.")
    assert len(user_id) == 24 and int(user_id, 16) >= 0
    doc = await store.users.get(user_id)
    assert doc is not None
    assert doc["_id"] == user_id and doc["username"] == "alice"
    assert doc["display_name"] == "Alice A." and doc["status_message"] == ""
    assert doc["avatar_url"] is None and doc["avatar_upload_id"] is None
    assert doc["created_at"] == T0 and doc["created_at"].tzinfo is not None
    assert await store.users.by_username("alice") == doc
    assert await store.users.by_username("nobody") is None
    assert await store.users.get(new_id()) is None
    with pytest.raises(Duplicate) as exc:
        await new_user(store, "alice")
    assert exc.value.args == ("username",)


async def test_users_many_search_update(store: SqliteStore) -> None:
    alice = await new_user(store, "alice", "Zed Alice")
    bob = await new_user(store, "bob", "Émile Bob")
    carol = await new_user(store, "carol", "alfred")
    assert sorted(ids(await store.users.many([alice, carol, new_id()]))) == sorted([alice, carol])
    assert await store.users.many([]) == []

    # Prefix on username or display name, any case, ordered by username.
    assert ids(await store.users.search("AL", 10)) == [alice, carol]
    assert ids(await store.users.search("émi", 10)) == [bob]
    assert ids(await store.users.search("ÉMILE", 10)) == [bob]
    assert ids(await store.users.search("lice", 10)) == []  # prefix, not substring
    assert ids(await store.users.search("", 2)) == [alice, bob]
    assert ids(await store.users.search("a", 1)) == [alice]
    assert await store.users.search("%", 10) == []  # no LIKE wildcards
    assert await store.users.search("_", 10) == []

    updated = await store.users.update(
        bob,
        {
            "display_name": "Robert",
            "status_message": "away",
            "avatar_url": "/uploads/x/thumbnail",
            "avatar_upload_id": "a" * 24,
        },
    )
    assert updated is not None
    assert updated["display_name"] == "Robert" and updated["status_message"] == "away"
    assert updated["avatar_upload_id"] == "a" * 24
    assert ids(await store.users.search("rob", 10)) == [bob]
    assert await store.users.search("émi", 10) == []
    assert await store.users.update(new_id(), {"display_name": "x"}) is None
    with pytest.raises(ValueError):
        await store.users.update(bob, {"display_name = 'x'; --": 1})


# --- refresh tokens ------------------------------------------------------------------------


async def test_tokens(store: SqliteStore) -> None:
    user = new_id()
    now = datetime.now(UTC)
    await store.tokens.insert("jti-1", user, "fam", now, now + timedelta(days=1))
    await store.tokens.insert("jti-2", user, "fam", now, now + timedelta(days=1))
    await store.tokens.insert("other", user, "fam2", now, now + timedelta(days=1))
    doc = await store.tokens.get("jti-1")
    assert doc is not None
    assert doc["_id"] == "jti-1" and doc["user_id"] == user and doc["family"] == "fam"
    assert doc["used_at"] is None and doc["revoked"] is False
    assert await store.tokens.get("missing") is None

    assert await store.tokens.mark_used("jti-1", now) is True
    assert await store.tokens.mark_used("jti-1", now) is False  # consumed once only
    used = await store.tokens.get("jti-1")
    assert used is not None and used["used_at"] is not None

    assert await store.tokens.family_revoked("fam") is False
    await store.tokens.revoke_family("fam")
    assert await store.tokens.family_revoked("fam") is True
    assert await store.tokens.family_revoked("fam2") is False
    assert await store.tokens.mark_used("jti-2", now) is False  # revoked
    revoked = await store.tokens.get("jti-2")
    assert revoked is not None and revoked["revoked"] is True


async def test_expired_tokens_read_as_absent_and_are_purged(db_path: Path) -> None:
    now = datetime.now(UTC)
    expired = {
        "_id": "old",
        "user_id": new_id(),
        "family": "f",
        "issued_at": now - timedelta(days=2),
        "expires_at": now - timedelta(seconds=1),
        "used_at": None,
        "revoked": False,
    }
    store = SqliteStore(db_path)
    await store.prepare(5.0)
    await store.transfer.import_many("refresh_tokens", [expired])  # an import keeps it
    assert await store.tokens.get("old") is None
    assert await store.tokens.mark_used("old", now) is False
    assert await store.transfer.count("refresh_tokens") == 1
    await store.close()

    again = SqliteStore(db_path)
    await again.prepare(5.0)  # start-up purges what Mongo's TTL index would have
    assert await again.transfer.count("refresh_tokens") == 0
    # Issuing a token also sweeps tokens that expired since.
    await again.transfer.import_many("refresh_tokens", [expired])
    await again.tokens.insert("live", new_id(), "f", now, now + timedelta(days=1))
    assert await again.tokens.get("live") is not None
    assert await again.transfer.count("refresh_tokens") == 1
    await again.close()


# --- rooms ---------------------------------------------------------------------------------


async def test_room_create_with_members(store: SqliteStore) -> None:
    alice, bob = await new_user(store, "alice"), await new_user(store, "bob")
    room_id = await new_group(store, alice, bob, name="Team")
    room = await store.rooms.get(room_id)
    assert room is not None
    assert room["kind"] == "group" and room["name"] == "Team" and room["private"] is False
    assert room["dm_key"] is None and room["created_by"] == alice and room["version"] == 0
    assert room["created_at"] == T0 and room["last_activity_at"] == T0
    members = await store.memberships.of_room(room_id)
    assert [(m["user_id"], m["role"]) for m in members] == [(alice, "admin"), (bob, "member")]
    assert members[0]["joined_at"] == T0
    assert await store.rooms.get(new_id()) is None


async def test_dm_duplicate_leaves_no_memberships(store: SqliteStore) -> None:
    alice, bob, mallory = [await new_user(store, n) for n in ("alice", "bob", "mallory")]
    dm_key = ":".join(sorted((alice, bob)))
    doc = {
        "kind": "direct",
        "name": None,
        "private": True,
        "dm_key": dm_key,
        "created_by": alice,
        "created_at": T0,
        "last_activity_at": T0,
        "version": 0,
    }
    first = await store.rooms.create(doc, [(alice, "member"), (bob, "member")], T0)
    assert first["dm_key"] == dm_key
    with pytest.raises(Duplicate) as exc:
        await store.rooms.create(
            {**doc, "created_by": bob}, [(bob, "member"), (mallory, "member")], T0
        )
    assert exc.value.args == ("dm_key",)
    assert await store.memberships.for_user(mallory) == []  # the refused room took no one
    assert [m["room_id"] for m in await store.memberships.for_user(bob)] == [first["_id"]]
    assert await store.transfer.count("rooms") == 1
    assert (await store.rooms.by_dm_key(dm_key)) == first
    assert await store.rooms.by_dm_key("x:y") is None


async def test_rooms_many_public_update_next_version(store: SqliteStore) -> None:
    alice = await new_user(store, "alice")
    old = await new_group(store, alice, name="Random Talk", at=T0)
    new = await new_group(store, alice, name="RANDOM ideas", at=T0 + timedelta(minutes=1))
    await new_group(store, alice, name="random secret", private=True)
    other = await new_group(store, alice, name="Café", at=T0 + timedelta(minutes=2))
    assert sorted(ids(await store.rooms.many([old, new, new_id()]))) == sorted([old, new])

    assert ids(await store.rooms.public("random", 10)) == [new, old]  # most recent first
    assert ids(await store.rooms.public("DOM TAL", 10)) == [old]  # contains, any case
    assert ids(await store.rooms.public("CAFÉ", 10)) == [other]
    assert ids(await store.rooms.public("", 2)) == [other, new]
    assert await store.rooms.public("%", 10) == []

    # A new message moves the room up.
    later = T0 + timedelta(hours=1)
    assert await store.rooms.next_version(old, later) == 1
    assert await store.rooms.next_version(old) == 2  # no activity: the time stays
    room = await store.rooms.get(old)
    assert room is not None and room["version"] == 2 and room["last_activity_at"] == later
    assert ids(await store.rooms.public("random", 10)) == [old, new]
    assert await store.rooms.next_version(new_id(), later) == 0

    updated = await store.rooms.update(new, {"name": "Serious", "private": True})
    assert updated is not None and updated["name"] == "Serious" and updated["private"] is True
    assert ids(await store.rooms.public("random", 10)) == [old]
    assert await store.rooms.update(new_id(), {"name": "x"}) is None


# --- memberships ---------------------------------------------------------------------------


async def test_memberships(store: SqliteStore) -> None:
    alice, bob, carol = [await new_user(store, n) for n in ("alice", "bob", "carol")]
    room = await new_group(store, alice)
    later = T0 + timedelta(seconds=5)
    assert await store.memberships.add(room, carol, "member", later) is True
    assert await store.memberships.add(room, bob, "member", later) is True
    assert await store.memberships.add(room, bob, "admin", later) is False  # idempotent
    bob_m = await store.memberships.get(room, bob)
    assert bob_m is not None and bob_m["role"] == "member" and bob_m["joined_at"] == later
    assert bob_m["last_read_message_id"] is None and bob_m["read_log"] == []

    # Oldest first; members who joined at the same moment by id (bob's is lower: made first).
    assert await store.memberships.member_ids(room) == [alice, bob, carol]
    assert [m["user_id"] for m in await store.memberships.of_room(room)] == [alice, bob, carol]
    assert await store.memberships.count(room) == 3
    assert [m["room_id"] for m in await store.memberships.for_user(bob)] == [room]

    await store.memberships.set_role(room, bob, "admin")
    bob_m = await store.memberships.get(room, bob)
    assert bob_m is not None and bob_m["role"] == "admin"

    assert await store.memberships.remove(room, carol) is True
    assert await store.memberships.remove(room, carol) is False
    assert await store.memberships.get(room, carol) is None
    assert await store.memberships.count(room) == 2
    assert await store.memberships.for_user(carol) == []


async def test_advance_read_moves_forward_only_and_logs(store: SqliteStore) -> None:
    alice, bob = await new_user(store, "alice"), await new_user(store, "bob")
    room = await new_group(store, alice, bob)
    msgs = [await send(store, room, alice, f"m{i}") for i in range(3)]
    at1, at2 = T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)
    assert await store.memberships.advance_read(room, bob, msgs[1]["_id"], at1) is True
    assert await store.memberships.advance_read(room, bob, msgs[0]["_id"], at2) is False
    assert await store.memberships.advance_read(room, bob, msgs[1]["_id"], at2) is False
    assert await store.memberships.advance_read(room, bob, msgs[2]["_id"], at2) is True
    m = await store.memberships.get(room, bob)
    assert m is not None
    assert m["last_read_message_id"] == msgs[2]["_id"] and m["last_read_at"] == at2
    assert m["read_log"] == [[msgs[1]["_id"], at1], [msgs[2]["_id"], at2]]
    assert await store.memberships.advance_read(room, new_id(), msgs[2]["_id"], at2) is False


async def test_read_log_keeps_the_last_moves(store: SqliteStore) -> None:
    alice = await new_user(store, "alice")
    room = await new_group(store, alice)
    total = READ_LOG_MAX + 5
    for i in range(total):
        fake = f"{i + 1:024x}"  # ids only need to grow
        at = T0 + timedelta(seconds=i)
        assert await store.memberships.advance_read(room, alice, fake, at) is True
    m = await store.memberships.get(room, alice)
    assert m is not None and len(m["read_log"]) == READ_LOG_MAX
    assert m["read_log"][0] == [f"{6:024x}", T0 + timedelta(seconds=5)]
    assert m["read_log"][-1][0] == f"{total:024x}"


# --- messages ------------------------------------------------------------------------------


async def test_message_insert_get_and_idempotency(store: SqliteStore) -> None:
    alice = await new_user(store, "alice")
    room = await new_group(store, alice)
    doc = message_doc(room, alice, "hello", "c-1", version=1)
    stored = await store.messages.insert(doc)
    assert stored["_id"] and stored["text"] == "hello" and stored["reactions"] == {}
    assert stored["announced"] is False and stored["deleted"] is False
    got = await store.messages.get(stored["_id"])
    assert got == stored
    assert await store.messages.by_client_id(alice, "c-1") == stored
    assert await store.messages.by_client_id(alice, "c-2") is None
    assert await store.messages.get(new_id()) is None

    with pytest.raises(Duplicate) as exc:
        await store.messages.insert(message_doc(room, alice, "again", "c-1"))
    assert exc.value.args == ("client_msg_id",)
    bob = await new_user(store, "bob")  # the key is per sender
    await store.messages.insert(message_doc(room, bob, "mine", "c-1"))

    # Nested values survive: attachments and a call entry.
    attachment = {"id": new_id(), "url": "/u", "name": "ünï.png", "size": 3, "width": 2}
    call = {"id": new_id(), "media": "video", "duration_s": 12, "outcome": "completed"}
    with_files = await store.messages.insert(
        message_doc(room, alice, "", "c-3", type="call", attachments=[attachment], call=call)
    )
    again = await store.messages.get(with_files["_id"])
    assert again is not None and again["attachments"] == [attachment] and again["call"] == call
    many = await store.messages.many([stored["_id"], with_files["_id"], new_id()])
    assert sorted(ids(many)) == sorted([stored["_id"], with_files["_id"]])


async def test_times_are_utc_milliseconds(store: SqliteStore) -> None:
    alice = await new_user(store, "alice")
    room = await new_group(store, alice)
    precise = datetime(2024, 1, 2, 3, 4, 5, 678999, tzinfo=UTC)
    naive = datetime(2024, 1, 2, 3, 4, 5, 1999)
    other_zone = datetime(2024, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    a = await store.messages.insert(message_doc(room, alice, "x", "t1", created_at=precise))
    b = await store.messages.insert(message_doc(room, alice, "x", "t2", created_at=naive))
    c = await store.messages.insert(message_doc(room, alice, "x", "t3", created_at=other_zone))
    ga, gb, gc = [await store.messages.get(m["_id"]) for m in (a, b, c)]
    assert ga is not None and gb is not None and gc is not None
    assert ga["created_at"] == datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    assert ga["created_at"].tzinfo is UTC
    assert gb["created_at"] == datetime(2024, 1, 2, 3, 4, 5, 1000, tzinfo=UTC)
    assert gc["created_at"] == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert gc["created_at"].utcoffset() == timedelta(0)


async def test_paging_edges(store: SqliteStore) -> None:
    alice = await new_user(store, "alice")
    room, other = await new_group(store, alice), await new_group(store, alice)
    m = [await send(store, room, alice, f"m{i}") for i in range(5)]
    await send(store, other, alice, "elsewhere")
    mid = ids(m)
    assert mid == sorted(mid)  # ids grow with insertion

    async def page(before: str | None = None, after: str | None = None, limit: int = 2) -> Any:
        docs, more = await store.messages.page(room, before=before, after=after, limit=limit)
        return ids(docs), more

    n = mid
    assert await page() == ([n[4], n[3]], True)
    assert await page(before=n[3]) == ([n[2], n[1]], True)
    assert await page(before=n[2]) == ([n[1], n[0]], False)  # exactly the limit left
    assert await page(before=n[0]) == ([], False)
    assert await page(after=n[1]) == ([n[3], n[2]], True)  # oldest newer than after
    assert await page(after=n[2]) == ([n[4], n[3]], False)
    assert await page(after=n[4]) == ([], False)
    assert await page(after=n[0], before=n[4], limit=10) == ([n[3], n[2], n[1]], False)
    assert await page(after=n[0], before=n[4], limit=3) == ([n[3], n[2], n[1]], False)
    assert await page(after=n[0], before=n[4], limit=2) == ([n[2], n[1]], True)
    assert await page(limit=5) == (list(reversed(n)), False)
    assert await page(limit=4) == (list(reversed(n[1:])), True)
    assert await page(before="f" * 24, limit=1) == ([n[4]], True)  # a cursor past the end
    assert await store.messages.page(new_id(), before=None, after=None, limit=5) == ([], False)


async def test_latest_visible_count_unread(store: SqliteStore) -> None:
    alice, bob = await new_user(store, "alice"), await new_user(store, "bob")
    room = await new_group(store, alice, bob)
    assert await store.messages.latest_visible(room) is None
    a1 = await send(store, room, alice)
    b1 = await send(store, room, bob)
    b2 = await send(store, room, bob)
    a2 = await send(store, room, alice)
    b3 = await send(store, room, bob)
    assert await store.messages.count_unread(room, alice, None) == 3
    assert await store.messages.count_unread(room, bob, None) == 2
    assert await store.messages.count_unread(room, alice, b1["_id"]) == 2
    assert await store.messages.count_unread(room, alice, b3["_id"]) == 0
    assert await store.messages.count_unread(room, bob, a1["_id"]) == 1

    latest = await store.messages.latest_visible(room)
    assert latest is not None and latest["_id"] == b3["_id"]
    version = await store.rooms.next_version(room)
    assert await store.messages.update(b3["_id"], {"deleted": False}, tombstone(version))
    latest = await store.messages.latest_visible(room)
    assert latest is not None and latest["_id"] == a2["_id"]
    assert await store.messages.count_unread(room, alice, None) == 2  # deleted ones do not count
    assert await store.messages.count_unread(room, alice, b2["_id"]) == 0


async def test_update_expect_and_changes(store: SqliteStore) -> None:
    alice = await new_user(store, "alice")
    room = await new_group(store, alice)
    msg = await send(store, room, alice, "first")

    # Announce once: only one claim matches.
    claimed = await store.messages.update(msg["_id"], {"announced": False}, {"announced": True})
    assert claimed is not None and claimed["announced"] is True
    assert (
        await store.messages.update(msg["_id"], {"announced": False}, {"announced": True}) is None
    )

    edited_at = T0 + timedelta(minutes=3)
    edited = await store.messages.update(
        msg["_id"], {"deleted": False}, {"text": "second", "edited_at": edited_at, "version": 7}
    )
    assert edited is not None
    assert edited["text"] == "second" and edited["edited_at"] == edited_at
    assert edited["version"] == 7
    assert await store.messages.update(new_id(), {"deleted": False}, {"text": "x"}) is None
    assert await store.messages.update(msg["_id"], {"edited_at": None}, {"text": "x"}) is None
    matched = await store.messages.update(msg["_id"], {"edited_at": edited_at}, {})
    assert matched == edited  # nothing to set: the message as it is
    with pytest.raises(ValueError):
        await store.messages.update(msg["_id"], {}, {"no_such_field": 1})
    with pytest.raises(ValueError):
        await store.messages.update(msg["_id"], {"text; DROP TABLE messages": 1}, {"text": "y"})


async def test_changed_orders_by_version(store: SqliteStore) -> None:
    alice = await new_user(store, "alice")
    room = await new_group(store, alice)
    m = [await send(store, room, alice, f"m{i}") for i in range(4)]  # versions 1..4
    # Edit the oldest: it becomes the newest change.
    version = await store.rooms.next_version(room)
    await store.messages.update(m[0]["_id"], {}, {"text": "edited", "version": version})

    docs, more = await store.messages.changed(room, 0, 10)
    assert ids(docs) == [m[1]["_id"], m[2]["_id"], m[3]["_id"], m[0]["_id"]]
    assert [d["version"] for d in docs] == [2, 3, 4, 5] and more is False
    docs, more = await store.messages.changed(room, 2, 2)
    assert ids(docs) == [m[2]["_id"], m[3]["_id"]] and more is True
    docs, more = await store.messages.changed(room, 3, 2)
    assert ids(docs) == [m[3]["_id"], m[0]["_id"]] and more is False  # exactly the limit
    assert await store.messages.changed(room, 5, 10) == ([], False)


# --- reactions -----------------------------------------------------------------------------


async def test_reactions_two_users_and_multi_codepoint_emoji(store: SqliteStore) -> None:
    alice, bob = await new_user(store, "alice"), await new_user(store, "bob")
    room = await new_group(store, alice, bob)
    msg = await send(store, room, alice)
    mid = msg["_id"]
    r = store.messages

    doc = await r.add_reaction(mid, FAMILY, bob, 10, 20)
    assert doc is not None and doc["reactions"] == {FAMILY: [bob]} and doc["version"] == 10
    doc = await r.add_reaction(mid, THUMBS, alice, 11, 20)
    doc = await r.add_reaction(mid, FAMILY, alice, 12, 20)
    doc = await r.add_reaction(mid, THUMBS_DARK, bob, 13, 20)  # a different emoji from 👍
    doc = await r.add_reaction(mid, RAINBOW_FLAG, bob, 14, 20)
    doc = await r.add_reaction(mid, KEYCAP, alice, 15, 20)
    assert doc is not None
    assert list(doc["reactions"].items()) == [
        (FAMILY, [bob, alice]),  # emoji by first use, users by when they reacted
        (THUMBS, [alice]),
        (THUMBS_DARK, [bob]),
        (RAINBOW_FLAG, [bob]),
        (KEYCAP, [alice]),
    ]
    assert doc["reaction_kinds"] == 5 and doc["version"] == 15
    assert await r.add_reaction(mid, FAMILY, bob, 16, 20) is None  # already there
    got = await r.get(mid)
    assert got is not None and got["reactions"] == doc["reactions"] and got["version"] == 15

    # Bob leaves the family emoji: it keeps its place, Alice still uses it.
    doc = await r.remove_reaction(mid, FAMILY, bob, 17)
    assert doc is not None and next(iter(doc["reactions"])) == FAMILY
    assert doc["reactions"][FAMILY] == [alice] and doc["reaction_kinds"] == 5
    # Alice's 👍 was its only user: the emoji goes (and frees its slot), and comes back last.
    doc = await r.remove_reaction(mid, THUMBS, alice, 18)
    assert doc is not None and THUMBS not in doc["reactions"] and doc["reaction_kinds"] == 4
    assert await r.remove_reaction(mid, THUMBS, alice, 19) is None  # not there
    doc = await r.add_reaction(mid, THUMBS, bob, 20, 20)
    assert doc is not None and list(doc["reactions"])[-1] == THUMBS

    # Read paths that return many messages carry the same map.
    page, _ = await r.page(room, before=None, after=None, limit=10)
    assert page[0]["reactions"] == doc["reactions"]
    assert (await r.many([mid]))[0]["reactions"] == doc["reactions"]


async def test_reaction_kinds_cap(store: SqliteStore) -> None:
    alice, bob = await new_user(store, "alice"), await new_user(store, "bob")
    room = await new_group(store, alice, bob)
    mid = (await send(store, room, alice))["_id"]
    r = store.messages
    for i, emoji in enumerate(["😀", "😂", "🎉"]):
        assert await r.add_reaction(mid, emoji, alice, i + 1, 3) is not None
    assert await r.add_reaction(mid, "🔥", alice, 9, 3) is None  # a 4th kind is refused
    assert await r.add_reaction(mid, "😀", bob, 10, 3) is not None  # joining one is fine
    got = await r.get(mid)
    assert got is not None and got["reaction_kinds"] == 3 and got["version"] == 10
    assert "🔥" not in got["reactions"]

    # Emptying a kind frees its slot; a kind with a user left does not.
    await r.remove_reaction(mid, "😀", alice, 11)
    assert await r.add_reaction(mid, "🔥", alice, 12, 3) is None
    await r.remove_reaction(mid, "🎉", alice, 13)
    doc = await r.add_reaction(mid, "🔥", alice, 14, 3)
    assert doc is not None and list(doc["reactions"]) == ["😀", "😂", "🔥"]


async def test_tombstone_clears_reactions_and_refuses_new_ones(store: SqliteStore) -> None:
    alice, bob = await new_user(store, "alice"), await new_user(store, "bob")
    room = await new_group(store, alice, bob)
    mid = (await send(store, room, alice, "doomed"))["_id"]
    await store.messages.add_reaction(mid, THUMBS, bob, 5, 20)
    await store.messages.add_reaction(mid, FAMILY, alice, 6, 20)
    dead = await store.messages.update(mid, {"deleted": False}, tombstone(7))
    assert dead is not None
    assert dead["deleted"] is True and dead["deleted_at"] == T0 and dead["text"] == ""
    assert dead["reactions"] == {} and dead["reaction_kinds"] == 0
    assert await store.messages.update(mid, {"deleted": False}, tombstone(8)) is None
    with raw(store.path) as conn:  # the rows are gone, not just hidden
        assert conn.execute("SELECT count(*) FROM reactions").fetchone()[0] == 0
    assert await store.messages.add_reaction(mid, THUMBS, bob, 9, 20) is None
    assert await store.messages.remove_reaction(mid, THUMBS, bob, 9) is None
    assert await store.messages.add_reaction(new_id(), THUMBS, bob, 9, 20) is None


# --- uploads shared by messages ------------------------------------------------------------


async def test_shares_upload(store: SqliteStore) -> None:
    alice = await new_user(store, "alice")
    room, other = await new_group(store, alice), await new_group(store, alice)
    upload = new_id()
    files = [{"id": upload, "name": "a.pdf"}, {"id": new_id(), "name": "b.pdf"}]
    assert await store.messages.shares_upload(upload, None) is False
    msg = await store.messages.insert(
        message_doc(room, alice, "", "att-1", type="file", attachments=files)
    )
    assert await store.messages.shares_upload(upload, None) is True
    assert await store.messages.shares_upload(upload, [room]) is True
    assert await store.messages.shares_upload(upload, [other]) is False
    assert await store.messages.shares_upload(upload, []) is False
    assert await store.messages.shares_upload(files[1]["id"], [other, room]) is True

    # A second message shares it too; deleting one leaves the other sharing.
    second = await store.messages.insert(
        message_doc(other, alice, "", "att-2", type="file", attachments=files[:1])
    )
    await store.messages.update(msg["_id"], {"deleted": False}, tombstone(3))
    assert await store.messages.shares_upload(upload, [room]) is False
    assert await store.messages.shares_upload(upload, None) is True
    assert await store.messages.shares_upload(files[1]["id"], None) is False
    await store.messages.update(second["_id"], {"deleted": False}, tombstone(4))
    assert await store.messages.shares_upload(upload, None) is False


# --- search --------------------------------------------------------------------------------


async def test_search_prefix_words_and_diacritics(store: SqliteStore) -> None:
    alice = await new_user(store, "alice")
    room = await new_group(store, alice)
    needle = await send(store, room, alice, "Found the needle in a haystack")
    creme = await send(store, room, alice, "Crème brûlée for dessert")
    both = await send(store, room, alice, "needles and pins")
    emoji = await send(store, room, alice, "party 🎉 time")

    async def find(query: str) -> list[str]:
        docs, _ = await store.messages.search([room], search_words(query), before=None, limit=10)
        return ids(docs)

    assert await find("need") == [both["_id"], needle["_id"]]  # prefix, newest first
    assert await find("NEEDLE") == [both["_id"], needle["_id"]]
    assert await find("needle hay") == [needle["_id"]]  # every word must match
    assert await find("needle dessert") == []
    assert await find("creme brulee") == [creme["_id"]]
    assert await find("CRÈME") == [creme["_id"]]
    assert await find("  pins,  needles!! ") == [both["_id"]]
    assert await find("party time") == [emoji["_id"]]
    assert await find("edle") == []  # prefixes, not substrings
    viet = await send(store, room, alice, "Việt Nam")  # stored composed (NFC)
    assert await find("Vie\u0323\u0302t") == [viet["_id"]]  # typed decomposed (NFD)
    assert await find("viet") == [viet["_id"]]
    for nothing in ("", "   ", "🎉", "!!!", "*", "___"):
        assert await find(nothing) == [], nothing


@pytest.mark.parametrize(
    "query",
    [
        'a" OR *',
        "NEAR(",
        'NEAR("a" "b", 3)',
        '"',
        '""',
        "*",
        "^",
        "a:b",
        "-x",
        "(",
        ")",
        "text:needle",
        "{text}: needle",
        "needle OR haystack",
        "AND",
        "NOT needle",
        "a + b",
    ],
)
async def test_search_never_parses_user_syntax(store: SqliteStore, query: str) -> None:
    alice = await new_user(store, "alice")
    room = await new_group(store, alice)
    await send(store, room, alice, "needle haystack")
    plain = await send(store, room, alice, "near a b text plus")
    # No error, and the words are plain words: "OR", "NEAR", "text" are searched for.
    docs, more = await store.messages.search([room], search_words(query), before=None, limit=10)
    assert more is False
    if query == "NEAR(":
        assert ids(docs) == [plain["_id"]]
    if query == 'a" OR *':
        assert docs == []  # "a" and "or" must both match; no message has "or…"


async def test_search_scoped_to_rooms_and_live_messages(store: SqliteStore) -> None:
    alice, bob = await new_user(store, "alice"), await new_user(store, "bob")
    mine = await new_group(store, alice)
    theirs = await new_group(store, bob)
    visible = await send(store, mine, alice, "secret plans")
    await send(store, theirs, bob, "secret elsewhere")
    gone = await send(store, mine, alice, "secret deleted")
    await store.messages.update(gone["_id"], {"deleted": False}, tombstone(9))
    docs, _ = await store.messages.search([mine], ["secret"], before=None, limit=10)
    assert ids(docs) == [visible["_id"]]
    docs, _ = await store.messages.search([mine, theirs], ["secret"], before=None, limit=10)
    assert len(docs) == 2
    assert await store.messages.search([], ["secret"], before=None, limit=10) == ([], False)

    # Edits are searchable at once, and the old words are gone.
    await store.messages.update(visible["_id"], {}, {"text": "public roadmap"})
    assert (await store.messages.search([mine], ["secret"], before=None, limit=10))[0] == []
    docs, _ = await store.messages.search([mine], ["road"], before=None, limit=10)
    assert ids(docs) == [visible["_id"]]


@pytest.mark.parametrize("rooms", [1, search.ROOMS_IN_MATCH, search.ROOMS_IN_MATCH + 1])
async def test_search_scoping_with_few_and_many_rooms(store: SqliteStore, rooms: int) -> None:
    """Few rooms are part of the FTS5 match, many are filtered by the join: same results."""
    alice = await new_user(store, "alice")
    mine = [await new_group(store, alice, name=f"r{i}") for i in range(rooms)]
    outside = await new_group(store, alice, name="outside")
    expected = [
        (await send(store, r, alice, f"common word {i}"))["_id"] for i, r in enumerate(mine)
    ]
    for i in range(30):  # matches elsewhere, newer than all of mine
        await send(store, outside, alice, f"common word outside {i}")
    docs, more = await store.messages.search(mine, ["common"], before=None, limit=rooms)
    assert ids(docs) == expected[::-1] and more is False
    docs, more = await store.messages.search(mine, ["comm", "wor"], before=None, limit=1)
    assert ids(docs) == [expected[-1]] and more is (rooms > 1)
    # A room id is only ever a room filter, never a searchable word.
    assert (await store.messages.search(mine, [mine[0][:6]], before=None, limit=5))[0] == []


async def test_search_paging_with_before(store: SqliteStore) -> None:
    alice = await new_user(store, "alice")
    room = await new_group(store, alice)
    hits = []
    for i in range(5):
        hits.append(await send(store, room, alice, f"match number {i}"))
        new_id()  # an id no message has, between two that do
    await send(store, room, alice, "no luck")
    newest_first = list(reversed(ids(hits)))

    async def search(before: str | None, limit: int) -> tuple[list[str], bool]:
        docs, more = await store.messages.search([room], ["match"], before=before, limit=limit)
        return ids(docs), more

    assert await search(None, 2) == (newest_first[:2], True)
    assert await search(newest_first[1], 2) == (newest_first[2:4], True)
    assert await search(newest_first[2], 2) == (newest_first[3:5], False)  # exactly the limit
    assert await search(newest_first[4], 2) == ([], False)
    assert await search(None, 5) == (newest_first, False)
    # A cursor that names no message still continues below it.
    between = f"{int(hits[2]['_id'], 16) + 1:024x}"
    assert between < hits[3]["_id"]
    assert await search(between, 10) == (newest_first[2:], False)
    assert await search("f" * 24, 1) == (newest_first[:1], True)


# --- deliveries, uploads, calls ------------------------------------------------------------


async def test_deliveries(store: SqliteStore) -> None:
    m1, m2, user, other = new_id(), new_id(), new_id(), new_id()
    t1, t2 = T0, T0 + timedelta(seconds=1)
    assert await store.deliveries.record(user, [m1, m2], t1) == {m1, m2}
    assert await store.deliveries.record(user, [m1, m2], t2) == set()
    assert await store.deliveries.record(other, [m1], t2) == {m1}
    assert await store.deliveries.record(user, [], t2) == set()
    assert await store.deliveries.for_message(m1) == {user: t1, other: t2}
    assert await store.deliveries.for_message(new_id()) == {}


async def test_uploads(store: SqliteStore) -> None:
    owner, other = new_id(), new_id()
    old, fresh, image = new_id(), new_id(), new_id()
    base = {
        "owner_id": owner,
        "name": "f.pdf",
        "content_type": "application/pdf",
        "size": 10,
        "attached": False,
        "avatar": False,
        "width": None,
        "height": None,
    }
    doc = await store.uploads.insert(old, {**base, "created_at": T0})
    assert doc["_id"] == old and doc["attached"] is False and doc["created_at"] == T0
    await store.uploads.insert(fresh, {**base, "created_at": T0 + timedelta(days=2)})
    await store.uploads.insert(
        image,
        {
            **base,
            "content_type": "image/png",
            "width": 3,
            "height": 4,
            "thumbnail_size": 99,
            "created_at": T0,
        },
    )
    with pytest.raises(Duplicate):
        await store.uploads.insert(old, {**base, "created_at": T0})
    got = await store.uploads.get(image)
    assert got is not None and (got["width"], got["height"], got["thumbnail_size"]) == (3, 4, 99)
    assert await store.uploads.get(new_id()) is None
    assert sorted(ids(await store.uploads.owned(owner, [old, image, new_id()]))) == sorted(
        [old, image]
    )
    assert await store.uploads.owned(other, [old]) == []

    cutoff = T0 + timedelta(days=1)
    assert sorted(ids(await store.uploads.unattached_before(cutoff, 10))) == sorted([old, image])
    assert len(await store.uploads.unattached_before(cutoff, 1)) == 1
    await store.uploads.mark([image], {"attached": True, "avatar": True})
    marked = await store.uploads.get(image)
    assert marked is not None and marked["attached"] is True and marked["avatar"] is True
    assert ids(await store.uploads.unattached_before(cutoff, 10)) == [old]
    assert await store.uploads.delete_if_unattached(image) is False
    assert await store.uploads.delete_if_unattached(old) is True
    assert await store.uploads.delete_if_unattached(old) is False
    updated = await store.uploads.update(fresh, {"name": "g.pdf"})
    assert updated is not None and updated["name"] == "g.pdf"
    assert await store.uploads.update(new_id(), {"name": "x"}) is None


async def test_calls(store: SqliteStore) -> None:
    room = new_id()
    call_ids = sorted(new_id() for _ in range(3))
    for cid in call_ids:
        await store.calls.insert(
            {
                "_id": cid,
                "room_id": room,
                "kind": "direct",
                "media": "audio",
                "caller_id": "a" * 24,
                "callee_id": "b" * 24,
                "state": "ringing",
                "outcome": None,
                "end_reason": None,
                "created_at": T0,
                "answered_at": None,
                "ended_at": None,
                "duration_s": 0,
            }
        )
    ended = T0 + timedelta(seconds=30)
    await store.calls.update(
        call_ids[0],
        {
            "state": "ended",
            "outcome": "completed",
            "answered_at": T0,
            "ended_at": ended,
            "duration_s": 30,
        },
    )
    docs, more = await store.calls.page(room, before=None, limit=2)
    assert ids(docs) == [call_ids[2], call_ids[1]] and more is True
    docs, more = await store.calls.page(room, before=call_ids[1], limit=2)
    assert ids(docs) == [call_ids[0]] and more is False
    assert docs[0]["state"] == "ended" and docs[0]["ended_at"] == ended
    assert docs[0]["duration_s"] == 30 and docs[0]["outcome"] == "completed"
    assert await store.calls.page(new_id(), before=None, limit=2) == ([], False)


# --- the writer: group commit, concurrency, durability ------------------------------------


async def test_group_commit_one_failure_does_not_sink_the_batch(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await new_user(store, "alice")
    room = await new_group(store, alice)
    await store.messages.insert(message_doc(room, alice, "taken", "dup"))
    batches: list[int] = []
    original = Database._transaction

    def spy(conn: sqlite3.Connection, batch: list[Any]) -> Any:
        batches.append(len(batch))
        return original(conn, batch)

    monkeypatch.setattr(Database, "_transaction", staticmethod(spy))
    async with writer_blocked(store):
        # Queued behind the parked job, these make up one batch.
        tasks = [
            asyncio.ensure_future(store.messages.insert(message_doc(room, alice, "a", "ok-1"))),
            asyncio.ensure_future(store.messages.insert(message_doc(room, alice, "b", "dup"))),
            asyncio.ensure_future(store.users.update(alice, {"no_such_field": 1})),
            asyncio.ensure_future(store.messages.insert(message_doc(room, alice, "c", "ok-2"))),
        ]
        await until(lambda: store.db._queue.qsize() == len(tasks), "the writes to queue")
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert batches[-1] == len(tasks)  # one transaction for all four
    assert results[0]["text"] == "a" and results[3]["text"] == "c"
    assert isinstance(results[1], Duplicate) and isinstance(results[2], ValueError)
    # What was acknowledged is committed: another connection sees it.
    with raw(store.path) as conn:
        rows = conn.execute("SELECT client_msg_id, text FROM messages ORDER BY seq").fetchall()
    assert rows == [("dup", "taken"), ("ok-1", "a"), ("ok-2", "c")]


async def test_writes_resolve_only_after_commit(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen_in_transaction: list[bool] = []
    original = Database._settle

    def spy(batch: list[Any], outcomes: list[Any]) -> None:
        with raw(store.path) as conn:  # what a crash right now would leave
            count = conn.execute("SELECT count(*) FROM users").fetchone()[0]
        seen_in_transaction.append(count == 0)
        original(batch, outcomes)

    monkeypatch.setattr(Database, "_settle", staticmethod(spy))
    await new_user(store, "alice")
    assert seen_in_transaction == [False]  # committed before the caller heard of it


async def test_concurrent_inserts_all_stored_once(store: SqliteStore) -> None:
    alice = await new_user(store, "alice")
    room = await new_group(store, alice)
    n = 200
    # Every send twice, at once (a retry racing the original): one of each pair wins.
    docs = [message_doc(room, alice, f"message {i}", f"cm-{i}") for i in range(n)]
    results = await asyncio.gather(
        *(store.messages.insert(d) for d in docs + docs), return_exceptions=True
    )
    stored = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, Duplicate)]
    assert len(stored) == n and len(refused) == n
    assert len({d["_id"] for d in stored}) == n
    assert await store.transfer.count("messages") == n
    with raw(store.path) as conn:
        by_seq = [r[0] for r in conn.execute("SELECT id FROM messages ORDER BY seq")]
        cids = {r[0] for r in conn.execute("SELECT client_msg_id FROM messages")}
    assert by_seq == sorted(by_seq)  # rowids grow with ids
    assert cids == {f"cm-{i}" for i in range(n)}


async def test_event_loop_runs_during_a_big_write_batch(store: SqliteStore) -> None:
    alice = await new_user(store, "alice")
    room = await new_group(store, alice)
    ticks = 0
    during = threading.Event()  # set by the heartbeat once it ticked inside the batch
    in_batch = threading.Event()
    stop = asyncio.Event()

    async def heartbeat() -> None:
        nonlocal ticks
        seen = 0
        while not stop.is_set():
            ticks += 1
            if in_batch.is_set():
                seen += 1
                if seen >= 5:
                    during.set()
            await asyncio.sleep(0)

    def waits_for_heartbeat(conn: sqlite3.Connection) -> bool:
        # Runs inside the writer's transaction, after hundreds of inserts: it only returns
        # True if the event loop kept running meanwhile.
        in_batch.set()
        return during.wait(WAIT_S)

    beat = asyncio.ensure_future(heartbeat())
    try:
        async with writer_blocked(store):
            inserts = [
                asyncio.ensure_future(
                    store.messages.insert(message_doc(room, alice, f"bulk {i}", f"b-{i}"))
                )
                for i in range(500)
            ]
            probe = asyncio.ensure_future(store.db.write("probe", waits_for_heartbeat))
            await until(lambda: store.db._queue.qsize() == 501, "the batch to queue")
        assert await probe is True
        assert len(await asyncio.gather(*inserts)) == 500
    finally:
        stop.set()
        await beat
    # Reads too run off the loop: a slow read does not stop the heartbeat either.
    during.clear()
    in_batch.clear()
    stop.clear()
    beat = asyncio.ensure_future(heartbeat())
    try:
        assert await store.db.read("probe", waits_for_heartbeat) is True
    finally:
        stop.set()
        await beat


async def test_readers_are_not_blocked_by_an_open_write(store: SqliteStore) -> None:
    alice = await new_user(store, "alice")
    async with writer_blocked(store) as release:
        # The writer holds an open transaction (BEGIN IMMEDIATE): reads still answer.
        assert (await store.users.get(alice)) is not None
        assert await store.ping() is True
        release.set()


async def test_a_reader_elsewhere_does_not_block_writes(store: SqliteStore) -> None:
    """Another process holding a read transaction (a backup, the sqlite3 shell): WAL lets
    the writer carry on, and nothing reports "database is locked"."""
    await new_user(store, "alice")
    with raw(store.path) as conn:
        conn.execute("BEGIN")
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (1,)
        await new_user(store, "bob")  # commits while the snapshot is open
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (1,)
        conn.execute("COMMIT")
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (2,)


async def test_observe_times_each_operation(db_path: Path) -> None:
    seen: list[tuple[str, float]] = []
    store = SqliteStore(db_path, observe=lambda name, s: seen.append((name, s)))
    await store.prepare(5.0)
    alice = await new_user(store, "alice")
    await store.users.get(alice)
    await store.close()
    names = [n for n, _ in seen]
    assert names == ["prepare", "users.insert", "users.get"]
    assert all(s >= 0 for _, s in seen)


async def test_close_drains_queued_writes_then_refuses(db_path: Path) -> None:
    store = SqliteStore(db_path)
    await store.prepare(5.0)
    async with writer_blocked(store):
        pending = [asyncio.ensure_future(new_user(store, f"user{i}")) for i in range(20)]
        await until(lambda: store.db._queue.qsize() == 20, "the writes to queue")
        closing = asyncio.ensure_future(store.close())
        await asyncio.sleep(0)
    await closing
    assert len(set(await asyncio.gather(*pending))) == 20  # all acknowledged, none lost
    with pytest.raises(Closed) as exc:
        await store.users.get("x" * 24)
    assert is_unavailable(exc.value)
    assert await store.ping() is False
    with raw(db_path) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 20


async def test_unprepared_store_is_unavailable(db_path: Path) -> None:
    store = SqliteStore(db_path)
    assert store.description == f"embedded database: {db_path}"
    assert await store.ping() is False
    with pytest.raises(Closed):
        await store.users.get("x" * 24)
    with pytest.raises(ValueError):
        SqliteStore(db_path, synchronous="off")


def test_is_unavailable_classifies_sqlite_errors(tmp_path: Path) -> None:
    with pytest.raises(sqlite3.OperationalError) as cant_open:
        sqlite3.connect(f"file:{tmp_path}/missing/x.db?mode=ro", uri=True)
    assert is_unavailable(cant_open.value)
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = 13  # type: ignore[attr-defined]
    assert is_unavailable(full)
    io = sqlite3.OperationalError("disk I/O error")
    io.sqlite_errorcode = 10 | (3 << 8)  # type: ignore[attr-defined]  # SQLITE_IOERR_WRITE
    assert is_unavailable(io)
    with (
        contextlib.closing(sqlite3.connect(":memory:")) as conn,
        pytest.raises(sqlite3.OperationalError) as syntax,
    ):
        conn.execute("SELECT * FROM no_such_table")
    assert not is_unavailable(syntax.value)
    assert not is_unavailable(sqlite3.IntegrityError("UNIQUE constraint failed"))
    assert not is_unavailable(Duplicate("username"))


# --- the file ------------------------------------------------------------------------------


def _modes(db_path: Path) -> dict[str, int | None]:
    """The permission bits of the database file, its WAL and shared-memory index (None when
    absent), and of its directory."""
    modes: dict[str, int | None] = {}
    for suffix in ("", "-wal", "-shm"):
        path = Path(f"{db_path}{suffix}")
        modes[suffix] = stat.S_IMODE(path.stat().st_mode) if path.exists() else None
    modes["dir"] = stat.S_IMODE(db_path.parent.stat().st_mode)
    return modes


def _widen(db_path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        path = Path(f"{db_path}{suffix}")
        if path.exists():
            path.chmod(0o644)


async def test_file_modes(db_path: Path, store: SqliteStore) -> None:
    await new_user(store, "alice")  # the WAL and its index exist while the store is open
    assert await store.users.by_username("alice") is not None
    assert _modes(db_path) == {"": 0o600, "-wal": 0o600, "-shm": 0o600, "dir": 0o700}


async def test_one_process_at_a_time(db_path: Path, store: SqliteStore) -> None:
    """A second store on an open file is refused with a clear error; once the first closes,
    the file can be opened again."""
    second = SqliteStore(db_path)
    with pytest.raises(InUse, match="in use by another process"):
        await second.prepare(5.0)
    # Another name for the same file finds the lock too.
    for alias in (db_path.with_name("symlink.db"), db_path.with_name("hardlink.db")):
        if alias.name.startswith("sym"):
            alias.symlink_to(db_path)
        else:
            os.link(db_path, alias)
        with pytest.raises(InUse):
            await SqliteStore(alias).prepare(5.0)
    await store.close()
    third = SqliteStore(db_path)
    await third.prepare(5.0)
    await third.close()


async def test_existing_files_are_made_private(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    first = SqliteStore(path)
    await first.prepare(5.0)
    await new_user(first, "alice")
    await first.close()
    _widen(path)
    assert _modes(path)[""] == 0o644
    again = SqliteStore(path)
    await again.prepare(5.0)
    await new_user(again, "bob")
    assert await again.users.by_username("alice") is not None
    assert _modes(path) == {"": 0o600, "-wal": 0o600, "-shm": 0o600, "dir": _modes(path)["dir"]}
    await again.close()


async def test_synchronous_and_wal(db_path: Path) -> None:
    for setting, expected in (("full", 2), ("normal", 1)):
        store = SqliteStore(db_path, synchronous=setting)
        await store.prepare(5.0)

        def pragmas(conn: sqlite3.Connection) -> tuple[str, int]:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            return mode, conn.execute("PRAGMA synchronous").fetchone()[0]

        assert await store.db.write("pragmas", pragmas) == ("wal", expected)
        await store.close()


async def test_migrations_are_idempotent(db_path: Path) -> None:
    store = SqliteStore(db_path)
    await store.prepare(5.0)
    await store.prepare(5.0)  # same store again
    alice = await new_user(store, "alice")
    await store.close()
    again = SqliteStore(db_path)  # and a later start-up on the same file
    await again.prepare(5.0)
    assert await again.users.get(alice) is not None
    await again.close()
    with raw(db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.VERSION >= 1
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert {"users", "messages", "reactions", "messages_fts", "message_attachments"} <= tables


async def test_a_newer_schema_is_refused(db_path: Path) -> None:
    store = SqliteStore(db_path)
    await store.prepare(5.0)
    await store.close()
    with raw(db_path) as conn:
        conn.execute(f"PRAGMA user_version = {schema.VERSION + 1}")
    newer = SqliteStore(db_path)
    with pytest.raises(RuntimeError, match="newer"):
        await newer.prepare(5.0)
    await newer.close()


# --- transfer ------------------------------------------------------------------------------


async def _populate(store: SqliteStore) -> None:
    alice, bob = await new_user(store, "alice", "Alice"), await new_user(store, "bob")
    room = await new_group(store, alice, bob)
    now = datetime.now(UTC)
    await store.tokens.insert("jti-a", alice, "fam", now, now + timedelta(days=1))
    files = [{"id": new_id(), "name": "x.png", "width": 1, "height": 1}]
    msgs = [await send(store, room, alice, f"hello world {i}") for i in range(5)]
    await store.messages.insert(
        message_doc(room, bob, "", "att", type="image", attachments=files, version=9)
    )
    await store.messages.add_reaction(msgs[0]["_id"], FAMILY, bob, 10, 20)
    await store.messages.add_reaction(msgs[0]["_id"], THUMBS_DARK, alice, 11, 20)
    await store.messages.add_reaction(msgs[0]["_id"], FAMILY, alice, 12, 20)
    await store.messages.update(msgs[1]["_id"], {"deleted": False}, tombstone(13))
    await store.messages.insert(  # a reply with mentions, and a history line
        message_doc(room, alice, "@bob @room", "men", mentions=[bob], mention_room=True)
        | {"reply_to_id": msgs[0]["_id"], "version": 14}
    )
    line = {"event": "room_renamed", "actor_id": alice, "user_ids": [], "name": "n"}
    await store.messages.insert(
        message_doc(room, alice, "", "system:1", type="system", system=line, version=15)
    )
    await store.memberships.advance_read(room, bob, msgs[2]["_id"], T0)
    await store.deliveries.record(bob, ids(msgs[:3]), T0)
    await store.memberships.advance_delivered(bob, {room: msgs[3]["_id"]}, T0)
    await store.bans.add(room, new_id(), alice, T0)
    await store.bans.add(room, new_id(), bob, T0)
    await store.users.update(bob, {"server_admin": True, "deactivated_at": T0})
    await store.uploads.insert(
        files[0]["id"],
        {
            "owner_id": bob,
            "name": "x.png",
            "content_type": "image/png",
            "size": 5,
            "created_at": T0,
            "attached": True,
            "avatar": False,
            "width": 1,
            "height": 1,
            "thumbnail_size": 3,
        },
    )
    await store.calls.insert(
        {
            "_id": new_id(),
            "room_id": room,
            "kind": "direct",
            "media": "video",
            "caller_id": alice,
            "callee_id": bob,
            "state": "ended",
            "outcome": "missed",
            "end_reason": None,
            "created_at": T0,
            "answered_at": None,
            "ended_at": T0,
            "duration_s": 0,
        }
    )


async def _export_all(store: SqliteStore, collection: str, batch: int = 2) -> list[Doc]:
    docs: list[Doc] = []
    after = None
    while True:
        page = await store.transfer.export(collection, after, batch)
        docs += page
        if len(page) < batch:
            return docs
        after = key_of(collection, page[-1])


async def test_transfer_round_trip_and_idempotence(store: SqliteStore, tmp_path: Path) -> None:
    await _populate(store)
    target = SqliteStore(tmp_path / "copy.db")
    await target.prepare(5.0)
    try:
        assert await target.transfer.last_key("memberships") is None
        assert await target.transfer.count("messages") == 0
        assert await target.transfer.export("messages", None, 10) == []
        for collection in COLLECTIONS:
            docs = await _export_all(store, collection)
            keys = [key_of(collection, d) for d in docs]
            assert keys == sorted(keys) and len(set(keys)) == len(keys), collection
            assert await store.transfer.count(collection) == len(docs) > 0, collection
            assert await store.transfer.last_key(collection) == keys[-1], collection
            # Resumable: import in two parts, the second after the target's last key.
            await target.transfer.import_many(collection, docs[:2])
            after = await target.transfer.last_key(collection)
            await target.transfer.import_many(
                collection, await store.transfer.export(collection, after, 1000)
            )
            await target.transfer.import_many(collection, docs)  # again: no change
            assert await _export_all(target, collection) == docs, collection
            assert await target.transfer.count(collection) == len(docs), collection

        # The copy works like the original: reactions, search, shared uploads, counts.
        users = {u["username"]: u["_id"] for u in await _export_all(target, "users")}
        alice, bob = users["alice"], users["bob"]
        msgs = await _export_all(target, "messages")
        room = msgs[0]["room_id"]
        counts = await target.messages.unread_counts(room, [alice, bob])
        assert counts == await store.messages.unread_counts(room, [alice, bob])
        assert counts[bob] == (3, 1)  # after his pointer: 2 of alice's, the reply naming him
        reacted = next(m for m in msgs if m["reactions"])
        assert list(reacted["reactions"].items()) == [
            (FAMILY, [bob, alice]),
            (THUMBS_DARK, [alice]),
        ]
        assert reacted["reaction_kinds"] == 2
        room = msgs[0]["room_id"]
        found, _ = await target.messages.search([room], ["hello"], before=None, limit=10)
        assert len(found) == 4  # the tombstone is not found
        upload = next(m for m in msgs if m["attachments"])["attachments"][0]["id"]
        assert await target.messages.shares_upload(upload, [room]) is True
        copied = await target.memberships.get(room, bob)
        assert copied is not None
        assert (copied["last_delivered_message_id"], copied["last_delivered_at"]) == (
            msgs[3]["_id"],
            T0,
        )
    finally:
        await target.close()


async def test_import_replaces_by_key(store: SqliteStore) -> None:
    alice, bob = await new_user(store, "alice"), await new_user(store, "bob")
    room = await new_group(store, alice, bob)
    msg = await send(store, room, alice, "original words")
    await store.messages.add_reaction(msg["_id"], THUMBS, bob, 5, 20)
    exported = (await store.transfer.export("messages", None, 10))[0]
    assert exported["reactions"] == {THUMBS: [bob]}

    odd = ["not-an-object", {"id": "u" * 24}, {"no_id": True}]  # tolerated, only ids count
    replaced = {
        **exported,
        "text": "replacement text",
        "reactions": {FAMILY: [alice, bob]},
        "attachments": odd,
    }
    await store.transfer.import_many("messages", [replaced])
    got = await store.messages.get(msg["_id"])
    assert got is not None and got["text"] == "replacement text"
    assert got["reactions"] == {FAMILY: [alice, bob]} and got["reaction_kinds"] == 1
    assert (await store.messages.search([room], ["original"], before=None, limit=5))[0] == []
    found, _ = await store.messages.search([room], ["replace"], before=None, limit=5)
    assert ids(found) == [msg["_id"]]
    assert await store.transfer.count("messages") == 1
    await store.transfer.finish()  # compacting after an import changes no result
    assert ids((await store.messages.search([room], ["replace"], before=None, limit=5))[0]) == [
        msg["_id"]
    ]
    assert got["attachments"] == odd
    assert await store.messages.shares_upload("u" * 24, [room]) is True

    membership = (await store.transfer.export("memberships", None, 10))[0]
    await store.transfer.import_many("memberships", [{**membership, "role": "admin"}])
    assert await store.transfer.count("memberships") == 2
    with pytest.raises(ValueError):
        await store.transfer.export("nonsense", None, 1)
