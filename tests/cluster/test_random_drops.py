"""The random-drop test of tests/realtime/test_reconnect.py, across nodes: three clients on
different nodes, sockets dropped at random and reconnected to a random node (a resume there
replays if that node holds the session, resyncs if not); at the end every client has every
change exactly once, as the server has it."""

from __future__ import annotations

import asyncio
import random

from tests.cluster.conftest import Nodes
from tests.realtime.test_reconnect import _random_action, _server_view, _settle
from tests.support import Api
from tests.sync_client import SyncClient


async def test_three_clients_dropped_at_random_across_nodes_converge(nodes: Nodes) -> None:
    rng = random.Random(20261130)
    apis = [nodes.api(i) for i in range(3)]
    users = [await apis[0].register() for _ in range(3)]
    room = await apis[0].group(users[0], *users[1:])
    clients = [SyncClient(apis[i], user) for i, user in enumerate(users)]
    for c in clients:
        await c.connect()
    expected: dict[int, list[str | None]] = {id(c): [None] for c in clients}  # resume outcomes
    sent: set[str] = set()

    async def move(c: SyncClient) -> None:
        """Drop the client's socket; it reconnects to a random node."""
        index = rng.randrange(3)
        assert c.session is not None
        holds = c.session.startswith(nodes.hub(index).node_id + ".")
        expected[id(c)].append("ok" if holds else "resync")
        c.api = apis[index]
        await c.reconnect()

    for step in range(300):
        c = rng.choice(clients)
        sent.add(await c.send_text(room, f"message {step}"))
        roll = rng.random()
        if roll < 0.06:
            await move(c)  # dropped right after sending: between send and ack
        elif roll < 0.12:
            await move(rng.choice(clients))
        await _random_action(rng, rng.choice(clients), room)
        if rng.random() < 0.3:
            await asyncio.sleep(0.005)
    await _settle(clients)

    for c in clients:
        assert c.resumes == expected[id(c)]
        assert c.seq_errors == []
    assert {o for c in clients for o in c.resumes} == {None, "ok", "resync"}  # both kinds ran
    server_view = await _server_view(apis[0], clients[0], room)
    # The run did exercise every kind of change.
    assert sum(1 for *_, deleted, _ in server_view if deleted) > 5
    assert sum(1 for *_, reactions in server_view if reactions) > 5
    assert sum(1 for _, text, *_ in server_view if text.startswith("edited")) > 5
    assert len(server_view) == 300 and len({i for i, *_ in server_view}) == 300
    assert {cid for c in clients for cid in c.accepted} == sent  # every send was acked
    pointers = await _read_pointers(apis[2], clients[2], room)
    for c in clients:
        assert c.view(room) == server_view, f"{c.user.username} diverged"
        assert {k: v for k, v in c.read_pointers.items() if k[0] == room} == pointers


async def _read_pointers(api: Api, client: SyncClient, room: str) -> dict[tuple[str, str], str]:
    detail = (await api.get(f"/rooms/{room}", client.user)).body
    return {
        (room, m["user_id"]): m["last_read_message_id"]
        for m in detail["members"]
        if m["last_read_message_id"]
    }
