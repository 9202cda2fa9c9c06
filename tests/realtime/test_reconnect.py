"""Lossless reconnect: resume replays exactly what a socket missed; resync (after a restart,
or when the buffer cannot cover the gap) plus `changed_after` refetches every kind of change."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fastsock.app import Server
from fastsock.realtime import hub as hub_module
from tests.conftest import make_settings
from tests.support import Api
from tests.sync_client import SyncClient

EMOJI = ["👍", "🎉", "❤️", "😂"]


async def _settle(clients: list[SyncClient], timeout: float = 60.0) -> None:
    """Until every request was answered and no frame arrived for a while."""
    deadline = time.monotonic() + timeout
    quiet_since, seen = time.monotonic(), [c.last_seq for c in clients]
    while time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        now_seen = [c.last_seq for c in clients]
        if now_seen != seen or any(c.outbox for c in clients):
            quiet_since, seen = time.monotonic(), now_seen
        elif time.monotonic() - quiet_since > 0.7:
            return
    raise AssertionError(f"clients did not settle: outboxes {[len(c.outbox) for c in clients]}")


async def _server_view(api: Api, client: SyncClient, room: str) -> list[tuple]:
    messages, before = [], None
    while True:
        path = f"/history/room/{room}?limit=100" + (f"&before={before}" if before else "")
        page = (await api.get(path, client.user)).body
        messages.extend(page["messages"])
        if not page["has_more"]:
            break
        before = page["messages"][-1]["id"]
    messages.reverse()
    return [(m["id"], m["text"], m["deleted"], m["reactions"]) for m in messages]


async def _random_action(rng: random.Random, c: SyncClient, room: str) -> None:
    mine = [m for m in c.messages.values() if m["sender_id"] == c.user.id and not m["deleted"]]
    live = [m for m in c.messages.values() if not m["deleted"]]
    roll = rng.random()
    if roll < 0.12 and mine:
        target = rng.choice(mine)
        await c.request("message.edit", {"message_id": target["id"], "text": f"edited {roll}"})
    elif roll < 0.18 and mine:
        await c.request("message.delete", {"message_id": rng.choice(mine)["id"]})
    elif roll < 0.40 and live:
        target, emoji = rng.choice(live), rng.choice(EMOJI)
        has = c.user.id in target["reactions"].get(emoji, [])
        kind = "reaction.remove" if has else "reaction.add"
        await c.request(kind, {"message_id": target["id"], "emoji": emoji})
    elif roll < 0.50 and live:
        newest = max(m["id"] for m in live)
        await c.request("message.read", {"room_id": room, "message_id": newest})


@pytest.fixture
async def world(db_uri: str | None, tmp_path: Path) -> AsyncIterator[dict]:
    settings = make_settings(db_uri, tmp_path)
    state: dict = {"server": Server(settings), "settings": settings}
    await state["server"].start()
    yield state
    await state["server"].stop()


async def test_three_clients_with_random_drops_and_a_restart_converge(world: dict) -> None:
    rng = random.Random(20261125)
    api = Api(world["server"].port)
    users = [await api.register() for _ in range(3)]
    room = await api.group(users[0], *users[1:])
    clients = [SyncClient(api, u) for u in users]
    for c in clients:
        await c.connect()
    sent: set[str] = set()

    async def restart() -> None:
        await world["server"].stop()
        world["server"] = Server(world["settings"])
        await world["server"].start()
        api.port = world["server"].port
        api.base = f"http://127.0.0.1:{api.port}"

    for step in range(300):
        c = rng.choice(clients)
        sent.add(await c.send_text(room, f"message {step}"))
        roll = rng.random()
        if roll < 0.06:
            await c.reconnect()  # dropped right after sending: between send and ack
        elif roll < 0.12:
            await rng.choice(clients).reconnect()
        await _random_action(rng, rng.choice(clients), room)
        if step == 150:
            await _settle(clients)
            resumes_before_restart = [list(c.resumes) for c in clients]
            await restart()
            for client in clients:
                await client.reconnect()
        if rng.random() < 0.3:
            await asyncio.sleep(0.005)
    await _settle(clients)

    # Before the restart every reconnect resumed; after it, the first one resynced.
    for history in resumes_before_restart:
        assert history[0] is None and set(history[1:]) == {"ok"}, history
    for c in clients:
        after = c.resumes[len(resumes_before_restart[clients.index(c)]) :]
        assert after[0] == "resync", after
        assert c.seq_errors == [], c.seq_errors

    server_view = await _server_view(api, clients[0], room)
    # The run did exercise every kind of change.
    assert sum(1 for *_, deleted, _ in server_view if deleted) > 5
    assert sum(1 for *_, reactions in server_view if reactions) > 5
    assert sum(1 for _, text, *_ in server_view if text.startswith("edited")) > 5
    texts = [text for _, text, deleted, _ in server_view if not deleted]
    assert len(server_view) == 300 and len({i for i, *_ in server_view}) == 300
    assert sum(1 for t in texts if t.startswith("message ")) + sum(
        1 for t in texts if t.startswith("edited ")
    ) == len(texts)
    assert {cid for c in clients for cid in c.accepted} == sent  # every send was acked once
    detail = (await api.get(f"/rooms/{room}", users[0])).body
    pointers = {
        (room, m["user_id"]): m["last_read_message_id"]
        for m in detail["members"]
        if m["last_read_message_id"]
    }
    for c in clients:
        assert c.view(room) == server_view, f"{c.user.username} diverged"
        assert {k: v for k, v in c.read_pointers.items() if k[0] == room} == pointers


async def test_resume_replays_exactly_the_missed_events_in_order(api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    bob_client = SyncClient(api, bob)
    await bob_client.connect()
    first = await api.send(alice, room, "before")
    await _settle([bob_client])
    seq_before = bob_client.last_seq
    bob_client.drop()
    await asyncio.sleep(0.2)
    missed = [await api.send(alice, room, f"missed {i}") for i in range(5)]
    await api.patch(f"/messages/{first['id']}", {"text": "before, edited"}, alice)
    await api.delete(f"/messages/{missed[0]['id']}", alice)
    await bob_client.connect()
    await _settle([bob_client])
    assert bob_client.resumes == [None, "ok"]
    assert bob_client.seq_errors == []
    # Every missed event once, in order: 5 new, 1 updated, 1 deleted, and the unread counts
    # (coalesced, so how many of those depends on timing).
    replayed = bob_client.sequenced[seq_before:]
    assert len(replayed) == bob_client.last_seq - seq_before
    assert [t for t in replayed if t != "unread"] == [
        *["message.new"] * 5,
        "message.updated",
        "message.deleted",
    ]
    assert "unread" in replayed
    assert bob_client.view(room) == await _server_view(api, bob_client, room)
    metrics = (await api.get("/metrics")).body
    assert 'fastsock_resume_total{outcome="ok"} 1.0' in metrics


async def test_resume_beyond_the_buffer_resyncs_and_refetches_changes(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_module, "KEEP", 1024)  # two or three frames
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    kept = await api.send(alice, room, "kept")
    bob_client = SyncClient(api, bob)
    await bob_client.connect()
    await _settle([bob_client])
    bob_client.drop()
    await asyncio.sleep(0.2)
    for i in range(5):
        await api.send(alice, room, f"while away {i}")
    await api.patch(f"/messages/{kept['id']}", {"text": "kept, edited"}, alice)
    await api.request(
        "PUT", f"/messages/{kept['id']}/reactions/%F0%9F%91%8D", token=alice.access_token
    )
    await api.post(f"/rooms/{room}/read", {"message_id": kept["id"]}, alice)
    await bob_client.connect()
    await _settle([bob_client])
    assert bob_client.resumes == [None, "resync"]
    assert bob_client.view(room) == await _server_view(api, bob_client, room)
    assert bob_client.read_pointers[(room, alice.id)] == kept["id"]
    metrics = (await api.get("/metrics")).body
    assert 'fastsock_resume_total{outcome="gap"} 1.0' in metrics


async def test_resume_of_someone_elses_or_an_unknown_session_resyncs(api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    alice_ws = await api.ws(alice)
    assert alice_ws.ready is not None
    stolen = await api.ws(bob, resume={"session": alice_ws.ready["session"], "last_seq": 0})
    assert stolen.ready is not None and stolen.ready["resume"] == "resync"
    assert stolen.ready["session"] != alice_ws.ready["session"]
    unknown = await api.ws(bob, resume={"session": "nope.nope", "last_seq": 0})
    assert unknown.ready is not None and unknown.ready["resume"] == "resync"
    metrics = (await api.get("/metrics")).body
    assert 'fastsock_resume_total{outcome="wrong_user"} 1.0' in metrics
    assert 'fastsock_resume_total{outcome="unknown"} 1.0' in metrics


@pytest.mark.parametrize(
    "resume",
    [{"session": "x"}, {"session": 5, "last_seq": 0}, "x", {"session": "x", "last_seq": "1"}],
)
async def test_malformed_resume_is_refused(api: Api, resume: object) -> None:
    alice = await api.register()
    from tests.realtime.test_socket import _raw

    sock = await _raw(api)
    await sock.send("auth", {"token": alice.access_token, "resume": resume})
    assert await sock.close_code() == 4401


async def test_resumed_session_replaces_a_socket_that_has_not_noticed_it_is_dead(
    api: Api,
) -> None:
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    old = await api.ws(bob)
    assert old.ready is not None
    await api.send(alice, room, "one")
    await old.expect("message.new")
    new = await api.ws(bob, resume={"session": old.ready["session"], "last_seq": old.seqs[-1]})
    assert new.ready is not None and new.ready["resume"] == "ok"
    assert await old.close_code() == 4000
    await api.send(alice, room, "two")
    assert (await new.expect("message.new"))["message"]["text"] == "two"
