"""kill -9 of a node: its users go offline for their contacts within seconds, and its clients,
reconnecting to another node with `resume`, are told to resync there and lose nothing: not the
events sent while they were away, nor the send that was in flight when the node died."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from tests.cluster.conftest import Nodes
from tests.cluster.processes import NodeProcess
from tests.realtime.test_reconnect import _server_view, _settle
from tests.sync_client import SyncClient


async def test_clients_of_a_killed_node_resync_elsewhere_and_lose_nothing(
    nodes: Nodes, node_process: Callable[[], Awaitable[NodeProcess]]
) -> None:
    doomed = await node_process()
    apis = [nodes.api(i) for i in range(3)]
    alice, bob, carol = [await apis[0].register() for _ in range(3)]
    room = await apis[0].group(alice, bob, carol)
    carol_ws = await apis[2].ws(carol)
    alice_client, bob_client = SyncClient(doomed.api(), alice), SyncClient(apis[0], bob)
    for client in (alice_client, bob_client):
        await client.connect()
    await carol_ws.expect("presence", lambda f: f["data"] == {"user_id": alice.id, "online": True})
    sent = {await alice_client.send_text(room, f"alice {n}") for n in range(3)}
    sent |= {await bob_client.send_text(room, f"bob {n}") for n in range(3)}
    await _settle([alice_client, bob_client])
    bobs = next(m for m in bob_client.messages.values() if m["sender_id"] == bob.id)
    await alice_client.request("reaction.add", {"message_id": bobs["id"], "emoji": "👍"})
    await _settle([alice_client, bob_client])

    sent.add(await alice_client.send_text(room, "in flight when the node died"))
    await doomed.kill()
    offline = {"user_id": alice.id, "online": False}
    await carol_ws.expect("presence", lambda f: f["data"] == offline, timeout=20)
    # While alice is away: new messages, an edit, a reaction.
    sent |= {await bob_client.send_text(room, f"bob while alice is away {n}") for n in range(3)}
    await _settle([bob_client])
    await bob_client.request("message.edit", {"message_id": bobs["id"], "text": "edited"})
    await bob_client.request("reaction.add", {"message_id": bobs["id"], "emoji": "🎉"})
    await _settle([bob_client])

    alice_client.api = apis[1]
    await alice_client.reconnect()
    assert alice_client.resumes == [None, "resync"]  # node 1 does not know her session
    await carol_ws.expect("presence", lambda f: f["data"] == {"user_id": alice.id, "online": True})
    await _settle([alice_client, bob_client])
    server_view = await _server_view(apis[1], alice_client, room)
    assert len(server_view) == len(sent) == 10  # the send in flight is stored once
    assert alice_client.accepted | bob_client.accepted == sent
    for client in (alice_client, bob_client):
        assert client.seq_errors == []
        assert client.view(room) == server_view
    changed = alice_client.messages[bobs["id"]]  # what changed while she was away too
    assert (changed["text"], changed["reactions"]) == ("edited", {"👍": [alice.id], "🎉": [bob.id]})
    await carol_ws.drain()
    about_alice = [
        f for f in carol_ws.frames if f["type"] == "presence" and f["data"]["user_id"] == alice.id
    ]
    assert about_alice == []  # each change once
