"""Events across nodes: each member hears a room's events once, wherever they are connected."""

from __future__ import annotations

import uuid

from tests.cluster.conftest import Nodes


async def test_room_message_reaches_members_on_every_node_once(nodes: Nodes) -> None:
    apis = [nodes.api(i) for i in range(3)]
    alice, bob, carol = [await apis[i].register() for i in range(3)]
    room = await apis[0].group(alice, bob, carol)
    sockets = [await apis[i].ws(user) for i, user in enumerate((alice, bob, carol))]
    cid = uuid.uuid4().hex
    await sockets[1].send("message.send", {"room_id": room, "client_msg_id": cid, "text": "hi"})
    for sock in sockets:
        new = await sock.expect(
            "message.new", lambda f: f["data"]["message"]["client_msg_id"] == cid
        )
        assert new["message"]["text"] == "hi"
    for sock in sockets:
        await sock.drain()
        copies = [
            f
            for f in sock.frames
            if f["type"] == "message.new" and f["data"]["message"]["client_msg_id"] == cid
        ]
        assert copies == []  # exactly once: the one taken by expect
        assert sock.seqs == sorted(set(sock.seqs))  # no seq twice, in order


async def test_every_socket_of_every_member_on_any_node_hears_each_send_once(
    nodes: Nodes,
) -> None:
    """Several sockets per user, on different nodes; sends by REST and by socket, each on
    another node than some of the recipients' sockets."""
    apis = [nodes.api(i) for i in range(3)]
    alice, bob, carol = [await apis[0].register() for _ in range(3)]
    room = await apis[0].group(alice, bob, carol)
    placed = [(alice, 0), (alice, 1), (bob, 1), (bob, 2), (carol, 2), (carol, 0)]
    sockets = [(user, await apis[node].ws(user)) for user, node in placed]
    sent: dict[str, str] = {}  # message id -> its sender
    for sender, node in ((alice, 2), (bob, 0), (carol, 1)):  # by REST
        sent[(await apis[node].send(sender, room, f"rest on node {node}"))["id"]] = sender.id
    own: list[str] = []  # what each socket sent itself: its ack was taken by `request`
    for index, (sender, ws) in enumerate(sockets):
        data = {"room_id": room, "client_msg_id": uuid.uuid4().hex, "text": f"socket {index}"}
        reply = await ws.request("message.send", data)
        assert reply["type"] == "message.ack", reply
        own.append(reply["data"]["message"]["id"])
        sent[own[-1]] = sender.id
    for _, ws in sockets:
        for message_id in sent:
            await ws.expect("message.new", lambda f, m=message_id: f["data"]["message"]["id"] == m)
    for (user, ws), mine in zip(sockets, own, strict=True):
        await ws.drain()
        assert [f for f in ws.frames if f["type"] == "message.new"] == []  # each one once
        # Every socket of a sender hears each of its sends acked once, wherever it was sent.
        acks = [f["data"]["message"]["id"] for f in ws.frames if f["type"] == "message.ack"]
        assert sorted(acks) == sorted(m for m, by in sent.items() if by == user.id and m != mine)
        assert ws.seqs == sorted(set(ws.seqs))


async def test_readiness_includes_redis(nodes: Nodes) -> None:
    api = nodes.api(0)
    assert (await api.get("/readyz")).status == 200
    nodes.servers[0].ctx.hub.link.connected = False  # as when the subscription broke
    r = await api.get("/readyz")
    assert (r.status, r.error_code) == (503, "unavailable")
    assert "Redis" in r.body["error"]["message"]
