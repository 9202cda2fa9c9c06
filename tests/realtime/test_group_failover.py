"""Group calls when workers go away (docs/calls.md, "Group calls"): a worker that misses its
heartbeats or stops answering its health URL is lost and its calls move (or end when nowhere
is left), a draining worker hands its calls over, and a FastSock restart ends the calls of
workers that died meanwhile. Fake workers over the internal API (tests/realtime/fake_workers.py)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fastsock.calls.registry import QUIET_PERIODS
from fastsock.store.ids import new_id
from tests.realtime.fake_workers import (
    FakeWorker,
    GroupServers,
    active_call,
    join,
    joined,
    metric,
    until,
)
from tests.support import Api

# Heartbeats every 0.5 s; lost after 2 s of silence.
FAST = {"sfu_heartbeat_s": 0.5, "sfu_missed_heartbeats": 4}


@pytest.fixture
async def servers(db_uri: str | None, tmp_path: Path) -> AsyncIterator[GroupServers]:
    servers = GroupServers(db_uri, tmp_path)
    yield servers
    await servers.stop_all()


def moved_to(worker: FakeWorker, call_id: str) -> Any:
    return lambda f: f["data"]["call_id"] == call_id and f["data"]["worker_url"] == worker.url


async def test_a_silent_worker_is_lost_and_its_calls_move(servers: GroupServers) -> None:
    api = Api((await servers.start(**FAST)).port)
    alice, bob, carol = await api.register(), await api.register(), await api.register()
    room = await api.group(alice, bob, carol)
    doomed = await FakeWorker(api).start()
    alice_ws, alice_tab, bob_ws, carol_ws = [await api.ws(u) for u in (alice, alice, bob, carol)]
    call_id = (await joined(alice_ws, room, doomed))["call_id"]
    await joined(bob_ws, room, doomed)
    spare = await FakeWorker(api).start()
    await doomed.die()
    # Every session of everyone in the call hears where to go, with a token for there.
    for ws in (alice_ws, alice_tab, bob_ws):
        moved = await ws.expect("call.sfu_moved", moved_to(spare, call_id), timeout=20)
        assert moved["room_id"] == room and "ice_servers" in moved
    await carol_ws.assert_none("call.sfu_moved", quiet=0.2)
    await spare.admit(moved)
    assert (await active_call(api, carol, room))["present_ids"] == [alice.id, bob.id]
    assert await metric(api, 'fastsock_sfu_moves_total{reason="worker_lost"}') == 1

    async def gauges() -> bool:
        up = await metric(api, 'fastsock_sfu_workers{state="up"}')
        return up == 1 and await metric(api, "fastsock_group_calls_active") == 1

    await until(gauges, "one worker up, one call in progress")
    # The lost worker is refused from now on: it must register again (with no rooms).
    for r in (await doomed.heartbeat(), await doomed.deregister()):
        assert (r.status, r.error_code) == (404, "unknown_worker")
    await carol_ws.assert_none("call.ended", quiet=0.1)


async def test_a_lost_worker_with_nowhere_to_move_ends_its_calls(servers: GroupServers) -> None:
    api = Api((await servers.start(**FAST)).port)
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    worker = await FakeWorker(api).start()
    alice_ws, bob_ws = await api.ws(alice), await api.ws(bob)
    call_id = (await joined(alice_ws, room, worker))["call_id"]
    await worker.die()
    for ws in (alice_ws, bob_ws):
        ended = await ws.expect("call.ended", timeout=20)
        assert (ended["call_id"], ended["reason"]) == (call_id, "worker_lost")
        assert ended["participants"] == [alice.id]
    assert await active_call(api, bob, room) is None
    calls = (await api.get(f"/rooms/{room}/calls", bob)).body["calls"]
    assert (calls[0]["id"], calls[0]["end_reason"]) == (call_id, "worker_lost")
    reply = await join(alice_ws, room)
    assert reply["data"] == {"room_id": room, "reason": "no_worker"}, reply


async def test_a_draining_worker_hands_its_calls_over(servers: GroupServers) -> None:
    api = Api((await servers.start()).port)
    alice, bob, carol = await api.register(), await api.register(), await api.register()
    room = await api.group(alice, bob)
    other_room = await api.group(carol)
    first = await FakeWorker(api).start()
    second = await FakeWorker(api, extra_peers=1).start()
    third = await FakeWorker(api, extra_peers=2).start()
    for w in (second, third):
        await w.heartbeat()
    alice_ws, bob_ws = await api.ws(alice), await api.ws(bob)
    call_id = (await joined(alice_ws, room, first))["call_id"]
    await joined(bob_ws, room, first)
    # Draining (SIGTERM): its calls go to the least-loaded other worker at once, it is told
    # to close its room, and it takes no new call however idle it is.
    first.draining = True
    r = await first.heartbeat()
    assert r.body["end"] == [call_id]
    for ws in (alice_ws, bob_ws):
        await second.admit(await ws.expect("call.sfu_moved", moved_to(second, call_id)))
    assert await metric(api, 'fastsock_sfu_moves_total{reason="drain"}') == 1
    reply = await join(await api.ws(carol), other_room)
    assert reply["type"] == "call.sfu" and reply["data"]["worker_url"] != first.url
    # Deregistered (DELETE) with calls still on it: they move too.
    assert (await second.deregister()).status == 204
    for ws in (alice_ws, bob_ws):
        await ws.expect("call.sfu_moved", moved_to(third, call_id))
    assert await metric(api, 'fastsock_sfu_moves_total{reason="drain"}') == 2
    assert (await second.heartbeat()).error_code == "unknown_worker"


async def test_a_reported_lost_worker_is_probed_and_moved_from_at_once(
    servers: GroupServers,
) -> None:
    api = Api(
        (await servers.start()).port
    )  # heartbeats every 5 s: only the probe can be this quick
    alice, bob, carol = await api.register(), await api.register(), await api.register()
    room = await api.group(alice, bob, carol)
    first = await FakeWorker(api).start()
    alice_ws, bob_ws, carol_ws = await api.ws(alice), await api.ws(bob), await api.ws(carol)
    call_id = (await joined(alice_ws, room, first))["call_id"]
    await joined(bob_ws, room, first)
    second = await FakeWorker(api, extra_peers=1).start()
    # Only members in the call may report it.
    for ws, target in ((carol_ws, call_id), (alice_ws, new_id())):
        reply = await ws.request("call.sfu_lost", {"call_id": target})
        assert reply["data"]["code"] == "not_found", reply
    # The worker still answers: the reporter's own connection dropped; it rejoins there.
    assert (await alice_ws.request("call.sfu_lost", {"call_id": call_id}))["type"] == "ack"
    again = await alice_ws.expect("call.sfu_moved", moved_to(first, call_id))
    await first.admit(again)
    await bob_ws.assert_none("call.sfu_moved", quiet=0.2)
    # It does not: lost now, and everyone in the call moves.
    await first.stop_beating()
    await first.die()
    assert (await bob_ws.request("call.sfu_lost", {"call_id": call_id}))["type"] == "ack"
    for ws in (alice_ws, bob_ws):
        await ws.expect("call.sfu_moved", moved_to(second, call_id), timeout=5)
    assert (await first.heartbeat()).error_code == "unknown_worker"


async def test_a_worker_too_busy_to_answer_its_probe_is_lost_only_once_it_goes_quiet(
    servers: GroupServers,
) -> None:
    """One participant's `call.sfu_lost` must not knock out a busy worker that still
    heartbeats: its probe times out, and the reporter is sent back to it. Once it has also
    missed a heartbeat (long before the sweep would act), the report moves its calls."""
    heartbeat_s = 2.0
    api = Api((await servers.start(sfu_heartbeat_s=heartbeat_s, sfu_missed_heartbeats=20)).port)
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    busy = await FakeWorker(api).start()
    alice_ws, bob_ws = await api.ws(alice), await api.ws(bob)
    call_id = (await joined(alice_ws, room, busy))["call_id"]
    await joined(bob_ws, room, busy)
    second = await FakeWorker(api, extra_peers=1).start()
    busy.hung = True
    assert (await busy.heartbeat()).status == 200
    assert (await alice_ws.request("call.sfu_lost", {"call_id": call_id}))["type"] == "ack"
    await busy.admit(await alice_ws.expect("call.sfu_moved", moved_to(busy, call_id)))
    await bob_ws.assert_none("call.sfu_moved", quiet=0.2)
    assert (await busy.heartbeat()).status == 200  # still up
    # Silent and quiet: lost now, and everyone in the call moves.
    await busy.stop_beating()

    async def quiet() -> bool:
        return time.time() - busy.beat_at > heartbeat_s * QUIET_PERIODS

    await until(quiet, "a heartbeat missed")
    assert (await bob_ws.request("call.sfu_lost", {"call_id": call_id}))["type"] == "ack"
    for ws in (alice_ws, bob_ws):
        await ws.expect("call.sfu_moved", moved_to(second, call_id))
    assert (await busy.heartbeat()).error_code == "unknown_worker"


async def test_a_restart_ends_the_calls_of_workers_that_died_meanwhile(
    servers: GroupServers,
) -> None:
    srv = await servers.start()
    api = Api(srv.port)
    alice, bob = await api.register(), await api.register()
    room, kept_room = await api.group(alice, bob), await api.group(bob)
    dead = await FakeWorker(api).start()
    dead_call = (await joined(await api.ws(alice), room, dead))["call_id"]
    alive = await FakeWorker(api, extra_peers=1).start()
    kept_call = (await joined(await api.ws(bob), kept_room, alive))["call_id"]
    await servers.stop(srv)
    await dead.die()
    # Both workers' heartbeats are recent, but only one still answers.
    srv = await servers.start()
    api = Api(srv.port)
    assert await active_call(api, alice, room) is None
    calls = (await api.get(f"/rooms/{room}/calls", alice)).body["calls"]
    assert (calls[0]["id"], calls[0]["end_reason"]) == (dead_call, "worker_lost")
    assert (await active_call(api, bob, kept_room))["id"] == kept_call
    alive.api = dead.api = api
    assert (await alive.heartbeat()).status == 200
    assert (await dead.heartbeat()).error_code == "unknown_worker"

    async def entry() -> bool:
        messages = (await api.get(f"/history/room/{room}", alice)).body["messages"]
        return any(m["type"] == "call" and m["call"]["id"] == dead_call for m in messages)

    await until(entry, "the ended call's timeline entry")
