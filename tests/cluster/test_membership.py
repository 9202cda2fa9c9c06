"""Room membership across nodes: every node's member cache follows a change made anywhere."""

from __future__ import annotations

import uuid

from tests.cluster.conftest import Nodes


async def test_a_removed_member_is_cut_off_at_once_on_every_node(nodes: Nodes) -> None:
    api0, api1, api2 = nodes.api(0), nodes.api(1), nodes.api(2)
    alice, bob, carol = await api0.register(), await api1.register(), await api2.register()
    room = await api0.group(alice, bob, carol)
    bob_ws, carol_ws = await api1.ws(bob), await api2.ws(carol)
    # Every node has the room's members cached: each served a read or a send of the room.
    for api, user in ((api0, alice), (api1, bob), (api2, carol)):
        assert (await api.get(f"/history/room/{room}", user)).status == 200
    await api1.send(bob, room, "warm")

    r = await api0.delete(f"/rooms/{room}/members/{carol.id}", alice)
    assert r.status == 204, r.body
    # At once, with no wait: another node sends, and carol's own node serves her.
    secret = "after-" + uuid.uuid4().hex
    sent = await api1.send(bob, room, secret)
    r = await api2.get(f"/history/room/{room}", carol)
    assert (r.status, r.error_code) == (403, "not_a_member")
    r = await api1.post(
        f"/rooms/{room}/messages", {"client_msg_id": uuid.uuid4().hex, "text": "x"}, carol
    )
    assert (r.status, r.error_code) == (403, "not_a_member")

    await bob_ws.expect("message.new", lambda f: f["data"]["message"]["id"] == sent["id"])
    removal = await carol_ws.expect("room.member_removed")
    assert removal["user_id"] == carol.id
    await carol_ws.drain(0.5)
    leaked = [f for f in carol_ws.frames if secret in str(f)]
    assert leaked == []


async def test_an_added_member_is_let_in_at_once_on_every_node(nodes: Nodes) -> None:
    api0, api1, api2 = nodes.api(0), nodes.api(1), nodes.api(2)
    alice, bob, dave = await api0.register(), await api1.register(), await api2.register()
    room = await api0.group(alice, bob)
    for api, user in ((api1, bob), (api2, alice)):  # cached on nodes 1 and 2, without dave
        assert (await api.get(f"/history/room/{room}", user)).status == 200
    dave_ws = await api2.ws(dave)
    r = await api0.post(f"/rooms/{room}/members", {"user_ids": [dave.id]}, alice)
    assert r.status == 200, r.body
    assert (await api2.get(f"/history/room/{room}", dave)).status == 200
    sent = await api1.send(bob, room, "welcome")
    await dave_ws.expect("message.new", lambda f: f["data"]["message"]["id"] == sent["id"])
