"""`fastsock migrate`: a SQLite database filled through the real server is copied to MongoDB
and served identically there; copying again changes nothing; an interrupted copy resumes
without duplicates; MongoDB -> SQLite round-trips; and the CLI as a real process.

The source database is filled once per module (`world`) and copied per test with SQLite's
backup API, so each test starts from the same file."""

from __future__ import annotations

import asyncio
import io
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from bson import ObjectId
from PIL import Image
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from fastsock.app import Server
from fastsock.migrate import CountMismatch, check_counts, migrate
from fastsock.store import SQLITE_FILE, Duplicate
from fastsock.store.base import COLLECTIONS, Doc, key_of
from fastsock.store.ids import new_id
from fastsock.store.mongo import MongoStore
from tests.conftest import make_settings
from tests.mongo_standin import EmbeddedMongo
from tests.store.documents import T0, group_call_doc, worker_doc
from tests.support import PASSWORD, Api, Socket, User

pytestmark = pytest.mark.once  # copies between both backends itself

ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / ".venv" / "bin" / "python"
PREPARE_S = 15.0
CLI_TIMEOUT_S = 90.0
WORD = "quokkalantern"  # the whole word searched for (letters only: every search mode agrees)
ZWJ_FAMILY = "👨\u200d👩\u200d👧\u200d👦"
TECHNOLOGIST = "👩🏽\u200d💻"  # skin tone and ZWJ
FLAG = "🇫🇷"


def sqlite_store(path: Path):  # -> SqliteStore
    from fastsock.store.sqlite import SqliteStore

    return SqliteStore(path, synchronous="full")


@dataclass
class World:
    """The filled source: its data dir (database and uploaded files) and who is in it."""

    data_dir: Path
    users: list[User]
    rooms: list[str]
    messages: list[str]  # every message id, by room then age
    refresh_token: str  # alice's refresh token, issued on SQLite
    upload_id: str
    upload_bytes: bytes
    views: dict[str, Any]  # what the SQLite server answered, before it stopped

    @property
    def db(self) -> Path:
        return self.data_dir / SQLITE_FILE

    def copy_db(self, to: Path) -> Path:
        """The source database, copied consistently (WAL included) to a new file."""
        to.parent.mkdir(parents=True, exist_ok=True)
        src, dst = sqlite3.connect(self.db), sqlite3.connect(to)
        try:
            src.backup(dst)
        finally:
            src.close()
            dst.close()
        return to


# --- the server's answers, to compare -----------------------------------------------------


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (24, 16), (20, 120, 220)).save(buf, "PNG")
    return buf.getvalue()


async def _reply(ws: Socket, type_: str, data: dict[str, Any]) -> dict[str, Any]:
    """Send with a ref; the frame that answers it (`ack`, or e.g. `call.created`), not an
    `error`."""
    ref = type_ + "-" + uuid.uuid4().hex[:8]
    await ws.send(type_, data, ref)
    for _ in range(100):  # bounded: 100 quiet spells of 0.1 s at most
        for index, frame in enumerate(ws.frames):
            if frame.get("ref") == ref:
                ws.frames.pop(index)
                assert frame["type"] != "error", frame
                return frame
        await ws.drain(0.1)
    raise AssertionError(f"no reply to {type_}")


async def _react(api: Api, user: User, message_id: str, emoji: str, method: str = "PUT") -> None:
    path = f"/messages/{message_id}/reactions/{quote(emoji, safe='')}"
    r = await api.request(method, path, token=user.access_token)
    assert r.status in (200, 204), r.body


async def _download(api: Api, user: User, upload_id: str) -> bytes:
    request = HTTPRequest(
        f"{api.base}/uploads/{upload_id}",
        headers={"Authorization": f"Bearer {user.access_token}"},
        request_timeout=15,
    )
    resp = await AsyncHTTPClient().fetch(request, raise_error=False)
    assert resp.code == 200, resp.code
    return resp.body


def _no_presence(value: Any) -> Any:
    """Views without `online` (presence is live state, not data). Member lists and receipts
    keep their order: members who joined together are ordered by id on both backends."""
    if isinstance(value, list):
        return [_no_presence(v) for v in value]
    if not isinstance(value, dict):
        return value
    return {k: _no_presence(v) for k, v in value.items() if k != "online"}


async def _ok(api: Api, path: str, user: User) -> Any:
    r = await api.get(path, user)
    assert r.status == 200, (path, r.status, r.body)
    return r.body


async def snapshot(api: Api, users: list[User], rooms: list[str], messages: list[str]) -> dict:
    """Everything the server shows these users about these rooms and messages."""
    alice = users[0]
    views: dict[str, Any] = {}
    for user in users:
        listing = await _ok(api, "/rooms", user)
        views[f"rooms/{user.username}"] = sorted(listing["rooms"], key=lambda r: r["id"])
        views[f"me/{user.username}"] = await _ok(api, "/users/me", user)
    for room in rooms:
        views[f"room/{room}"] = await _ok(api, f"/rooms/{room}", alice)
        pages, before = [], None
        while True:  # every history page, three at a time
            query = f"?limit=3&before={before}" if before else "?limit=3"
            page = await _ok(api, f"/history/room/{room}{query}", alice)
            pages.append(page)
            if not page["has_more"]:
                break
            before = page["messages"][-1]["id"]
        views[f"history/{room}"] = pages
        views[f"changes/{room}"] = await _ok(api, f"/history/room/{room}?changed_after=0", alice)
        views[f"calls/{room}"] = await _ok(api, f"/rooms/{room}/calls", alice)
    for message_id in messages:
        views[f"receipts/{message_id}"] = await _ok(api, f"/messages/{message_id}/receipts", alice)
    for user in users:
        views[f"search/{user.username}"] = await _ok(api, f"/search/messages?q={WORD}", user)
    return _no_presence(views)


async def _fill(api: Api) -> tuple[list[User], list[str], list[str], str]:
    """Users, a group and a DM with messages, edits, a tombstone, reactions, read pointers,
    deliveries, an attachment, a history line and a call; returns (users, rooms, message
    ids, upload id)."""
    tag = uuid.uuid4().hex[:6]
    alice = await api.register(f"alice_{tag}", display_name="Ålice Ünïcödé 🎈")
    bob = await api.register(f"bob_{tag}", display_name="Bob 😀")
    carol = await api.register(f"carol_{tag}", display_name="Carol")
    group = await api.group(alice, carol, bob)  # members not in id order
    r = await api.post("/rooms/direct", {"user_id": bob.id}, alice)
    assert r.status in (200, 201), r.body
    dm = r.body["id"]

    sent = [
        await api.send(alice, group, "hello everyone"),
        await api.send(bob, group, f"a {WORD} appears"),
        await api.send(carol, group, "Grüße, naïve café — 日本語のテキスト 🎉👍🏽"),
        await api.send(alice, group, "this one goes away"),
        await api.send(bob, group, "typo"),
        await api.send(alice, group, f"second {WORD}, with a comma"),
        await api.send(carol, group, "ZWJ: " + ZWJ_FAMILY + " " + TECHNOLOGIST),
    ]
    sent += [await api.send(alice if i % 2 else bob, group, f"filler {i}") for i in range(12)]
    # A reply naming bob, with @room (alice is the group's admin): its mentions and what it
    # answers travel with it, and so do the mention counts of GET /rooms.
    body = {
        "client_msg_id": "reply-1",
        "text": f"@{bob.username} @room see above",
        "reply_to_id": sent[0]["id"],
    }
    r = await api.post(f"/rooms/{group}/messages", body, alice)
    assert r.status == 201 and r.body["mentions"] == [bob.id], r.body
    sent.append(r.body)
    sent += [
        await api.send(alice, dm, "psst"),
        await api.send(bob, dm, f"{WORD} in private"),
        await api.send(alice, dm, "🙂"),
    ]
    ids = [m["id"] for m in sent]

    r = await api.patch(f"/messages/{ids[4]}", {"text": "typo fixed: ünïcödé ✓"}, bob)
    assert r.status == 200, r.body
    assert (await api.delete(f"/messages/{ids[3]}", alice)).status == 204

    # Two users on one emoji (the order they reacted in is kept), and others incl. ZWJ.
    await _react(api, alice, ids[0], "👍")
    await _react(api, bob, ids[0], "👍")
    await _react(api, carol, ids[0], ZWJ_FAMILY)
    await _react(api, bob, ids[0], "❤️")
    await _react(api, carol, ids[0], FLAG)
    await _react(api, carol, ids[0], FLAG, "DELETE")  # emptied: the emoji goes away
    await _react(api, alice, ids[2], TECHNOLOGIST)
    await _react(api, bob, ids[2], TECHNOLOGIST)

    # Read pointers: bob over REST in the group, carol over the socket; bob delivers some.
    r = await api.post(f"/rooms/{group}/read", {"message_id": ids[5]}, bob)
    assert r.status in (200, 204), r.body
    carol_ws, bob_ws, alice_ws = await api.ws(carol), await api.ws(bob), await api.ws(alice)
    await _reply(carol_ws, "message.read", {"room_id": group, "message_id": ids[2]})
    await _reply(bob_ws, "message.delivered", {"message_ids": ids[:7]})
    await _reply(carol_ws, "message.delivered", {"message_ids": ids[:3]})
    await _reply(bob_ws, "message.delivered", {"message_ids": ids[-3:]})
    await _reply(bob_ws, "message.read", {"room_id": dm, "message_id": ids[-2]})

    # An attachment, and a call that rang and was cancelled (a call record and its entry).
    up = await api.request(
        "POST",
        "/uploads?filename=pic.png",
        raw=_png(),
        token=alice.access_token,
        headers={"Content-Type": "image/png"},
    )
    assert up.status == 201, up.body
    upload_id = up.body["id"]
    body = {"client_msg_id": "att-1", "text": "a picture", "attachment_ids": [upload_id]}
    r = await api.post(f"/rooms/{group}/messages", body, alice)
    assert r.status == 201, r.body
    ids.insert(len(ids) - 3, r.body["id"])
    call = (await _reply(alice_ws, "call.invite", {"room_id": dm, "media": "audio"}))["data"]
    call = call["call"]
    await bob_ws.expect("call.ringing", timeout=10)
    await _reply(alice_ws, "call.cancel", {"call_id": call["id"]})
    for _ in range(100):  # the call record is written after the reply
        calls = (await api.get(f"/rooms/{dm}/calls", alice)).body["calls"]
        if calls and calls[0]["outcome"] == "cancelled":
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the call record was not written")
    for ws in (alice_ws, bob_ws, carol_ws):
        ws.close()
    # A history line (the rename): its `system` event travels with it.
    r = await api.patch(f"/rooms/{group}", {"name": f"Group {tag}"}, alice)
    assert r.status == 200, r.body
    history = (await api.get(f"/history/room/{group}?limit=100", alice)).body["messages"]
    ids += [m["id"] for m in history if m["type"] == "system"]
    history = (await api.get(f"/history/room/{dm}?limit=100", alice)).body["messages"]
    ids += [m["id"] for m in history if m["type"] == "call"]
    return [alice, bob, carol], [group, dm], ids, upload_id


async def _moderate(db: Path, users: list[User], rooms: list[str]) -> None:
    """What moderation stores, written where no view above shows it: a ban from the group (of
    an id that never joined), alice's `server_admin` flag (she is one anyway: the first), and
    a deactivated account (in no room; its `deactivated_at` a time both transfers convert)."""
    store = await _opened(sqlite_store(db))
    try:
        await store.bans.add(rooms[0], new_id(), users[0].id, T0)
        await store.users.update(users[0].id, {"server_admin": True})
        gone = await store.users.insert(
            {"username": "gone", "display_name": "Gone", "created_at": T0, "deactivated_at": T0}
        )
        assert gone["deactivated_at"] == T0
    finally:
        await store.close()


@pytest.fixture(scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    data_dir = tmp_path_factory.mktemp("source")
    server = Server(make_settings(None, data_dir))
    await server.start()
    try:
        assert server.store is not None and "SqliteStore" in type(server.store).__name__
        api = Api(server.port)
        users, rooms, messages, upload_id = await _fill(api)
        views = await snapshot(api, users, rooms, messages)
        upload_bytes = await _download(api, users[0], upload_id)
    finally:
        await server.stop()
    await _moderate(data_dir / SQLITE_FILE, users, rooms)
    yield World(
        data_dir, users, rooms, messages, users[0].refresh_token, upload_id, upload_bytes, views
    )


@pytest.fixture
def mongo_uri(mongo: EmbeddedMongo) -> str:
    return mongo.uri_for("mig" + uuid.uuid4().hex[:12])


async def _opened(store: Any) -> Any:
    await store.prepare(PREPARE_S)
    return store


async def _everything(store: Any) -> dict[str, list[Doc]]:
    """Every document of every collection, in key order, through the store's export."""
    out: dict[str, list[Doc]] = {}
    for collection in COLLECTIONS:
        docs: list[Doc] = []
        after = None
        while batch := await store.transfer.export(collection, after, 50):
            docs += batch
            after = key_of(collection, batch[-1])
        out[collection] = docs
    return out


# --- (a) SQLite -> MongoDB, served identically ----------------------------------------------


async def test_sqlite_to_mongo_serves_the_same(world: World, mongo_uri: str, tmp_path: Path):
    source = await _opened(sqlite_store(world.copy_db(tmp_path / "src" / SQLITE_FILE)))
    target = await _opened(MongoStore(mongo_uri))
    progress, table = io.StringIO(), io.StringIO()
    try:
        counts = await migrate(source, target, batch=5, progress=progress, report=table)
        assert [c.collection for c in counts] == list(COLLECTIONS)
        assert all(c.ok and c.source == c.target for c in counts)
        by_name = {c.collection: c.source for c in counts}
        assert by_name["users"] == 4 and by_name["rooms"] == 2 and by_name["calls"] == 1
        assert by_name["bans"] == 1
        assert (await target.users.get(world.users[0].id))["server_admin"] is True
        assert (await target.users.by_username("gone"))["deactivated_at"] == T0
        assert by_name["messages"] == len(world.messages)
        # Not a terminal: one finished line per collection, in order, and the table.
        lines = progress.getvalue().splitlines()
        assert [line.split()[0] for line in lines] == list(COLLECTIONS)
        assert "\r" not in progress.getvalue()
        assert f"{by_name['messages']:,}/{by_name['messages']:,}" in lines[4]
        assert "[" + "#" * 30 + "]" in lines[4]
        assert all(name in table.getvalue() for name in COLLECTIONS)
        assert "DIFFERENT" not in table.getvalue()
        # Every document the same as the contract sees it (and `reaction_kinds`, the count
        # of distinct emoji both backends keep beside the map for the cap).
        assert await _everything(target) == await _everything(source)
        # The pointers are stored as ObjectIds, which MongoDB's `$lt` compares with the new
        # message ids as they move on (with a string there, they would stop moving).
        memberships = await target.db.memberships.find().to_list()
        assert any(m["last_delivered_message_id"] for m in memberships)
        for m in memberships:
            for pointer in ("last_read_message_id", "last_delivered_message_id"):
                assert m[pointer] is None or isinstance(m[pointer], ObjectId), (pointer, m)
        replies = await target.db.messages.find({"reply_to_id": {"$ne": None}}).to_list()
        assert replies and all(isinstance(m["reply_to_id"], ObjectId) for m in replies)
    finally:
        await source.close()
        await target.close()

    # A server on MongoDB (a fresh data dir, the same upload directory) serves the same.
    settings = make_settings(
        mongo_uri, tmp_path / "mongo-node", upload_dir=world.data_dir / "uploads"
    )
    server = Server(settings)
    await server.start()
    try:
        assert isinstance(server.store, MongoStore)
        api = Api(server.port)
        alice, bob, carol = world.users
        assert await snapshot(api, world.users, world.rooms, world.messages) == world.views
        assert await _download(api, alice, world.upload_id) == world.upload_bytes
        # The same password logs in; a refresh token issued on SQLite still refreshes.
        r = await api.post("/auth/login", {"username": bob.username, "password": PASSWORD})
        assert r.status == 200, r.body
        r = await api.post("/auth/login", {"username": bob.username, "password": "wrong pw!"})
        assert r.status == 401
        r = await api.post("/auth/refresh", {"refresh_token": world.refresh_token})
        assert r.status == 200, r.body
        # Writing goes on where it stopped: room versions continue, the reaction cap holds.
        group = world.rooms[0]
        before = await _ok(api, f"/rooms/{group}", alice)
        new = await api.send(carol, group, f"after the move {WORD}")
        assert new["version"] == before["version"] + 1
        # Delivered pointers came over as ids: bob's (at the 7th message he confirmed) moves on.
        pointers = {m["user_id"]: m["last_delivered_message_id"] for m in before["members"]}
        assert pointers[bob.id] == world.messages[6]
        bob_ws = await api.ws(bob)
        await _reply(bob_ws, "message.delivered", {"message_ids": [new["id"]]})
        bob_ws.close()
        after = await _ok(api, f"/rooms/{group}", alice)
        pointers = {m["user_id"]: m["last_delivered_message_id"] for m in after["members"]}
        assert pointers[bob.id] == new["id"]
        await _react(api, carol, world.messages[0], "👍")
        message = await _ok(api, f"/history/room/{group}?limit=100", alice)
        [first] = [m for m in message["messages"] if m["id"] == world.messages[0]]
        assert list(first["reactions"].items()) == [  # emoji and users in the order added
            ("👍", [alice.id, bob.id, carol.id]),
            (ZWJ_FAMILY, [carol.id]),
            ("❤️", [bob.id]),
        ]
        found = await _ok(api, f"/search/messages?q={WORD}", bob)
        assert found["messages"][0]["id"] == new["id"]
        listing = await _ok(api, "/rooms", bob)
        [room] = [r for r in listing["rooms"] if r["id"] == group]
        old = next(r for r in world.views["rooms/" + bob.username] if r["id"] == group)
        assert room["unread_count"] == old["unread_count"] + 1
    finally:
        await server.stop()


# --- (b) twice: nothing changes ------------------------------------------------------------


async def test_migrating_twice_changes_nothing(world: World, mongo_uri: str, tmp_path: Path):
    source = await _opened(sqlite_store(world.copy_db(tmp_path / SQLITE_FILE)))
    target = await _opened(MongoStore(mongo_uri))
    try:
        first = await migrate(source, target, batch=4, progress=False, report=False)
        copied = await _everything(target)
        second = await migrate(source, target, batch=4, progress=False, report=False)
        assert first == second and all(c.ok for c in second)
        assert await _everything(target) == copied
        # Also from scratch over a full target (every key already there): still the same.
        for collection in COLLECTIONS:
            docs = await source.transfer.export(collection, None, 10_000)
            await target.transfer.import_many(collection, docs)
            await target.transfer.import_many(collection, docs)
        assert await _everything(target) == copied
        assert all(c.ok for c in await check_counts(source, target))
        # A target that holds more than the source fails the check, after the table.
        await target.users.insert({"username": "intruder", "display_name": "I"})
        table = io.StringIO()
        with pytest.raises(CountMismatch, match="users 4 vs 5") as caught:
            await migrate(source, target, progress=False, report=table)
        assert [c.collection for c in caught.value.counts if not c.ok] == ["users"]
        assert "DIFFERENT" in table.getvalue()
    finally:
        await source.close()
        await target.close()


# --- (c) interrupted, then resumed ---------------------------------------------------------


class _Stall(Exception):
    pass


class Interrupting:
    """A store whose transfer stops the copy at the `nth` batch of `collection`: after
    writing only the first half of it, raising `_Stall` (a crash mid-batch) or hanging until
    the copy is cancelled."""

    def __init__(self, store: Any, collection: str, nth: int, *, hang: bool) -> None:
        self.store, self.collection, self.left, self.hang = store, collection, nth, hang
        self.transfer = self
        self.reached = asyncio.Event()

    async def export(self, collection: str, after: str | None, limit: int) -> list[Doc]:
        return await self.store.transfer.export(collection, after, limit)

    async def import_many(self, collection: str, docs: list[Doc]) -> None:
        if collection == self.collection:
            self.left -= 1
            if self.left == 0:
                await self.store.transfer.import_many(collection, docs[: len(docs) // 2])
                self.reached.set()
                if self.hang:
                    await asyncio.Event().wait()  # until cancelled
                raise _Stall(collection)
        await self.store.transfer.import_many(collection, docs)

    async def last_key(self, collection: str) -> str | None:
        return await self.store.transfer.last_key(collection)

    async def count(self, collection: str) -> int:
        return await self.store.transfer.count(collection)


async def _assert_unique_and_complete(source: Any, target: Any) -> None:
    theirs, ours = await _everything(source), await _everything(target)
    for collection in COLLECTIONS:
        keys = [key_of(collection, d) for d in ours[collection]]
        assert len(keys) == len(set(keys)), f"duplicates in {collection}"
    assert ours == theirs


async def test_an_interrupted_copy_resumes_without_duplicates(
    world: World, mongo: EmbeddedMongo, tmp_path: Path
) -> None:
    source = await _opened(sqlite_store(world.copy_db(tmp_path / SQLITE_FILE)))
    crashed = await _opened(MongoStore(mongo.uri_for("mig" + uuid.uuid4().hex[:12])))
    cancelled = await _opened(MongoStore(mongo.uri_for("mig" + uuid.uuid4().hex[:12])))
    try:
        # A crash half-way through the second batch of memberships (keyed by two fields).
        with pytest.raises(_Stall, match="memberships"):
            await migrate(
                source,
                Interrupting(crashed, "memberships", 2, hang=False),
                batch=2,
                progress=False,
                report=False,
            )
        assert await crashed.transfer.count("memberships") == 3
        assert await crashed.transfer.count("messages") == 0
        partial = await check_counts(source, crashed)
        assert not all(c.ok for c in partial)  # a partial copy does not pass the check
        counts = await migrate(source, crashed, batch=7, progress=False, report=False)
        assert all(c.ok for c in counts)
        await _assert_unique_and_complete(source, crashed)

        # Cancelled (Ctrl-C) while the third batch of messages is being written, then resumed.
        stalled = Interrupting(cancelled, "messages", 3, hang=True)
        task = asyncio.create_task(migrate(source, stalled, batch=6, progress=False, report=False))
        await asyncio.wait_for(stalled.reached.wait(), 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)
        assert await cancelled.transfer.count("messages") == 6 + 6 + 3
        assert await cancelled.transfer.count("deliveries") == 0
        counts = await migrate(source, cancelled, batch=7, progress=False, report=False)
        assert all(c.ok for c in counts)
        await _assert_unique_and_complete(source, cancelled)
    finally:
        for store in (source, crashed, cancelled):
            await store.close()


# --- (d) and back: MongoDB -> SQLite -------------------------------------------------------


async def test_mongo_back_to_sqlite_round_trips(world: World, mongo_uri: str, tmp_path: Path):
    source = await _opened(sqlite_store(world.copy_db(tmp_path / "src" / SQLITE_FILE)))
    middle = await _opened(MongoStore(mongo_uri))
    back_dir = tmp_path / "back"
    back_dir.mkdir()
    back = await _opened(sqlite_store(back_dir / SQLITE_FILE))
    try:
        await migrate(source, middle, batch=6, progress=False, report=False)
        counts = await migrate(middle, back, batch=6, progress=False, report=False)
        assert all(c.ok for c in counts)
        assert await _everything(back) == await _everything(source)
    finally:
        for store in (source, middle, back):
            await store.close()
    server = Server(make_settings(None, back_dir, upload_dir=world.data_dir / "uploads"))
    await server.start()
    try:
        api = Api(server.port)
        assert await snapshot(api, world.users, world.rooms, world.messages) == world.views
        r = await api.post(
            "/auth/login", {"username": world.users[2].username, "password": PASSWORD}
        )
        assert r.status == 200, r.body
    finally:
        await server.stop()


async def test_expired_refresh_tokens_are_not_copied(world: World, mongo_uri: str, tmp_path: Path):
    source = await _opened(sqlite_store(world.copy_db(tmp_path / SQLITE_FILE)))
    target = await _opened(MongoStore(mongo_uri))
    try:
        alice = world.users[0]
        past = datetime.now(UTC) - timedelta(days=1)
        expired = {
            "_id": "expired-jti",
            "user_id": alice.id,
            "family": "old-family",
            "issued_at": past - timedelta(days=30),
            "expires_at": past,
            "used_at": None,
            "revoked": False,
        }
        # As a database holds one until it is purged (inserting a token purges expired ones).
        await source.transfer.import_many("refresh_tokens", [expired])
        counts = await migrate(source, target, batch=2, progress=False, report=False)
        tokens = next(c for c in counts if c.collection == "refresh_tokens")
        assert tokens.ok and tokens.source == await target.transfer.count("refresh_tokens")
        assert await source.transfer.count("refresh_tokens") == tokens.source + 1
        keys = [key_of("refresh_tokens", d) for d in (await _everything(target))["refresh_tokens"]]
        assert "expired-jti" not in keys
    finally:
        await source.close()
        await target.close()


async def test_group_calls_copy_both_ways_and_the_worker_registry_does_not(
    world: World, mongo_uri: str, tmp_path: Path
) -> None:
    source = await _opened(sqlite_store(world.copy_db(tmp_path / "src" / SQLITE_FILE)))
    middle = await _opened(MongoStore(mongo_uri))
    back = await _opened(sqlite_store(tmp_path / "back" / SQLITE_FILE))
    group, (alice, bob, carol) = world.rooms[0], (u.id for u in world.users)
    worker = new_id()
    try:
        done, live = sorted(new_id() for _ in range(2))
        await source.calls.start_group(group_call_doc(done, group, alice, worker))
        for user in (alice, bob, carol):
            await source.calls.add_participant(done, user)
        await source.calls.remove_participant(done, carol)
        await source.calls.move(done, worker, new_id(), T0)
        await source.calls.end_group(done, T0, 300, "empty")
        await source.calls.start_group(group_call_doc(live, group, bob, worker))
        await source.calls.add_participant(live, bob)
        await source.sfu_workers.upsert(worker_doc(worker))

        for origin, copy in ((source, middle), (middle, back)):
            counts = await migrate(origin, copy, batch=3, progress=False, report=False)
            assert [c.collection for c in counts] == list(COLLECTIONS)
            assert all(c.ok for c in counts)
            assert await _everything(copy) == await _everything(source)
            # The copy serves the live call (its indexes and all), and has no worker registry.
            assert await copy.calls.live_group(group) == await source.calls.live_group(group)
            assert await copy.calls.live_on_worker(worker) == [await copy.calls.live_group(group)]
            assert await copy.sfu_workers.live() == []
            with pytest.raises(Duplicate):
                await copy.calls.start_group(group_call_doc(new_id(), group, carol, worker))
        [ended] = [c for c in (await _everything(back))["calls"] if c["_id"] == done]
        assert ended["participant_ids"] == [alice, bob, carol] and ended["present_ids"] == []
        assert ended["callee_id"] is None and ended["moved_at"] == T0
        assert await middle.db.sfu_workers.count_documents({}) == 0
    finally:
        for store in (source, middle, back):
            await store.close()


# --- (e) the command ---------------------------------------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTSOCK_")}
    return env | extra


async def _cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(PYTHON),
        "-m",
        "fastsock",
        *args,
        cwd=cwd,
        env=env or _env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), CLI_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _table(stdout: str) -> dict[str, list[str]]:
    rows = {}
    for line in stdout.splitlines():
        cells = line.split()
        if cells and cells[0].rstrip("*") in COLLECTIONS:
            rows[cells[0].rstrip("*")] = cells[1:]
    return rows


async def test_the_command_copies_and_prints_the_count_table(
    world: World, mongo: EmbeddedMongo, tmp_path: Path
) -> None:
    db = world.copy_db(tmp_path / "data" / SQLITE_FILE)
    uri = mongo.uri_for("cli" + uuid.uuid4().hex[:12])
    for _ in range(2):  # the second run finds everything there and changes nothing
        code, out, err = await _cli("migrate", "--from", str(db), "--to", uri, cwd=tmp_path)
        assert code == 0, err
        table = _table(out)
        assert list(table) == list(COLLECTIONS), out
        assert all(cells[0] == cells[1] and cells[2] == "ok" for cells in table.values()), out
        assert table["messages"][0] == str(len(world.messages))
        assert "Traceback" not in err
        assert [line.split()[0] for line in err.splitlines() if "[" in line] == list(COLLECTIONS)

    # A target holding more than the source fails the check: exit 1, the table says where.
    extra = MongoStore(uri)
    try:
        await extra.users.insert({"username": "intruder", "display_name": "I"})
    finally:
        await extra.close()
    code, out, err = await _cli("migrate", "--from", str(db), "--to", uri, cwd=tmp_path)
    assert code == 1, err
    assert _table(out)["users"] == ["4", "5", "DIFFERENT"], out
    assert (
        err.splitlines()[-1] == "fastsock migrate: counts differ (source vs target): users 4 vs 5"
    )

    # The defaults: the embedded database of the settings, to FASTSOCK_MONGO_URI.
    other = mongo.uri_for("cli" + uuid.uuid4().hex[:12])
    env = _env(FASTSOCK_DATA_DIR=str(tmp_path / "data"), FASTSOCK_MONGO_URI=other)
    code, out, err = await _cli("migrate", "--batch", "5", cwd=tmp_path, env=env)
    assert code == 0, err
    assert _table(out) == table


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--to", "postgres://db.example/chat"], "--to must be a mongodb://"),
        (["--to", "mongodb://"], "--to: bad MongoDB URI"),
        (["--to", "{db}"], "same database"),
        (["--to", "{dir}"], "is a directory"),
        (["--to", "{notdb}"], "is not a SQLite database"),
        (["--from", "{missing}", "--to", "{db2}"], "no database at"),
        (["--from", "{foreign}", "--to", "{db2}"], "is not a FastSock database"),
        (["--from", "{empty}", "--to", "{db2}"], "is not a FastSock database"),
        (["--to", "{hardlink}"], "same database"),
        ([], "--to is required"),
    ],
)
async def test_the_command_refuses_bad_arguments_in_one_line(
    world: World, tmp_path: Path, args: list[str], says: str
) -> None:
    data = tmp_path / "data"
    db = world.copy_db(data / SQLITE_FILE)
    (tmp_path / "notdb.txt").write_text("hello")
    foreign = sqlite3.connect(tmp_path / "foreign.db")
    foreign.execute("CREATE TABLE notes (text TEXT)")
    foreign.commit()
    foreign.close()
    (tmp_path / "empty.db").touch()
    os.link(db, tmp_path / "hardlink.db")
    untouched = {n: (tmp_path / n).read_bytes() for n in ("foreign.db", "empty.db")}
    names = {
        "db": str(tmp_path / "data" / ".." / "data" / SQLITE_FILE),  # the same file, spelled apart
        "db2": str(tmp_path / "other.db"),
        "dir": str(tmp_path),
        "notdb": str(tmp_path / "notdb.txt"),
        "missing": str(tmp_path / "nowhere.db"),
        "foreign": str(tmp_path / "foreign.db"),
        "empty": str(tmp_path / "empty.db"),
        "hardlink": str(tmp_path / "hardlink.db"),
    }
    args = [a.format(**names) for a in args]
    if "--from" not in args:
        args = ["--from", str(db), *args]
    code, out, err = await _cli(
        "migrate", *args, cwd=tmp_path, env=_env(FASTSOCK_DATA_DIR=str(data))
    )
    assert code == 2, (out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastsock migrate: "), err
    assert says in lines[0]
    assert out == ""
    assert not (tmp_path / "other.db").exists()
    # A refused source is only looked at, never set up.
    assert {n: (tmp_path / n).read_bytes() for n in untouched} == untouched


# --- the progress bar ------------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bar_redraws_in_place_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import fastsock.migrate as mig

    monkeypatch.setattr(mig, "REDRAW_S", 0.0)
    screen = _Terminal()
    bar = mig.Progress(screen)
    bar.update("messages", 0, 100_000)
    bar.update("messages", 48_000, 100_000)
    bar.finish("messages", 100_000, 100_000)
    drawn = screen.getvalue()
    assert drawn.count("\r") == 3 and drawn.endswith("\n") and drawn.count("\n") == 1
    frames = drawn.strip("\n").split("\r")[1:]
    assert frames[1] == "messages        [" + "#" * 14 + "." * 16 + "]  48,000/100,000"
    assert frames[2].endswith("]  100,000/100,000") and "." not in frames[2].split("]")[0]
    # Not a terminal: only the finished line.
    log = io.StringIO()
    bar = mig.Progress(log)
    bar.update("users", 1, 2)
    bar.finish("users", 2, 2)
    assert log.getvalue() == "users           [" + "#" * 30 + "]  2/2\n"
