"""Group calls on FastSock's side (docs/calls.md, "Group calls"), with real WebSocket clients
and fake SFU workers speaking the internal API over HTTP (tests/realtime/fake_workers.py):
admission through the membership check, worker choice, participant events, the end of a call
and its records, the internal API's authentication, failover, drain, restart and eviction."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fastsock.app import Server
from fastsock.calls.sfu_tokens import issue_control
from fastsock.errors import Unavailable
from fastsock.services.tokens import ACCESS, TokenCodec
from fastsock.store.ids import new_id
from tests.realtime.fake_workers import (
    SFU_SECRET,
    FakeWorker,
    GroupServers,
    active_call,
    join,
    joined,
    metric,
    until,
)
from tests.support import Api


@pytest.fixture
async def servers(db_uri: str | None, tmp_path: Path) -> AsyncIterator[GroupServers]:
    servers = GroupServers(db_uri, tmp_path)
    yield servers
    await servers.stop_all()


@pytest.fixture
async def world(servers: GroupServers) -> tuple[Api, Server]:
    srv = await servers.start()
    return Api(srv.port), srv


# --- admission ----------------------------------------------------------------------------------


async def test_only_members_of_group_rooms_may_join(world: tuple[Api, Server]) -> None:
    api, _ = world
    alice, bob, mallory = await api.register(), await api.register(), await api.register()
    await FakeWorker(api).start()
    room = await api.group(alice, bob)
    dm = (await api.post("/rooms/direct", {"user_id": bob.id}, alice)).body["id"]
    ws = await api.ws(mallory)
    for target in (room, new_id()):  # someone else's room, or none at all: the same answer
        reply = await join(ws, target)
        assert reply["type"] == "error" and reply["data"]["code"] == "not_a_member", reply
    alice_ws = await api.ws(alice)
    reply = await join(alice_ws, dm)
    assert reply["type"] == "error", reply
    assert (reply["data"]["code"], reply["data"]["field"]) == ("invalid_request", "room_id")
    for bad in ({"room_id": "x"}, {"room_id": room, "media": "smell"}, {"room_id": room, "x": 1}):
        reply = await alice_ws.request("call.join", bad)
        assert reply["data"]["code"] == "invalid_request", reply
    assert await active_call(api, alice, room) is None  # nothing started by the refusals
    assert (await alice_ws.request("ping"))["type"] == "pong"  # the socket stays open


async def test_without_a_secret_group_calls_are_not_configured(servers: GroupServers) -> None:
    srv = await servers.start(sfu_secret=None)
    api = Api(srv.port)
    alice = await api.register()
    room = await api.group(alice)
    reply = await join(await api.ws(alice), room)
    assert reply["type"] == "call.unavailable", reply
    assert reply["data"] == {"room_id": room, "reason": "not_configured"}
    # The internal API does not exist.
    worker = FakeWorker(api)
    r = await worker.post("register", {"url": "ws://127.0.0.1:1/ws", "capacity": 1, "version": "1"})
    assert (r.status, r.error_code) == (404, "not_found")


async def test_no_worker_full_worker_and_full_call(servers: GroupServers) -> None:
    srv = await servers.start(call_max_participants=2)
    api = Api(srv.port)
    users = [await api.register() for _ in range(4)]
    room = await api.group(*users)
    sockets = [await api.ws(u) for u in users]
    reply = await join(sockets[0], room)
    assert reply["data"] == {"room_id": room, "reason": "no_worker"}, reply

    full = await FakeWorker(api, capacity=1).start()
    full.extra_peers = 1
    assert (await full.heartbeat()).status == 200
    reply = await join(sockets[0], room)
    assert reply["data"] == {"room_id": room, "reason": "worker_full"}, reply
    assert await active_call(api, users[0], room) is None

    worker = await FakeWorker(api, capacity=5).start()
    await joined(sockets[0], room, worker)
    second = await join(sockets[1], room)  # admitted, not connected yet: counts already
    assert second["type"] == "call.sfu"
    reply = await join(sockets[2], room)
    assert reply["data"] == {"room_id": room, "reason": "call_full"}, reply
    await worker.admit(second["data"])
    reply = await join(sockets[3], room)
    assert reply["data"] == {"room_id": room, "reason": "call_full"}, reply
    # Someone in the call may always rejoin (a reload).
    assert (await join(sockets[1], room))["type"] == "call.sfu"
    for outcome, count in (("admitted", 3), ("call_full", 2), ("no_worker", 1)):
        assert await metric(api, f'fastsock_sfu_admissions_total{{outcome="{outcome}"}}') == count


async def test_a_call_goes_to_the_least_loaded_worker_and_stays_there(
    world: tuple[Api, Server],
) -> None:
    api, _ = world
    alice, bob, carol = await api.register(), await api.register(), await api.register()
    busy = await FakeWorker(api, capacity=10).start()
    busy.extra_peers = 6
    await busy.heartbeat()
    quiet = await FakeWorker(api, capacity=10).start()
    quiet.extra_peers = 2
    await quiet.heartbeat()
    room = await api.group(alice, bob, carol)
    first = await joined(await api.ws(alice), room, quiet)
    token_ttl = first["ttl"]
    assert first["room_id"] == room and first["call"]["kind"] == "group" and token_ttl
    assert {"ice_servers", "ice_transport_policy"} <= set(first)
    # The quiet worker fills up; the room's call stays on it all the same.
    quiet.extra_peers = 8
    await quiet.heartbeat()
    second = await joined(await api.ws(bob), room, quiet)
    assert second["call_id"] == first["call_id"]
    # Another room's call goes to the now least-loaded worker.
    other = await api.group(carol)
    third = await join(await api.ws(carol), other)
    assert third["data"]["worker_url"] == busy.url


# --- participants and the room ------------------------------------------------------------------


async def test_participants_come_and_go_and_only_the_room_hears_it(
    world: tuple[Api, Server],
) -> None:
    api, _ = world
    alice, bob, carol, dave = [await api.register() for _ in range(4)]
    worker = await FakeWorker(api).start()
    room = await api.group(alice, bob, carol)
    alice_ws, bob_ws, carol_ws, dave_ws = [await api.ws(u) for u in (alice, bob, carol, dave)]
    sfu = await joined(alice_ws, room, worker)
    call_id = sfu["call_id"]
    for ws in (alice_ws, bob_ws, carol_ws):
        started = await ws.expect("call.started")
        assert started["call"]["id"] == call_id and started["call"]["caller_id"] == alice.id
        event = await ws.expect("call.participant_joined")
        assert event == {
            "call_id": call_id,
            "room_id": room,
            "user_id": alice.id,
            "present_ids": [alice.id],
        }
    await joined(bob_ws, room, worker)
    for ws in (alice_ws, bob_ws, carol_ws):
        event = await ws.expect("call.participant_joined", lambda f: f["data"]["user_id"] == bob.id)
        assert event["present_ids"] == [alice.id, bob.id]
    # A member opening the room later sees the call in progress.
    view = await active_call(api, carol, room)
    assert view is not None and view["id"] == call_id and view["present_ids"] == [alice.id, bob.id]
    listed = {r["id"]: r for r in (await api.get("/rooms", carol)).body["rooms"]}
    assert listed[room]["active_call"]["id"] == call_id
    # A second report of the same join changes nothing.
    await worker.event("peer_joined", call_id, bob.id)
    await worker.drop(call_id, bob.id, "disconnected")
    for ws in (alice_ws, bob_ws, carol_ws):
        event = await ws.expect("call.participant_left")
        assert (event["user_id"], event["present_ids"]) == (bob.id, [alice.id])
    await alice_ws.assert_none("call.participant_joined", quiet=0.2)
    for kind in ("call.started", "call.participant_joined", "call.participant_left"):
        await dave_ws.assert_none(kind, quiet=0.1)
    assert (await join(await api.ws(alice), room))["data"]["call_id"] == call_id  # started once
    await carol_ws.assert_none("call.started", quiet=0.1)


async def test_the_last_one_out_ends_the_call_with_its_records(world: tuple[Api, Server]) -> None:
    api, _ = world
    alice, bob, carol = await api.register(), await api.register(), await api.register()
    worker = await FakeWorker(api).start()
    room = await api.group(alice, bob, carol)
    alice_ws, bob_ws, carol_ws = await api.ws(alice), await api.ws(bob), await api.ws(carol)
    call_id = (await joined(alice_ws, room, worker))["call_id"]
    await joined(bob_ws, room, worker)
    # Leaving through FastSock: the worker is told to let them go.
    assert (await bob_ws.request("call.leave", {"call_id": call_id}))["type"] == "ack"
    await worker.heartbeat()
    assert (call_id, bob.id) in worker.evicted
    # Someone never in it learns nothing; a call that does not exist neither.
    for who, target in ((carol_ws, call_id), (alice_ws, new_id())):
        reply = await who.request("call.leave", {"call_id": target})
        assert reply["data"]["code"] == "not_found", reply
    await worker.drop(call_id, alice.id, "leave")
    for ws in (alice_ws, bob_ws, carol_ws):
        ended = await ws.expect("call.ended")
        assert (ended["call_id"], ended["room_id"], ended["reason"]) == (call_id, room, "empty")
        assert ended["participants"] == [alice.id, bob.id]
        assert ended["call"]["state"] == "ended" and ended["duration_s"] >= 0
    assert await active_call(api, carol, room) is None
    await worker.heartbeat()
    assert call_id in worker.ended

    calls = (await api.get(f"/rooms/{room}/calls", carol)).body["calls"]
    assert [c["id"] for c in calls] == [call_id]
    assert calls[0]["kind"] == "group" and calls[0]["callee_id"] is None
    assert (calls[0]["outcome"], calls[0]["end_reason"]) == ("completed", "empty")
    assert calls[0]["participant_ids"] == [alice.id, bob.id] and calls[0]["present_ids"] == []
    assert "worker_id" not in calls[0]

    async def entry() -> bool:
        messages = (await api.get(f"/history/room/{room}", carol)).body["messages"]
        return any(m["type"] == "call" and m["call"]["id"] == call_id for m in messages)

    await until(entry, "the call's timeline entry")
    messages = (await api.get(f"/history/room/{room}", carol)).body["messages"]
    message = next(m for m in messages if m["type"] == "call")
    assert message["sender_id"] == alice.id and message["call"]["participant_ids"] == [
        alice.id,
        bob.id,
    ]
    # The next join starts a new call.
    assert (await join(alice_ws, room))["data"]["call_id"] != call_id


async def test_dropped_participants_are_waited_for_then_the_call_ends(
    servers: GroupServers,
) -> None:
    """Someone the worker no longer lists, or who dropped, is out once their join token is
    spent (until then they may be connecting); an empty call waits the grace period."""
    srv = await servers.start(sfu_token_ttl_s=1, call_empty_grace_s=0.5)
    api = Api(srv.port)
    alice, bob = await api.register(), await api.register()
    worker = await FakeWorker(api).start()
    room = await api.group(alice, bob)
    alice_ws, bob_ws = await api.ws(alice), await api.ws(bob)
    call_id = (await joined(alice_ws, room, worker))["call_id"]
    await joined(bob_ws, room, worker)
    worker.calls[call_id].discard(alice.id)  # its peer_left never arrived
    assert (await worker.heartbeat()).status == 200
    assert (await active_call(api, bob, room))["present_ids"] == [alice.id, bob.id]

    async def alice_out() -> bool:
        await worker.heartbeat()
        return (await active_call(api, bob, room))["present_ids"] == [bob.id]

    await until(alice_out, "alice taken out by a heartbeat")
    event = await bob_ws.expect("call.participant_left")
    assert (event["user_id"], event["present_ids"]) == (alice.id, [bob.id])
    # A newer connection of bob's replaced the old one: he is still in.
    await worker.event("peer_left", call_id, bob.id, "replaced")
    assert (await active_call(api, bob, room))["present_ids"] == [bob.id]
    await worker.drop(call_id, bob.id, "disconnected")
    assert await active_call(api, bob, room) is not None  # he may come back
    ended = await bob_ws.expect("call.ended", timeout=20)
    assert (ended["call_id"], ended["reason"]) == (call_id, "empty")
    assert ended["participants"] == [alice.id, bob.id]


async def test_a_participant_whose_connection_dropped_gets_back_in(servers: GroupServers) -> None:
    """The worker reports a dropped connection before the user's `call.sfu_lost` arrives, and
    their join token may be long spent: someone who took part and is still a member gets a
    fresh token; a member who never took part learns nothing."""
    srv = await servers.start(sfu_token_ttl_s=1)
    api = Api(srv.port)
    alice, bob, carol = await api.register(), await api.register(), await api.register()
    worker = await FakeWorker(api).start()
    room = await api.group(alice, bob, carol)
    alice_ws, bob_ws, carol_ws = await api.ws(alice), await api.ws(bob), await api.ws(carol)
    call_id = (await joined(alice_ws, room, worker))["call_id"]
    await joined(bob_ws, room, worker)
    await worker.drop(call_id, alice.id, "disconnected")
    assert (await active_call(api, bob, room))["present_ids"] == [bob.id]
    await asyncio.sleep(1.1)  # alice's admission (the token's lifetime, 1 s) is over

    reply = await alice_ws.request("call.sfu_lost", {"call_id": call_id})
    assert reply["type"] == "ack", reply
    moved = await alice_ws.expect("call.sfu_moved")
    claims = await worker.admit(moved)
    assert (claims.user_id, claims.call_id) == (alice.id, call_id)
    refused = await carol_ws.request("call.sfu_lost", {"call_id": call_id})
    assert refused["type"] == "error" and refused["data"]["code"] == "not_found"


async def test_a_removed_member_is_out_of_the_call_at_once(world: tuple[Api, Server]) -> None:
    api, _ = world
    alice, bob, carol = await api.register(), await api.register(), await api.register()
    worker = await FakeWorker(api).start()
    room = await api.group(alice, bob, carol)
    alice_ws, bob_ws = await api.ws(alice), await api.ws(bob)
    call_id = (await joined(alice_ws, room, worker))["call_id"]
    await joined(bob_ws, room, worker)
    late = await join(await api.ws(carol), room)  # admitted, not yet connected
    assert (await api.delete(f"/rooms/{room}/members/{bob.id}", alice)).status == 204
    assert (await api.delete(f"/rooms/{room}/members/{carol.id}", alice)).status == 204
    event = await alice_ws.expect("call.participant_left")
    assert (event["user_id"], event["present_ids"]) == (bob.id, [alice.id])
    assert (await bob_ws.expect("call.participant_left"))["user_id"] == bob.id
    r = await worker.heartbeat()
    assert {"call_id": call_id, "user_id": bob.id} in r.body["evict"]
    # Carol's token still passes the worker's check, but FastSock has her evicted.
    await worker.admit(late["data"])
    assert (call_id, carol.id) in worker.evicted
    assert (await active_call(api, alice, room))["present_ids"] == [alice.id]
    await alice_ws.drain(0.2)
    assert not [
        f
        for f in alice_ws.frames
        if f["type"].startswith("call.participant") and f["data"]["user_id"] == carol.id
    ]


async def test_a_removed_member_the_worker_still_has_is_evicted_again(
    world: tuple[Api, Server],
) -> None:
    """The evict went out in a reply that never arrived (FastSock restarted, the request
    timed out): every heartbeat that still lists them evicts them again."""
    api, _ = world
    alice, bob = await api.register(), await api.register()
    worker = await FakeWorker(api).start(beat=False)
    room = await api.group(alice, bob)
    call_id = (await joined(await api.ws(alice), room, worker))["call_id"]
    await joined(await api.ws(bob), room, worker)
    assert (await api.delete(f"/rooms/{room}/members/{bob.id}", alice)).status == 204
    for _ in range(2):
        r = await worker.heartbeat()
        assert {"call_id": call_id, "user_id": bob.id} in r.body["evict"], r.body
        worker.calls[call_id].add(bob.id)  # that reply was lost: bob still gets the media
    assert (await active_call(api, alice, room))["present_ids"] == [alice.id]


async def test_a_removal_the_call_missed_is_made_good_by_the_next_heartbeat(
    world: tuple[Api, Server],
) -> None:
    """The room change stood but its hook could not reach the call (the database or, in
    cluster mode, the call leader was away): the worker's next heartbeat puts them out."""
    api, server = world
    alice, bob = await api.register(), await api.register()
    worker = await FakeWorker(api).start(beat=False)
    room = await api.group(alice, bob)
    alice_ws = await api.ws(alice)
    call_id = (await joined(alice_ws, room, worker))["call_id"]
    await joined(await api.ws(bob), room, worker)
    assert server.ctx is not None

    async def away(room_id: str, user_id: str) -> None:
        raise Unavailable("the database is unreachable")

    server.ctx.services.calls._requests["member_removed"] = away
    assert (await api.delete(f"/rooms/{room}/members/{bob.id}", alice)).status == 204
    assert (await active_call(api, alice, room))["present_ids"] == [alice.id, bob.id]
    r = await worker.heartbeat()
    assert {"call_id": call_id, "user_id": bob.id} in r.body["evict"], r.body
    event = await alice_ws.expect("call.participant_left")
    assert (event["user_id"], event["present_ids"]) == (bob.id, [alice.id])


async def test_someone_the_worker_has_but_fastsock_does_not_is_reconciled(
    servers: GroupServers,
) -> None:
    """A member the worker lists whose `peer_joined` was lost is present once their
    admission is over; a stranger it lists is evicted."""
    srv = await servers.start(sfu_token_ttl_s=1)
    api = Api(srv.port)
    alice, bob, mallory = await api.register(), await api.register(), await api.register()
    worker = await FakeWorker(api).start(beat=False)
    room = await api.group(alice, bob)
    alice_ws = await api.ws(alice)
    call_id = (await joined(alice_ws, room, worker))["call_id"]
    assert (await join(await api.ws(bob), room))["type"] == "call.sfu"
    worker.calls[call_id] |= {bob.id, mallory.id}  # connected; their peer_joined never came

    async def bob_present() -> bool:
        await worker.heartbeat()
        return (await active_call(api, alice, room))["present_ids"] == [alice.id, bob.id]

    await until(bob_present, "bob present again from the worker's heartbeat")
    event = await alice_ws.expect(
        "call.participant_joined", lambda f: f["data"]["user_id"] == bob.id
    )
    assert event["present_ids"] == [alice.id, bob.id]
    assert (call_id, mallory.id) in worker.evicted and (call_id, bob.id) not in worker.evicted
    assert worker.calls[call_id] == {alice.id, bob.id}


async def test_leaving_and_rejoining_at_once_is_not_evicted_by_the_leave(
    world: tuple[Api, Server],
) -> None:
    """The evict queued by `call.leave` must not reach the worker after the user joined again
    (it would take out their new connection)."""
    api, _ = world
    alice, bob = await api.register(), await api.register()
    worker = await FakeWorker(api).start(beat=False)
    room = await api.group(alice, bob)
    bob_ws = await api.ws(bob)
    call_id = (await joined(await api.ws(alice), room, worker))["call_id"]
    await joined(bob_ws, room, worker)
    assert (await bob_ws.request("call.leave", {"call_id": call_id}))["type"] == "ack"
    await joined(bob_ws, room, worker)
    r = await worker.heartbeat()
    assert r.body["evict"] == [] and (call_id, bob.id) not in worker.evicted, r.body
    assert worker.calls[call_id] == {alice.id, bob.id}
    assert (await active_call(api, alice, room))["present_ids"] == [alice.id, bob.id]


async def test_a_user_is_in_one_call_at_a_time(world: tuple[Api, Server]) -> None:
    api, _ = world
    alice, bob, carol = await api.register(), await api.register(), await api.register()
    worker = await FakeWorker(api).start()
    room = await api.group(alice, bob, carol)
    other_room = await api.group(alice, bob)
    dm = (await api.post("/rooms/direct", {"user_id": carol.id}, bob)).body["id"]
    dm_alice = (await api.post("/rooms/direct", {"user_id": alice.id}, carol)).body["id"]
    alice_ws, bob_ws, carol_ws = await api.ws(alice), await api.ws(bob), await api.ws(carol)
    await joined(alice_ws, room, worker)
    # In a group call: no other group call, no 1:1 call; callers hear "busy".
    reply = await join(alice_ws, other_room)
    assert reply["data"]["code"] == "conflict", reply
    dm_with_bob = (await api.post("/rooms/direct", {"user_id": bob.id}, alice)).body["id"]
    reply = await alice_ws.request("call.invite", {"room_id": dm_with_bob, "media": "audio"})
    assert reply["data"]["code"] == "conflict", reply
    reply = await carol_ws.request("call.invite", {"room_id": dm_alice, "media": "audio"})
    assert reply["type"] == "call.busy", reply
    # In a 1:1 call: no group call.
    reply = await bob_ws.request("call.invite", {"room_id": dm, "media": "audio"})
    assert reply["type"] == "call.created", reply
    reply = await join(bob_ws, room)
    assert reply["data"]["code"] == "conflict", reply


async def test_admitted_to_one_group_call_no_token_for_another(world: tuple[Api, Server]) -> None:
    api, _ = world
    alice = await api.register()
    await FakeWorker(api).start()
    room, other_room = await api.group(alice), await api.group(alice)
    alice_ws = await api.ws(alice)
    first = await join(alice_ws, room)  # admitted, not connected yet
    assert first["type"] == "call.sfu", first
    reply = await join(alice_ws, other_room)
    assert reply["data"]["code"] == "conflict", reply
    assert await active_call(api, alice, other_room) is None
    assert (await alice_ws.request("call.leave", {"call_id": first["data"]["call_id"]}))[
        "type"
    ] == "ack"
    assert (await join(alice_ws, other_room))["type"] == "call.sfu"


async def test_a_call_that_ends_during_an_admission_is_not_joined(
    world: tuple[Api, Server],
) -> None:
    """The call ends while bob is being admitted: no token for it (he would be busy for the
    token's lifetime); he starts the room's next call instead."""
    api, srv = world
    assert srv.ctx is not None
    group = srv.ctx.services.calls.group
    alice, bob = await api.register(), await api.register()
    worker = await FakeWorker(api).start()
    room = await api.group(alice, bob)
    call_id = (await joined(await api.ws(alice), room, worker))["call_id"]
    reserve = group.registry.reserve

    async def reserve_while_the_call_ends(worker_id: str) -> None:
        group.registry.reserve = reserve  # type: ignore[method-assign]
        call = await group.store.calls.live_group(room)
        assert call is not None
        await group.end(call, "empty")
        await reserve(worker_id)

    group.registry.reserve = reserve_while_the_call_ends  # type: ignore[method-assign]
    reply = await join(await api.ws(bob), room)
    assert reply["type"] == "call.sfu" and reply["data"]["call_id"] != call_id, reply
    assert group.admissions.call_of(bob.id) == reply["data"]["call_id"]


# --- the internal API ---------------------------------------------------------------------------


async def test_the_internal_api_takes_only_a_workers_own_control_token(
    world: tuple[Api, Server],
) -> None:
    api, _ = world
    alice = await api.register()
    worker = await FakeWorker(api).start()
    path = f"/internal/sfu/workers/{worker.id}/heartbeat"
    body = worker.heartbeat_body()
    now = time.time()
    signed_alike = TokenCodec(SFU_SECRET).issue(ACCESS, worker.id, datetime.now(UTC)).token
    for token, status, code in (
        (None, 401, "unauthenticated"),
        (alice.access_token, 401, "unauthenticated"),
        (signed_alike, 401, "unauthenticated"),  # an access token, even with the SFU secret
        (issue_control("another-secret-" + "q" * 32, worker.id, now), 401, "unauthenticated"),
        (issue_control(SFU_SECRET, worker.id, now - 3600), 401, "unauthenticated"),
        (issue_control(SFU_SECRET, new_id(), now), 403, "forbidden"),
    ):
        r = await api.request("POST", path, body, token=token)
        assert (r.status, r.error_code) == (status, code), (token, r.body)
    bad_id = issue_control(SFU_SECRET, "nope", now)
    r = await api.request("POST", "/internal/sfu/workers/nope/heartbeat", body, token=bad_id)
    assert (r.status, r.error_code) == (400, "invalid_request")
    for what, bad in (
        ("register", {"url": "http://127.0.0.1:1/ws", "capacity": 1, "version": "1"}),
        ("register", {"url": worker.url, "capacity": 0, "version": "1"}),
        ("heartbeat", body | {"cpu": -1}),
        ("heartbeat", body | {"calls": [{"call_id": "x", "room_id": new_id(), "user_ids": []}]}),
        ("heartbeat", {k: v for k, v in body.items() if k != "draining"}),
        ("events", {"events": [{"type": "peer_moved", "call_id": new_id(), "user_id": new_id()}]}),
        ("events", {"events": "all"}),
    ):
        r = await worker.post(what, bad)
        assert (r.status, r.error_code) == (400, "invalid_request"), (what, bad, r.body)
    r = await api.request("POST", path, raw=b"{", token=worker.control_token())
    assert (r.status, r.error_code) == (400, "invalid_request")
    # A big worker's heartbeat is larger than a client's body may be; calls FastSock does not
    # have there are for the worker to end.
    strangers = [
        {"call_id": new_id(), "room_id": new_id(), "user_ids": [new_id(), new_id()]}
        for _ in range(1000)
    ]
    r = await worker.post("heartbeat", body | {"peers": 2000, "calls": strangers})
    assert r.status == 200, r.body
    assert r.body["end"] == [c["call_id"] for c in strangers]
    # A worker FastSock does not know (never registered, or lost): register first.
    stranger = FakeWorker(api)
    for r in (
        await stranger.heartbeat(),
        await stranger.post("events", {"events": []}),
        await stranger.post("", method="DELETE"),
    ):
        assert (r.status, r.error_code) == (404, "unknown_worker"), r.body
