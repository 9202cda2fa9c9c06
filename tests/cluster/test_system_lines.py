"""Room history lines across nodes: a line posted by a change made through one node reaches
the members connected to another, after the change's room event, and the removed member on
another node hears the removal but not its line."""

from __future__ import annotations

from tests.cluster.conftest import Nodes
from tests.handlers.test_system_lines import is_line


async def test_a_line_posted_on_one_node_reaches_members_on_another(nodes: Nodes) -> None:
    apis = [nodes.api(i) for i in range(2)]
    alice, bob, carol = [await apis[0].register() for _ in range(3)]
    room = await apis[0].group(alice, bob)
    other = await apis[0].group(alice, bob)  # for the marker after the removal
    bob_ws, carol_ws = await apis[1].ws(bob), await apis[1].ws(carol)

    r = await apis[0].post(f"/rooms/{room}/members", {"user_ids": [carol.id]}, alice)
    assert r.status == 200, r.body
    for ws in (bob_ws, carol_ws):
        line = (await ws.expect("message.new", is_line("member_added")))["message"]
        assert line["system"] == {
            "event": "member_added",
            "actor_id": alice.id,
            "user_ids": [carol.id],
        }
        assert "room.member_added" in [f["type"] for f in ws.frames]  # came first

    assert (await apis[0].delete(f"/rooms/{room}/members/{bob.id}", alice)).status == 204
    await carol_ws.expect("message.new", is_line("member_removed"))
    await bob_ws.expect("room.member_removed")
    await apis[0].send(alice, other, "marker")
    await bob_ws.expect("message.new", lambda f: f["data"]["message"]["text"] == "marker")
    assert [f for f in bob_ws.frames if f["type"] == "message.new"] == []
