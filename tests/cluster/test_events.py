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


async def test_readiness_includes_redis(nodes: Nodes) -> None:
    api = nodes.api(0)
    assert (await api.get("/readyz")).status == 200
    nodes.servers[0].ctx.hub.link.connected = False  # as when the subscription broke
    r = await api.get("/readyz")
    assert (r.status, r.error_code) == (503, "unavailable")
    assert "Redis" in r.body["error"]["message"]
