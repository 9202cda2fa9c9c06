"""Live profiles across nodes: `user.updated` reaches every session of everyone who shares a
room with the user, and of the user, wherever each is connected, once; no one else."""

from __future__ import annotations

from tests.cluster.conftest import Nodes
from tests.handlers.test_user_updated import PUBLIC_FIELDS, fence, updates_of


async def test_a_change_reaches_co_members_and_own_sessions_on_every_node_once(
    nodes: Nodes,
) -> None:
    apis = [nodes.api(i) for i in range(3)]
    alice, bob, carol, dave, erin = [await apis[0].register() for _ in range(5)]
    first = await apis[0].group(alice, bob, erin)
    await apis[1].group(alice, bob, carol)  # bob shares two rooms with alice: still told once
    assert (await apis[1].delete(f"/rooms/{first}/members/{erin.id}", alice)).status == 204
    # Alice's tabs on nodes 0 and 1, the others spread out; the change goes through node 2.
    alice_tabs = [await apis[0].ws(alice), await apis[1].ws(alice)]
    bob_tabs = [await apis[1].ws(bob), await apis[2].ws(bob)]
    carol_ws, dave_ws, erin_ws = (
        await apis[0].ws(carol),
        await apis[1].ws(dave),
        await apis[0].ws(erin),
    )

    r = await apis[2].patch("/users/me", {"display_name": "Alice Everywhere"}, alice)
    assert r.status == 200, r.body
    changed = r.body
    assert set(changed) == PUBLIC_FIELDS

    # Fences through node 2 as well: its bus messages reach each node in the order it sent them.
    await fence(apis[2], bob, *bob_tabs)
    await fence(apis[2], carol, carol_ws)
    await fence(apis[2], dave, dave_ws)
    await fence(apis[2], erin, erin_ws)
    await fence(apis[2], alice, *alice_tabs)
    for ws in (*alice_tabs, *bob_tabs, carol_ws):
        assert updates_of(ws, alice) == [changed]
        assert ws.seqs == sorted(set(ws.seqs))
    assert updates_of(dave_ws, alice) == []  # never shared a room with her
    assert updates_of(erin_ws, alice) == []  # no longer does
