"""A node that may have missed bus messages resets: its clients are closed with 1012, and
reconnect and resync. That happens when Redis goes (on every node: once it is back, after
however long, the cluster works as one again) and when the others took the node for dead.
Until it is on the bus again, a node refuses new sockets."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from tornado.websocket import websocket_connect

from fastsock.cluster import link as link_module
from fastsock.cluster.hub import CLOSE_RESET
from tests.cluster.conftest import Nodes, until
from tests.redis_server import RedisServer
from tests.support import Socket


async def _resumed(api_ws: Socket) -> dict:
    assert api_ws.ready is not None
    return {"session": api_ws.ready["session"], "last_seq": api_ws.seqs[-1] if api_ws.seqs else 0}


async def test_nodes_reset_when_redis_goes_and_work_as_one_when_it_is_back(
    cluster_db: str, private_redis: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    nodes = Nodes(cluster_db, private_redis.url, tmp_path)
    try:
        for _ in range(2):
            await nodes.start()
        api0, api1 = nodes.api(0), nodes.api(1)
        alice, bob = await api0.register(), await api0.register()
        room = await api0.group(alice, bob)
        alice_ws, bob_ws = await api0.ws(alice), await api1.ws(bob)
        await api0.send(alice, room, "before")
        await bob_ws.expect("message.new")

        private_redis.stop()
        assert await alice_ws.close_code() == CLOSE_RESET
        assert await bob_ws.close_code() == CLOSE_RESET
        # Down for several of the nodes' attempts to subscribe again.
        await asyncio.sleep(4 * link_module.RETRY_S)
        assert (await api0.get("/readyz")).status == 503
        private_redis.start(private_redis.port)

        await until(lambda: all(nodes.hub(i).link.connected for i in range(2)), "bus back")
        alice_back = await api0.ws(alice, resume=await _resumed(alice_ws))
        bob_back = await api1.ws(bob, resume=await _resumed(bob_ws))
        for ws in (alice_back, bob_back):
            assert ws.ready is not None and ws.ready["resume"] == "resync"
        await api0.send(alice, room, "after")
        assert (await bob_back.expect("message.new"))["message"]["text"] == "after"
        await until(lambda: _online(nodes, 0, bob.id), "node 0 sees bob online")
        assert (await api0.get("/readyz")).status == 200
        # Each node said once that it lost Redis, however many of its tries failed.
        for event in ("cluster_bus_lost", "cluster_heartbeat_failed"):
            assert [r.getMessage() for r in caplog.records].count(event) == 2, event
    finally:
        await nodes.stop()


async def test_a_removal_made_while_redis_was_away_holds_on_every_node_once_it_is_back(
    cluster_db: str, private_redis: RedisServer, tmp_path: Path
) -> None:
    """A node's member cache, refilled from the database during the outage, misses the
    removals made meanwhile on other nodes (their news never came): it goes once the node
    is back on the bus. (Removals through the API take the room's cluster lock, so they wait
    for Redis: the removal here is the store write and the news of it, as a removal caught
    by the outage between the two would leave it.)"""
    nodes = Nodes(cluster_db, private_redis.url, tmp_path)
    try:
        for _ in range(2):
            await nodes.start()
        api0, api1 = nodes.api(0), nodes.api(1)
        alice, bob = await api0.register(), await api0.register()
        room = await api0.group(alice, bob)
        private_redis.stop()
        await until(lambda: not any(nodes.hub(i).link.connected for i in range(2)), "bus lost")
        assert (await api1.get(f"/history/room/{room}", bob)).status == 200  # cached on node 1
        ctx0 = nodes.servers[0].ctx
        assert ctx0 is not None
        rooms0 = ctx0.services.rooms
        async with rooms0.changing_members(room, [], [bob.id]):  # its news goes nowhere
            assert await rooms0.store.memberships.remove(room, bob.id)
        private_redis.start(private_redis.port)
        await until(lambda: all(nodes.hub(i).link.connected for i in range(2)), "bus back")
        assert (await api1.get(f"/history/room/{room}", bob)).status == 403
        message = {"client_msg_id": uuid.uuid4().hex, "text": "still here?"}
        assert (await api1.post(f"/rooms/{room}/messages", message, bob)).status == 403
    finally:
        await nodes.stop()


def _online(nodes: Nodes, node: int, user_id: str) -> bool:
    return nodes.hub(node).is_online(user_id)


async def test_a_node_taken_for_dead_resets_and_mirrors_presence_again(nodes: Nodes) -> None:
    api0, api1 = nodes.api(0), nodes.api(1)
    alice, carol = await api0.register(), await api0.register()
    await api0.group(alice, carol)
    alice_ws = await api0.ws(alice)
    carol_ws = await api1.ws(carol)  # online on node 1, and she stays so
    await until(lambda: _online(nodes, 0, carol.id), "node 0 sees carol online")
    old_id = nodes.hub(0).node_id
    nodes.hub(1).link.broadcast("dead", old_id)  # as a node that buried it would
    assert await alice_ws.close_code() == CLOSE_RESET
    assert nodes.hub(0).node_id != old_id
    await until(lambda: _online(nodes, 0, carol.id), "node 0 mirrors presence again")
    r = await api0.get(f"/users/{carol.id}", alice)
    assert r.status == 200 and r.body["online"] is True
    await carol_ws.send("ping", ref="alive")
    assert (await carol_ws.expect("pong"))["__ref"] == "alive"


async def test_a_node_off_the_bus_refuses_new_sockets(nodes: Nodes) -> None:
    api0 = nodes.api(0)
    alice = await api0.register()
    link = nodes.hub(0).link
    link.connected = False  # as between losing the bus and subscribing again
    try:
        ws = Socket(await websocket_connect(f"ws://127.0.0.1:{api0.port}/ws"))
        await ws.send("auth", {"token": alice.access_token})
        assert await ws.close_code() == 1011  # the client retries later
    finally:
        link.connected = True
    assert (await api0.ws(alice)).ready is not None
