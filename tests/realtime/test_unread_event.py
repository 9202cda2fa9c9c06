"""The `unread {room_id, unread_count, mention_count}` event: to every member but the sender
when a countable message is created (never for history lines), coalesced per room over a short
window into one grouped store query, numbered and replayed on a resume like every event to a
user. Tests wait for the event itself, never for the window."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fastsock.app import Server
from fastsock.store.sqlite import SqliteStore
from tests.conftest import make_settings
from tests.realtime.test_replay import until_detached
from tests.store.documents import count_reads
from tests.support import Api, User


async def _post(api: Api, user: User, room: str, text: str) -> dict[str, Any]:
    body = {"client_msg_id": uuid.uuid4().hex, "text": text}
    r = await api.post(f"/rooms/{room}/messages", body, user)
    assert r.status == 201, r.body
    return r.body


def _unread(room: str, unread: int, mentions: int) -> dict[str, Any]:
    return {"room_id": room, "unread_count": unread, "mention_count": mentions}


async def test_each_member_but_the_sender_hears_their_counts(api: Api) -> None:
    alice, bob, carol = [await api.register() for _ in range(3)]
    room = await api.group(alice, bob, carol)
    alice_ws, bob_ws, carol_ws = await api.ws(alice), await api.ws(bob), await api.ws(carol)
    await _post(api, alice, room, "hello")
    assert await bob_ws.expect("unread") == _unread(room, 1, 0)
    assert await carol_ws.expect("unread") == _unread(room, 1, 0)
    await _post(api, alice, room, f"@{bob.username} look")
    assert await bob_ws.expect("unread") == _unread(room, 2, 1)
    assert await carol_ws.expect("unread") == _unread(room, 2, 0)
    await _post(api, alice, room, "@room all of you")  # alice created the room: an admin
    assert await bob_ws.expect("unread") == _unread(room, 3, 2)
    assert await carol_ws.expect("unread") == _unread(room, 3, 1)
    # Bob answers: carol's count grows, his own read pointer did not move.
    await _post(api, bob, room, "ok")
    assert await carol_ws.expect("unread") == _unread(room, 4, 1)
    # The first alice hears: none came for her own three messages.
    assert await alice_ws.expect("unread") == _unread(room, 1, 0)
    # None for bob's own "ok" either: the next he hears is for alice's next message.
    await _post(api, alice, room, "marker")
    assert await bob_ws.expect("unread") == _unread(room, 4, 2)
    assert await carol_ws.expect("unread") == _unread(room, 5, 1)
    # The room list agrees with the events.
    for user, counts in ((bob, (4, 2)), (carol, (5, 1)), (alice, (1, 0))):
        listed = (await api.get("/rooms", user)).body["rooms"][0]
        assert (listed["unread_count"], listed["mention_count"]) == counts


async def test_reading_tells_the_reader_both_counts(api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    first = await _post(api, alice, room, f"@{bob.username} one")
    await _post(api, alice, room, f"@{bob.username} two")
    bob_ws = await api.ws(bob)
    r = await api.post(f"/rooms/{room}/read", {"message_id": first["id"]}, bob)
    assert r.status == 200 and (r.body["unread_count"], r.body["mention_count"]) == (1, 1)
    assert await bob_ws.expect("unread") == _unread(room, 1, 1)


async def test_history_lines_are_never_counted(api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    bob_ws = await api.ws(bob)
    r = await api.patch(f"/rooms/{room}", {"name": "renamed"}, alice)
    assert r.status == 200, r.body
    line = await bob_ws.expect("message.new")
    assert line["message"]["type"] == "system"
    await _post(api, alice, room, "after the rename")
    # The first event bob hears counts that message alone, the next one the marker after it.
    assert await bob_ws.expect("unread") == _unread(room, 1, 0)
    await _post(api, alice, room, "marker")
    assert await bob_ws.expect("unread") == _unread(room, 2, 0)
    listed = (await api.get("/rooms", bob)).body["rooms"][0]
    assert (listed["unread_count"], listed["mention_count"]) == (2, 0)


async def test_the_event_is_replayed_on_a_resume(server: Server, api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    bob_ws = await api.ws(bob)
    await _post(api, alice, room, "while connected")
    await bob_ws.expect("unread")
    await bob_ws.drain()
    last_seq = bob_ws.seqs[-1]
    await until_detached(server, bob_ws)
    await _post(api, alice, room, f"@{bob.username} while away")
    assert bob_ws.ready is not None
    back = await api.ws(bob, resume={"session": bob_ws.ready["session"], "last_seq": last_seq})
    assert back.ready is not None and back.ready["resume"] == "ok"
    assert await back.expect("unread") == _unread(room, 2, 1)


async def test_one_grouped_query_per_flush_for_all_recipients(
    server: Server, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not isinstance(server.store, SqliteStore):
        pytest.skip("counts the embedded store's reader jobs (parity: tests/store)")
    owner = await api.register()
    members = [await api.register() for _ in range(6)]
    room = await api.group(owner, *members)
    sockets = await asyncio.gather(*(api.ws(m) for m in members))
    jobs = count_reads(server.store, monkeypatch)
    await _post(api, owner, room, "to everyone")
    for ws in sockets:
        assert await ws.expect("unread") == _unread(room, 1, 0)
    assert jobs.count("messages.unread_counts") == 1


async def test_a_deleted_mention_is_told_to_who_it_named(api: Api) -> None:
    alice, bob, carol = [await api.register() for _ in range(3)]
    room = await api.group(alice, bob, carol)
    bob_ws, carol_ws = await api.ws(bob), await api.ws(carol)
    sent = await _post(api, alice, room, f"@{bob.username} gotcha")
    assert await bob_ws.expect("unread") == _unread(room, 1, 1)
    assert await carol_ws.expect("unread") == _unread(room, 1, 0)
    r = await api.delete(f"/messages/{sent['id']}", alice)
    assert r.status == 204, r.body
    # The badge goes out with the message, for every member it counted for.
    assert await bob_ws.expect("unread") == _unread(room, 0, 0)
    assert await carol_ws.expect("unread") == _unread(room, 0, 0)


async def test_an_edit_changing_mentions_tells_who_was_named_or_unnamed(api: Api) -> None:
    alice, bob, carol, dave = [await api.register() for _ in range(4)]
    room = await api.group(alice, bob, carol, dave)
    sockets = {u.id: await api.ws(u) for u in (bob, carol, dave)}
    sent = await _post(api, alice, room, f"@{bob.username} look")
    for user, mentions in ((bob, 1), (carol, 0), (dave, 0)):
        assert await sockets[user.id].expect("unread") == _unread(room, 1, mentions)
    r = await api.patch(f"/messages/{sent['id']}", {"text": f"@{carol.username} look"}, alice)
    assert r.status == 200, r.body
    assert await sockets[bob.id].expect("unread") == _unread(room, 1, 0)
    assert await sockets[carol.id].expect("unread") == _unread(room, 1, 1)
    # Dave's count did not change: the next he hears is for the marker.
    await _post(api, alice, room, "marker")
    assert await sockets[dave.id].expect("unread") == _unread(room, 2, 0)
    # `@room` added: everyone's mention count changes.
    r = await api.patch(f"/messages/{sent['id']}", {"text": "@room look"}, alice)
    assert r.status == 200, r.body
    assert await sockets[bob.id].expect("unread") == _unread(room, 2, 0)  # the marker
    assert await sockets[carol.id].expect("unread") == _unread(room, 2, 1)
    for user in (bob, carol, dave):
        assert await sockets[user.id].expect("unread") == _unread(room, 2, 1)


@pytest.fixture
async def held(db_uri: str | None, tmp_path: Path) -> AsyncIterator[Server]:
    """A server whose windows never end within a test: the test flushes."""
    srv = Server(make_settings(db_uri, tmp_path, unread_window_s=3600.0))
    await srv.start()
    yield srv
    await srv.stop()


async def test_a_burst_is_told_once_per_recipient_with_exact_counts(held: Server) -> None:
    api = Api(held.port)
    alice, bob, carol, dave, erin = [await api.register() for _ in range(5)]
    room = await api.group(alice, bob, carol, dave, erin)
    sockets = {u.id: await api.ws(u) for u in (alice, bob, carol, dave)}
    await _post(api, alice, room, f"@{carol.username} one")
    for text in ("two", "three"):
        await _post(api, alice, room, text)
    for text in ("four", f"@{alice.username} five"):
        await _post(api, bob, room, text)  # bob sent these, and is told of alice's
    r = await api.delete(f"/rooms/{room}/members/{dave.id}", alice)
    assert r.status == 204, r.body
    await sockets[bob.id].expect("message.new", lambda f: "five" in f["data"]["message"]["text"])
    assert held.ctx is not None
    unread = held.ctx.services.rooms.unread
    await unread.flush_all()
    # The first event each hears has the counts of all five (none went out while the window
    # was open); none for dave, removed meanwhile.
    expected = {alice.id: _unread(room, 2, 1), bob.id: _unread(room, 3, 0)}
    expected[carol.id] = _unread(room, 5, 1)
    for user_id, counts in expected.items():
        assert await sockets[user_id].expect("unread") == counts
    # One event each: the next one is for erin's marker, one more message.
    await _post(api, erin, room, "marker")
    await unread.flush_all()
    for user_id, (unread_count, mentions) in (
        (alice.id, (3, 1)),
        (bob.id, (4, 0)),
        (carol.id, (6, 1)),
    ):
        assert await sockets[user_id].expect("unread") == _unread(room, unread_count, mentions)
    # Flushes publish before flush_all returns: dave's socket holds every frame it was sent
    # once its reply to a later ping is in.
    dave_ws = sockets[dave.id]
    assert (await dave_ws.request("ping"))["type"] == "pong"
    assert [f for f in dave_ws.frames if f["type"] == "unread"] == []


async def test_stopping_the_server_tells_what_is_pending_without_errors(
    db_uri: str | None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    srv = Server(make_settings(db_uri, tmp_path, unread_window_s=3600.0))
    await srv.start()
    assert srv.ctx is not None
    api = Api(srv.port)
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    await _post(api, alice, room, "just before the shutdown")
    unread = srv.ctx.services.rooms.unread
    told: list[tuple[list[str], dict[str, Any]]] = []
    hub = unread.sink

    class Recorder:
        async def publish(self, users: list[str], type_: str, data: Any, **kw: Any) -> None:
            told.append((list(users), data))
            await hub.publish(users, type_, data, **kw)

    unread.sink = Recorder()  # type: ignore[assignment]
    with caplog.at_level(logging.WARNING):
        await srv.stop()
    assert told == [([bob.id], _unread(room, 1, 0))]  # other nodes' sockets would hear it
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
