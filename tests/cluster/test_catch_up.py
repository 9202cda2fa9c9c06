"""A node that dies with changes stored but not yet on the bus: every client catches up."""

from __future__ import annotations

import asyncio

from tests.cluster.conftest import Nodes


async def test_a_send_stored_by_a_node_that_died_unannounced_reaches_everyone(
    nodes: Nodes,
) -> None:
    api0, api1 = nodes.api(0), nodes.api(1)
    alice, bob = await api0.register(), await api1.register()
    room = await api0.group(alice, bob)
    bob_ws = await api1.ws(bob)
    link = nodes.hub(0).link
    # Node 0 freezes: nothing it writes reaches Redis any more, and it stops stamping its id,
    # as a node does that the kernel stops between storing a message and publishing it.
    frozen = asyncio.Event()

    async def never(_batch: object) -> bool:
        await frozen.wait()
        return True

    async def silent() -> bool:
        return True  # "still stamped": node 0 does not learn it was buried

    link.outbox._execute = never  # type: ignore[method-assign]
    link._stamp = silent  # type: ignore[method-assign]
    sent = await api0.send(alice, room, "stored, never announced")
    # Another node buries node 0 (5 s) and every client is told to catch up.
    told = await bob_ws.expect("resync", timeout=15)
    assert told == {"reason": "node_lost"}
    assert not [f for f in bob_ws.frames if f["type"] == "message.new"]
    r = await api1.get(f"/history/room/{room}?changed_after=0", bob)
    assert sent["id"] in [m["id"] for m in r.body["messages"]]
    frozen.set()
