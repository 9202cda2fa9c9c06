"""The `unread` event across nodes: the node that stores messages counts for every member
(coalesced over its window) and tells each of them once, wherever they are connected."""

from __future__ import annotations

from typing import Any

from tests.cluster.conftest import Nodes
from tests.support import Socket


async def _next_counts(ws: Socket, room: str) -> tuple[Any, Any]:
    event = await ws.expect("unread", lambda f: f["data"]["room_id"] == room)
    return event["unread_count"], event["mention_count"]


async def _counts_until(ws: Socket, room: str, last: tuple[int, int]) -> list[tuple[Any, Any]]:
    """The counts told until `last`: one per flush, however the messages fell into windows."""
    told = [await _next_counts(ws, room)]
    while told[-1] != last:
        told.append(await _next_counts(ws, room))
    return told


async def test_a_message_on_one_node_tells_members_on_the_others_once(nodes: Nodes) -> None:
    apis = [nodes.api(i) for i in range(3)]
    alice, bob, carol = [await apis[0].register() for _ in range(3)]
    room = await apis[0].group(alice, bob, carol)
    bob_tabs = [await apis[1].ws(bob), await apis[2].ws(bob)]
    carol_ws = await apis[2].ws(carol)
    alice_ws = await apis[1].ws(alice)

    for text in (f"@{bob.username} one", "two", "three"):
        await apis[0].send(alice, room, text)
    # One node's bus messages reach each other node in the order it sent them, so a count told
    # twice would show as a repeat before the last one.
    for ws in bob_tabs:
        told = await _counts_until(ws, room, (3, 1))
        assert told == sorted(set(told)) and set(told) <= {(1, 1), (2, 1), (3, 1)}
        assert ws.seqs == sorted(set(ws.seqs))
    told = await _counts_until(carol_ws, room, (3, 0))
    assert told == sorted(set(told)) and set(told) <= {(1, 0), (2, 0), (3, 0)}
    # The sender is not told: her first count is that of bob's answer, sent after hers.
    await apis[0].send(bob, room, "four")
    assert await _next_counts(alice_ws, room) == (1, 0)
