"""The session cap counts every node: with SESSIONS_PER_USER sockets open anywhere, one more is
refused on any node; with some detached, the one detached longest makes room, wherever it is."""

from __future__ import annotations

import time

from tornado.websocket import websocket_connect

from fastsock.cluster.link import PREFIX
from fastsock.realtime.hub import SESSIONS_PER_USER
from fastsock.realtime.socket import CLOSE_ABUSE
from tests.cluster.conftest import Nodes, until
from tests.support import Api, Socket, User


async def _refused(api: Api, user: User) -> int | None:
    ws = Socket(await websocket_connect(f"ws://127.0.0.1:{api.port}/ws"))
    await ws.send("auth", {"token": user.access_token})
    return await ws.close_code()


async def _detach(nodes: Nodes, node: int, user: User, ws: Socket) -> str:
    """Close the socket; its session id, once the registry holds it as detached, and the
    clock has passed the millisecond it was stamped with (a later one is told apart)."""
    assert ws.ready is not None
    session = ws.ready["session"]
    ws.close()
    await ws.close_code()
    redis = nodes.hub(node).link.redis
    stamp: list[float] = []

    async def detached() -> bool:
        stamp[:] = [await redis.zscore(f"{PREFIX}sess:{user.id}", session) or 0]
        return stamp[0] > 0

    await until(detached, "the registry saw it detach")
    await until(lambda: time.time() * 1000 > stamp[0] + 1, "a millisecond passed")
    return session


async def test_the_cap_counts_sockets_on_every_node(nodes: Nodes) -> None:
    apis = [nodes.api(i) for i in range(3)]
    alice = await apis[0].register()
    sockets = [await apis[i % 3].ws(alice) for i in range(SESSIONS_PER_USER)]  # 4 per node
    for api in apis:
        assert await _refused(api, alice) == CLOSE_ABUSE

    older = await _detach(nodes, 1, alice, sockets[1])
    newer = await _detach(nodes, 2, alice, sockets[2])
    await apis[0].ws(alice)  # makes room by evicting the one detached longest, on node 1
    await until(lambda: older not in nodes.hub(1).sessions_of(alice.id), "node 1 evicted it")
    assert newer in nodes.hub(2).sessions_of(alice.id)

    back = await apis[1].ws(alice, resume={"session": older, "last_seq": 0})
    assert back.ready is not None and back.ready["resume"] == "resync"  # it was evicted
    await until(lambda: newer not in nodes.hub(2).sessions_of(alice.id), "node 2 evicted it")
    for api in apis:  # every one attached again: the cap holds
        assert await _refused(api, alice) == CLOSE_ABUSE
