"""Resume across nodes: on the node holding the session it replays exactly what was missed; on
another node it resyncs at once, and the first node drops the session. Nothing is lost or
duplicated either way."""

from __future__ import annotations

from tests.cluster.conftest import Nodes, until
from tests.realtime.test_reconnect import _server_view, _settle
from tests.sync_client import SyncClient


async def _away(nodes: Nodes, node: int, client: SyncClient) -> None:
    """Drop the client's socket; wait until its node has noticed."""
    client.drop()
    session = client.session
    assert session is not None
    await until(lambda: not nodes.hub(node).attached(session), "the node saw the socket go")


async def test_resume_replays_on_the_holding_node_and_resyncs_elsewhere(nodes: Nodes) -> None:
    apis = [nodes.api(i) for i in range(3)]
    alice, bob = await apis[0].register(), await apis[0].register()
    room = await apis[0].group(alice, bob)
    bob_client = SyncClient(apis[0], bob)
    await bob_client.connect()
    first = await apis[1].send(alice, room, "before")
    await _settle([bob_client])

    # Back on node 0, which holds the session: exactly the missed events, in order.
    seq_before = bob_client.last_seq
    await _away(nodes, 0, bob_client)
    for n in range(3):
        await apis[2].send(alice, room, f"missed {n}")
    await apis[1].patch(f"/messages/{first['id']}", {"text": "before, edited"}, alice)
    await bob_client.connect()
    await _settle([bob_client])
    assert bob_client.resumes == [None, "ok"]
    # Every missed event once: 3 new, 1 updated, and the (coalesced) unread counts.
    replayed = bob_client.sequenced[seq_before:]
    assert len(replayed) == bob_client.last_seq - seq_before
    assert [t for t in replayed if t != "unread"] == [*["message.new"] * 3, "message.updated"]
    assert "unread" in replayed
    assert bob_client.view(room) == await _server_view(apis[0], bob_client, room)

    # On node 1, which does not hold it: a resync at once; node 0 lets the session go.
    old_session = bob_client.session
    await _away(nodes, 0, bob_client)
    missed = await apis[2].send(alice, room, "missed while moving")
    await apis[2].delete(f"/messages/{first['id']}", alice)
    bob_client.api = apis[1]
    await bob_client.connect()
    assert bob_client.resumes == [None, "ok", "resync"]
    assert bob_client.session is not None and bob_client.session.startswith(
        nodes.hub(1).node_id + "."
    )
    await until(lambda: not nodes.hub(0).sessions_of(bob.id), "node 0 dropped the old session")
    await apis[0].send(alice, room, "after the move")
    await _settle([bob_client])
    assert old_session not in nodes.hub(1).sessions_of(bob.id)
    assert bob_client.seq_errors == []
    assert bob_client.messages[missed["id"]]["text"] == "missed while moving"
    assert bob_client.messages[first["id"]]["deleted"]
    assert bob_client.view(room) == await _server_view(apis[0], bob_client, room)


async def test_a_resume_elsewhere_closes_the_socket_the_old_node_still_holds(
    nodes: Nodes,
) -> None:
    """The client's old connection is half dead (the old node has not noticed yet): as on one
    node, the session it resumed elsewhere takes over, and the old socket is closed."""
    apis = [nodes.api(0), nodes.api(1)]
    alice, bob = await apis[0].register(), await apis[0].register()
    room = await apis[0].group(alice, bob)
    old = await apis[0].ws(bob)
    assert old.ready is not None
    await apis[0].send(alice, room, "one")
    await old.expect("message.new")
    moved = await apis[1].ws(bob, resume={"session": old.ready["session"], "last_seq": 1})
    assert moved.ready is not None and moved.ready["resume"] == "resync"
    assert await old.close_code() == 4000
    await until(lambda: not nodes.hub(0).sessions_of(bob.id), "node 0 dropped the session")
    await apis[0].send(alice, room, "two")
    assert (await moved.expect("message.new"))["message"]["text"] == "two"
    await until(lambda: nodes.hub(1).is_online(bob.id), "bob still online")
