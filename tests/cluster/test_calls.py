"""Calls across nodes (docs/architecture.md, "Calls"): one node, the call leader, holds every
live call and the others hand it their requests, and the next leader adopts its calls. The
first node started leads; nodes that die or stop are processes of their own, killed with
SIGKILL or stopped with SIGTERM (tests/cluster/processes.py)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from fastsock.cluster.calls import LEASE, LEDGER, CallLeader
from fastsock.store.ids import new_id
from tests.cluster.conftest import Nodes, until
from tests.cluster.processes import NodeProcess
from tests.conftest import SFU_SECRET
from tests.realtime.fake_workers import FakeWorker, joined
from tests.realtime.test_calls import ANSWER, CANDIDATE, OFFER
from tests.support import Api, Socket, User

DEATH_S = 30.0  # bound on waits for a dead node to be noticed (seconds on an idle machine)
StartProcess = Callable[..., Awaitable[NodeProcess]]


async def _dm(api: Api, a: User, b: User) -> str:
    r = await api.post("/rooms/direct", {"user_id": b.id}, a)
    assert r.status in (200, 201), r.body
    return r.body["id"]


async def _online(api: Api, viewer: User, user: User) -> None:
    """Wait until the node behind `api` (the leader, for the busy and unavailable checks)
    counts the user online."""

    async def seen() -> bool:
        return (await api.get(f"/users/{user.id}", viewer)).body["online"] is True

    await until(seen, f"{user.username} online on port {api.port}")


async def _call(caller: Socket, callee: Socket, room: str) -> dict[str, Any]:
    """Invite, ring, accept: the call view once both parties heard it is accepted."""
    created = await caller.request("call.invite", {"room_id": room, "media": "video"})
    assert created["type"] == "call.created", created
    call = created["data"]["call"]
    assert (await callee.expect("call.ringing"))["call"]["id"] == call["id"]
    assert (await callee.request("call.accept", {"call_id": call["id"]}))["type"] == "ack"
    for ws in (caller, callee):
        assert (await ws.expect("call.accepted"))["here"] is True
    return call


async def _leader(cluster: Nodes) -> str:
    holder = await cluster.hub(0).link.redis.get(LEASE)
    assert holder is not None
    return holder.decode()


async def _taken_over(cluster: Nodes, old: str) -> None:
    """Wait until the lease has left `old` for one of `cluster`'s nodes and every one of them
    knows it: their call requests go there (and wait until it has taken over)."""

    async def moved() -> bool:
        holder = await cluster.hub(0).link.redis.get(LEASE)
        if holder is None or holder.decode() == old:
            return False
        routers = [server.ctx.services.calls.router for server in cluster.servers if server.ctx]
        return all(isinstance(r, CallLeader) and r.leader == holder.decode() for r in routers)

    await until(moved, "another node leads the calls", timeout=DEATH_S)


async def _call_entries(api: Api, user: User, room: str) -> list[dict[str, Any]]:
    r = await api.get(f"/history/room/{room}", user)
    assert r.status == 200, r.body
    return [m for m in r.body["messages"] if m["type"] == "call"]


async def _one_entry(api: Api, user: User, room: str, call_id: str) -> dict[str, Any]:
    """The call's timeline entry, once it is posted (in the background); there is one."""

    async def posted() -> bool:
        return bool(await _call_entries(api, user, room))

    await until(posted, "the call's timeline entry")
    entries = await _call_entries(api, user, room)
    assert [e["call"]["id"] for e in entries] == [call_id]
    return entries[0]["call"]


async def test_a_call_between_users_on_two_other_nodes_than_the_leader(nodes: Nodes) -> None:
    alice_api, bob_api = nodes.api(1), nodes.api(2)
    alice, bob = await alice_api.register(), await bob_api.register()
    room = await _dm(alice_api, alice, bob)
    alice_ws, bob_ws = await alice_api.ws(alice), await bob_api.ws(bob)
    bob_tab = await nodes.api(0).ws(bob)  # another device of bob's, on the leader
    await _online(nodes.api(0), alice, bob)

    created = await alice_ws.request("call.invite", {"room_id": room, "media": "video"})
    assert created["type"] == "call.created" and created["data"]["here"] is True, created
    call = created["data"]["call"]
    for ws in (bob_ws, bob_tab):
        assert (await ws.expect("call.ringing"))["call"]["id"] == call["id"]
    assert (await bob_ws.request("call.accept", {"call_id": call["id"]}))["type"] == "ack"
    for ws, here in ((alice_ws, True), (bob_ws, True), (bob_tab, False)):
        accepted = await ws.expect("call.accepted")
        assert accepted["call"]["state"] == "active" and accepted["here"] is here

    # SDP and candidates travel between the two devices in the call, both ways.
    signals = [
        (alice_ws, bob_ws, {"sdp": OFFER}),
        (bob_ws, alice_ws, {"sdp": ANSWER}),
        (alice_ws, bob_ws, {"candidate": CANDIDATE}),
        (bob_ws, alice_ws, {"candidate": None}),
    ]
    for sender, receiver, signal in signals:
        reply = await sender.request("call.signal", {"call_id": call["id"], **signal})
        assert reply["type"] == "ack", reply
        sent_by = alice.id if sender is alice_ws else bob.id
        assert await receiver.expect("call.signal") == {
            "call_id": call["id"],
            "from": sent_by,
            **signal,
        }
    await bob_tab.assert_none("call.signal", quiet=0.3)

    assert (await bob_ws.request("call.hangup", {"call_id": call["id"]}))["type"] == "ack"
    for ws in (alice_ws, bob_ws, bob_tab):
        ended = await ws.expect("call.ended")
        assert ended["reason"] == "hangup" and ended["call"]["outcome"] == "completed"
    for ws in (alice_ws, bob_ws, bob_tab):  # each hears the end once
        await ws.assert_none("call.ended", quiet=0.3)
    stored = await _one_entry(alice_api, alice, room, call["id"])
    assert stored["outcome"] == "completed" and stored["end_reason"] == "hangup"


async def test_the_ring_times_out_once_and_a_tab_opened_on_another_node_rings(
    cluster_db: str, redis_url: str, tmp_path: Path
) -> None:
    cluster = Nodes(cluster_db, redis_url, tmp_path)
    try:
        for _ in range(3):
            await cluster.start(call_ring_s=4.0)
        alice_api, bob_api = cluster.api(1), cluster.api(2)
        alice, bob = await alice_api.register(), await bob_api.register()
        room = await _dm(alice_api, alice, bob)
        alice_ws, bob_ws = await alice_api.ws(alice), await bob_api.ws(bob)
        await _online(cluster.api(0), alice, bob)
        created = await alice_ws.request("call.invite", {"room_id": room, "media": "audio"})
        assert created["type"] == "call.created", created
        call = created["data"]["call"]
        assert (await bob_ws.expect("call.ringing"))["call"]["id"] == call["id"]
        bob_tab = await cluster.api(0).ws(bob)  # opened while it rings, on another node
        assert (await bob_tab.expect("call.ringing"))["call"]["id"] == call["id"]

        for ws in (alice_ws, bob_ws, bob_tab):
            missed = await ws.expect("call.missed", timeout=15)
            assert missed["call"]["id"] == call["id"] and missed["call"]["outcome"] == "missed"
        for ws in (alice_ws, bob_ws, bob_tab):  # the ring timer fired once, cluster-wide
            await ws.assert_none("call.missed", quiet=0.5)
        stored = await _one_entry(alice_api, alice, room, call["id"])
        assert stored["outcome"] == "missed"
    finally:
        await cluster.stop()


async def test_the_calls_of_a_node_that_dies_end_within_seconds(
    nodes: Nodes, node_process: StartProcess
) -> None:
    process = await node_process()  # started after the nodes: node 0 leads
    alice_api, bob_api = nodes.api(1), process.api()
    alice, bob = await alice_api.register(), await alice_api.register()
    room = await _dm(alice_api, alice, bob)
    alice_ws, bob_ws = await alice_api.ws(alice), await bob_api.ws(bob)
    await _online(nodes.api(0), alice, bob)
    call = await _call(alice_ws, bob_ws, room)

    await process.kill()
    ended = await alice_ws.expect("call.ended", timeout=DEATH_S)
    assert ended["call_id"] == call["id"] and ended["reason"] == "connection_lost"
    assert ended["call"]["outcome"] == "completed"
    stored = await _one_entry(alice_api, alice, room, call["id"])
    assert stored["end_reason"] == "connection_lost"
    # Nothing is left of it: alice may call again (bob is offline now).
    reply = await alice_ws.request("call.invite", {"room_id": room, "media": "audio"})
    assert reply["type"] == "call.unavailable", reply


@pytest.mark.parametrize("how", ["kill", "stop"])
async def test_the_next_leader_adopts_the_calls_of_one_that_dies_or_stops(
    cluster_db: str, redis_url: str, tmp_path: Path, node_process: StartProcess, how: str
) -> None:
    """SIGKILL (a crash) or SIGTERM (a rolling deploy) of the leader: an active call and a
    ringing one whose parties are on the other nodes go on, nobody hearing a thing."""
    leader = await node_process(FASTSOCK_CALL_RING_S="120")
    cluster = Nodes(cluster_db, redis_url, tmp_path)
    try:
        await cluster.start()
        await cluster.start()
        apis = (cluster.api(0), cluster.api(1))
        alice, bob, carol, dave = [await apis[i % 2].register() for i in range(4)]
        room, ringing_room = await _dm(apis[0], alice, bob), await _dm(apis[0], carol, dave)
        alice_ws, bob_ws, carol_ws, dave_ws = [
            await apis[i % 2].ws(user) for i, user in enumerate((alice, bob, carol, dave))
        ]
        await _online(leader.api(), alice, bob)
        await _online(leader.api(), carol, dave)
        call = await _call(alice_ws, bob_ws, room)
        created = await carol_ws.request("call.invite", {"room_id": ringing_room, "media": "audio"})
        ringing = created["data"]["call"]
        assert (await dave_ws.expect("call.ringing"))["call"]["id"] == ringing["id"]

        old = await _leader(cluster)
        await (leader.kill() if how == "kill" else leader.stop())
        await _taken_over(cluster, old)

        # The active call goes on: signals reach the other device, both ways.
        for sender, receiver, sdp in ((alice_ws, bob_ws, OFFER), (bob_ws, alice_ws, ANSWER)):
            reply = await sender.request("call.signal", {"call_id": call["id"], "sdp": sdp})
            assert reply["type"] == "ack", reply
            assert (await receiver.expect("call.signal"))["sdp"] == sdp
        # The ringing one can be answered.
        reply = await dave_ws.request("call.accept", {"call_id": ringing["id"]})
        assert reply["type"] == "ack", reply
        for ws in (carol_ws, dave_ws):
            assert (await ws.expect("call.accepted"))["call"]["id"] == ringing["id"]
        # A hangup ends a call once, both told, one timeline entry.
        assert (await bob_ws.request("call.hangup", {"call_id": call["id"]}))["type"] == "ack"
        for ws in (alice_ws, bob_ws):
            ended = await ws.expect("call.ended")
            assert (ended["call_id"], ended["reason"]) == (call["id"], "hangup")
        stored = await _one_entry(apis[0], alice, room, call["id"])
        assert (stored["outcome"], stored["end_reason"]) == ("completed", "hangup")
        for ws in (alice_ws, bob_ws, carol_ws, dave_ws):  # nothing else ended
            await ws.assert_none("call.ended", quiet=0.3)
            await ws.assert_none("call.cancelled", quiet=0)
        assert await _call_entries(apis[0], carol, ringing_room) == []
    finally:
        await cluster.stop()


async def test_a_ringing_call_outlives_its_leader_and_is_missed_once(
    cluster_db: str, redis_url: str, tmp_path: Path, node_process: StartProcess
) -> None:
    leader = await node_process(FASTSOCK_CALL_RING_S="10")  # the deadline is the leader's
    cluster = Nodes(cluster_db, redis_url, tmp_path)
    try:
        await cluster.start()
        await cluster.start()
        alice_api, bob_api = cluster.api(0), cluster.api(1)
        alice, bob = await alice_api.register(), await bob_api.register()
        room = await _dm(alice_api, alice, bob)
        alice_ws, bob_ws = await alice_api.ws(alice), await bob_api.ws(bob)
        await _online(leader.api(), alice, bob)
        created = await alice_ws.request("call.invite", {"room_id": room, "media": "audio"})
        call = created["data"]["call"]
        assert (await bob_ws.expect("call.ringing"))["call"]["id"] == call["id"]

        old = await _leader(cluster)
        await leader.kill()
        for ws in (alice_ws, bob_ws):
            missed = await ws.expect("call.missed", timeout=DEATH_S)
            assert missed["call"]["id"] == call["id"] and missed["call"]["end_reason"] is None
        await _taken_over(cluster, old)
        for ws in (alice_ws, bob_ws):  # the ring timer fired once, and nothing else ended it
            await ws.assert_none("call.missed", quiet=0.5)
            await ws.assert_none("call.cancelled", quiet=0)
        stored = await _one_entry(alice_api, alice, room, call["id"])
        assert stored["outcome"] == "missed"
    finally:
        await cluster.stop()


async def test_after_a_takeover_calls_end_for_devices_lost_with_the_leader_or_away(
    cluster_db: str, redis_url: str, tmp_path: Path, node_process: StartProcess
) -> None:
    """Bob's device was on the leader, which dies: his call ends at once. Dave's socket closes
    while no node leads (his notice is lost): his call ends after the grace period."""
    leader = await node_process()
    cluster = Nodes(cluster_db, redis_url, tmp_path)
    try:
        await cluster.start(call_grace_s=1.0)
        await cluster.start(call_grace_s=1.0)
        alice_api, carol_api = cluster.api(0), cluster.api(1)
        alice, bob = await alice_api.register(), await alice_api.register()
        carol, dave = await carol_api.register(), await carol_api.register()
        room, other_room = await _dm(alice_api, alice, bob), await _dm(carol_api, carol, dave)
        alice_ws, bob_ws = await alice_api.ws(alice), await leader.api().ws(bob)
        carol_ws, dave_ws = await carol_api.ws(carol), await alice_api.ws(dave)
        for user in (bob, dave):
            await _online(leader.api(), alice, user)
        call = await _call(alice_ws, bob_ws, room)
        other = await _call(carol_ws, dave_ws, other_room)

        old = await _leader(cluster)
        await leader.kill()
        dave_ws.close()
        for ws, ended_call in ((alice_ws, call), (carol_ws, other)):
            ended = await ws.expect("call.ended", timeout=DEATH_S)
            assert (ended["call_id"], ended["reason"]) == (ended_call["id"], "connection_lost")
        await _taken_over(cluster, old)
        for ws in (alice_ws, carol_ws):  # once
            await ws.assert_none("call.ended", quiet=0.5)
        for api, user, dm, ended_call in (
            (alice_api, alice, room, call),
            (carol_api, carol, other_room, other),
        ):
            stored = await _one_entry(api, user, dm, ended_call["id"])
            assert (stored["outcome"], stored["end_reason"]) == ("completed", "connection_lost")
    finally:
        await cluster.stop()


async def test_the_leadership_moves_the_old_leader_forgets_and_the_new_one_adopts(
    nodes: Nodes,
) -> None:
    alice_api, bob_api = nodes.api(1), nodes.api(2)
    alice, bob = await alice_api.register(), await bob_api.register()
    room = await _dm(alice_api, alice, bob)
    alice_ws, bob_ws = await alice_api.ws(alice), await bob_api.ws(bob)
    await _online(nodes.api(0), alice, bob)
    call = await _call(alice_ws, bob_ws, room)

    # As if node 0's lease had lapsed (a stall) and node 1 had taken it.
    old = await _leader(nodes)
    await nodes.hub(0).link.redis.set(LEASE, nodes.hub(1).node_id, px=5000)
    await _taken_over(nodes, old)
    reply = await alice_ws.request("call.signal", {"call_id": call["id"], "sdp": OFFER})
    assert reply["type"] == "ack", reply
    assert (await bob_ws.expect("call.signal"))["sdp"] == OFFER
    assert (await alice_ws.request("call.hangup", {"call_id": call["id"]}))["type"] == "ack"
    for ws in (alice_ws, bob_ws):
        ended = await ws.expect("call.ended")
        assert (ended["call_id"], ended["reason"]) == (call["id"], "hangup")
    for ws in (alice_ws, bob_ws):  # once: node 0 forgot the call without a word
        await ws.assert_none("call.ended", quiet=0.5)
    await _one_entry(alice_api, alice, room, call["id"])

    again = await _call(bob_ws, alice_ws, room)  # node 1 leads now; node 2 asks it
    assert (await alice_ws.request("call.hangup", {"call_id": again["id"]}))["type"] == "ack"
    assert (await bob_ws.expect("call.ended"))["call_id"] == again["id"]


async def test_the_next_leader_concludes_ended_calls_and_ends_what_it_cannot_adopt(
    nodes: Nodes,
) -> None:
    """Ledger notes as a leader that stopped may leave them: a call it ended but had not
    stored yet (told again and stored), a ringing call noted before its parties had heard of
    it (ended: `server_lost`), an entry no version wrote (dropped)."""
    alice_api, bob_api = nodes.api(1), nodes.api(2)
    alice, bob = await alice_api.register(), await bob_api.register()
    carol, dave = await alice_api.register(), await bob_api.register()
    room, other_room = await _dm(alice_api, alice, bob), await _dm(alice_api, carol, dave)
    alice_ws, bob_ws = await alice_api.ws(alice), await bob_api.ws(bob)
    carol_ws, dave_ws = await alice_api.ws(carol), await bob_api.ws(dave)
    await _online(nodes.api(0), alice, bob)
    await _online(nodes.api(0), carol, dave)
    call = await _call(alice_ws, bob_ws, room)
    created = await carol_ws.request("call.invite", {"room_id": other_room, "media": "audio"})
    ringing = created["data"]["call"]
    assert (await dave_ws.expect("call.ringing"))["call"]["id"] == ringing["id"]

    redis = nodes.hub(0).link.redis

    async def rewrite(call_id: str, **changes: object) -> None:
        entry = json.loads(await redis.hget(LEDGER, call_id))
        await redis.hset(LEDGER, call_id, json.dumps(entry | changes))

    ended_at = datetime.now(UTC).isoformat()
    await rewrite(
        call["id"], state="ended", outcome="completed", end_reason="hangup", ended_at=ended_at
    )
    await rewrite(ringing["id"], announced=False)
    await redis.hset(LEDGER, "junk", b"not a note")
    old = await _leader(nodes)
    await redis.set(LEASE, nodes.hub(1).node_id, px=5000)  # as in the test above
    await _taken_over(nodes, old)

    for ws in (alice_ws, bob_ws):
        ended = await ws.expect("call.ended")
        assert (ended["call_id"], ended["reason"]) == (call["id"], "hangup")
    stored = await _one_entry(alice_api, alice, room, call["id"])
    assert (stored["outcome"], stored["end_reason"]) == ("completed", "hangup")
    for ws in (carol_ws, dave_ws):
        cancelled = (await ws.expect("call.cancelled"))["call"]
        assert (cancelled["id"], cancelled["end_reason"]) == (ringing["id"], "server_lost")
    for ws in (alice_ws, bob_ws, carol_ws, dave_ws):  # once
        await ws.assert_none("call.ended", quiet=0.3)
        await ws.assert_none("call.cancelled", quiet=0)

    async def ledger_empty() -> bool:  # each note dropped once its call is stored
        return await redis.hlen(LEDGER) == 0

    await until(ledger_empty, "the ledger emptied")


async def test_group_call_admission_and_worker_reports_across_nodes(
    cluster_db: str, redis_url: str, tmp_path: Path
) -> None:
    cluster = Nodes(cluster_db, redis_url, tmp_path)
    try:
        for _ in range(3):
            await cluster.start(sfu_secret=SFU_SECRET, sfu_heartbeat_s=5.0, call_empty_grace_s=30.0)
        apis = [cluster.api(i) for i in range(3)]
        carol, alice, bob = [await apis[i].register() for i in range(3)]
        room = await apis[1].group(alice, bob, carol)
        carol_ws, alice_ws, bob_ws = [
            await apis[i].ws(user) for i, user in enumerate((carol, alice, bob))
        ]
        worker = await FakeWorker(apis[2]).start(beat=False)  # it posts to node 2 only

        sfu = await joined(alice_ws, room, worker)  # through node 1
        call_id = sfu["call_id"]
        for ws in (carol_ws, bob_ws):
            assert (await ws.expect("call.started"))["call"]["id"] == call_id
            present = await ws.expect("call.participant_joined")
            assert (present["user_id"], present["present_ids"]) == (alice.id, [alice.id])
        await joined(bob_ws, room, worker)  # through node 2
        present = await alice_ws.expect(
            "call.participant_joined", lambda f: f["data"]["user_id"] == bob.id
        )
        assert sorted(present["present_ids"]) == sorted([alice.id, bob.id])

        # Bob's client reconnected to node 0 (a new session) and leaves from there.
        bob_elsewhere = await apis[0].ws(bob)
        reply = await bob_elsewhere.request("call.leave", {"call_id": call_id})
        assert reply["type"] == "ack", reply
        for ws in (alice_ws, carol_ws):
            left = await ws.expect("call.participant_left")
            assert (left["user_id"], left["present_ids"]) == (bob.id, [alice.id])
        # The leader queued the evict: it goes out in the reply to the worker's next post,
        # whichever node that reaches.
        r = await worker.heartbeat()
        assert r.status == 200, r.body
        assert worker.evicted == [(call_id, bob.id)]
    finally:
        await cluster.stop()


async def test_errors_from_the_leader_come_back_with_their_code_and_ref(nodes: Nodes) -> None:
    alice_api, bob_api = nodes.api(1), nodes.api(2)
    alice, bob = await alice_api.register(), await bob_api.register()
    room = await _dm(alice_api, alice, bob)
    alice_ws, bob_ws = await alice_api.ws(alice), await bob_api.ws(bob)
    alice_tab = await bob_api.ws(alice)  # alice's other device, on another node
    await _online(nodes.api(0), alice, bob)
    created = await alice_ws.request("call.invite", {"room_id": room, "media": "video"})
    call = created["data"]["call"]

    # The caller cannot accept her own call: the leader, which holds it, says so.
    reply = await alice_tab.request("call.accept", {"call_id": call["id"]})
    assert reply["type"] == "error" and reply["ref"].startswith("call.accept-"), reply
    assert reply["data"]["code"] == "conflict"
    reply = await bob_ws.request("call.accept", {"call_id": new_id()})
    assert (reply["type"], reply["data"]["code"]) == ("error", "not_found"), reply
    reply = await bob_ws.request("call.reject", {"call_id": "nope"})
    assert reply["data"]["code"] == "invalid_request" and reply["data"]["field"] == "call_id"

    # Rate limits come back with their retry_after (5 invites a minute per user).
    carol, dave = await bob_api.register(), await bob_api.register()
    dm = await _dm(bob_api, carol, dave)
    carol_ws = await bob_api.ws(carol)
    for _ in range(5):  # dave is offline: each ends at once
        reply = await carol_ws.request("call.invite", {"room_id": dm, "media": "audio"})
        assert reply["type"] == "call.unavailable", reply
    reply = await carol_ws.request("call.invite", {"room_id": dm, "media": "audio"})
    assert reply["type"] == "error" and reply["data"]["code"] == "rate_limited", reply
    assert reply["data"]["retry_after"] > 0
    assert (await carol_ws.request("ping"))["type"] == "pong"  # the socket stays open
    assert (await alice_tab.request("ping"))["type"] == "pong"
