"""Receipts and reactions across nodes: a delivery confirmed on one node reaches the sender on
another (and nobody else); reads and reactions reach the members on every node, once."""

from __future__ import annotations

from tests.cluster.conftest import Nodes
from tests.support import Socket


async def _ack(ws: Socket, type_: str, data: dict) -> dict:
    reply = await ws.request(type_, data)
    assert reply["type"] == "ack", reply
    return reply["data"]


async def _none_left(type_: str, *sockets: Socket) -> None:
    for ws in sockets:
        await ws.drain()
        assert [f for f in ws.frames if f["type"] == type_] == [], type_


async def test_receipts_and_reactions_reach_members_on_other_nodes_once(nodes: Nodes) -> None:
    apis = [nodes.api(i) for i in range(3)]
    alice, bob, carol = [await apis[0].register() for _ in range(3)]
    room = await apis[0].group(alice, bob, carol)
    alice_ws, bob_ws, carol_ws = [await apis[i].ws(u) for i, u in enumerate((alice, bob, carol))]
    message = await apis[0].send(alice, room, "hello")
    for ws in (bob_ws, carol_ws):
        await ws.expect("message.new")

    # Delivered: bob confirms on node 1; alice, the sender, hears it on node 0, carol does not.
    assert await _ack(bob_ws, "message.delivered", {"message_ids": [message["id"]]}) == {
        "message_ids": [message["id"]]
    }
    delivered = await alice_ws.expect("message.delivered")
    assert (delivered["message_id"], delivered["user_id"]) == (message["id"], bob.id)

    # Read: carol reads on node 2; everyone in the room hears it.
    await _ack(carol_ws, "message.read", {"room_id": room, "message_id": message["id"]})
    for ws in (alice_ws, bob_ws, carol_ws):
        read = await ws.expect("message.read")
        assert (read["user_id"], read["message_id"]) == (carol.id, message["id"])

    # Reactions: bob adds on node 1, carol adds and removes on node 2.
    await _ack(bob_ws, "reaction.add", {"message_id": message["id"], "emoji": "👍"})
    await _ack(carol_ws, "reaction.add", {"message_id": message["id"], "emoji": "👍"})
    await _ack(carol_ws, "reaction.remove", {"message_id": message["id"], "emoji": "👍"})
    for ws in (alice_ws, bob_ws, carol_ws):
        seen = [await ws.expect("reaction.updated") for _ in range(3)]
        seen.sort(key=lambda r: r["version"])  # sent from two nodes: may arrive in any order
        assert [r["reactions"] for r in seen] == [
            {"👍": [bob.id]},
            {"👍": [bob.id, carol.id]},
            {"👍": [bob.id]},
        ]

    await _none_left("message.delivered", alice_ws, bob_ws, carol_ws)
    await _none_left("message.read", alice_ws, bob_ws, carol_ws)
    await _none_left("reaction.updated", alice_ws, bob_ws, carol_ws)
