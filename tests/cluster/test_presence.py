"""Presence across nodes: a user is online while any node holds a socket of theirs, their
contacts hear each change once, and a node that dies stops counting within seconds."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from tests.cluster.conftest import Nodes, until
from tests.cluster.processes import NodeProcess
from tests.support import Api, Socket, User


def _presence(user: User, online: bool) -> Callable[[dict], bool]:
    return lambda f: f["data"] == {"user_id": user.id, "online": online}


async def _closed(ws: Socket) -> None:
    ws.close()
    await ws.close_code()


async def _online_flag(api: Api, user: User, viewer: User) -> bool:
    r = await api.get(f"/users/{user.id}", viewer)
    assert r.status == 200, r.body
    return r.body["online"]


async def _offline(api: Api, user: User, viewer: User) -> bool:
    return not await _online_flag(api, user, viewer)


async def test_online_while_any_node_holds_a_socket(nodes: Nodes) -> None:
    apis = [nodes.api(i) for i in range(3)]
    alice, bob = await apis[0].register(), await apis[0].register()
    await apis[0].group(alice, bob)
    bob_ws = await apis[2].ws(bob)
    on_node0 = await apis[0].ws(alice)
    await bob_ws.expect("presence", _presence(alice, True))
    await until(lambda: _online_flag(apis[2], alice, bob), "alice online, read on node 2")
    on_node1 = await apis[1].ws(alice)

    await _closed(on_node0)
    await until(lambda: not nodes.hub(0).attached(on_node0.ready["session"]), "node 0 detached")
    await nodes.hub(0).wait_tasks(timeout=10)  # its presence work is done
    assert await _online_flag(apis[2], alice, bob)  # node 1 still holds a socket of hers

    await _closed(on_node1)
    await bob_ws.expect("presence", _presence(alice, False), timeout=10)
    await until(lambda: _offline(apis[2], alice, bob), "alice offline, read on node 2")
    await bob_ws.drain()
    changes = [f["data"] for f in bob_ws.frames if f["type"] == "presence"]
    assert changes == []  # each change was announced once: online, then offline


async def test_a_killed_node_stops_counting_within_seconds(
    nodes: Nodes, node_process: Callable[[], Awaitable[NodeProcess]]
) -> None:
    doomed = await node_process()
    api0, api1 = nodes.api(0), nodes.api(1)
    alice, bob, carol = await api0.register(), await api0.register(), await api0.register()
    await api0.group(alice, bob, carol)
    bob_ws = await api0.ws(bob)
    await doomed.api().ws(alice)  # alice only there
    await doomed.api().ws(carol)  # carol there and on node 1
    carol_ws = await api1.ws(carol)
    await bob_ws.expect("presence", _presence(alice, True))
    await bob_ws.expect("presence", _presence(carol, True))
    await doomed.kill()
    await bob_ws.expect("presence", _presence(alice, False), timeout=20)
    await until(lambda: _offline(api1, alice, bob), "alice offline, read on node 1")
    assert await _online_flag(api1, carol, bob)  # node 1 still holds a socket of hers
    await carol_ws.expect("presence", _presence(alice, False))
    await bob_ws.drain()
    assert [f["data"] for f in bob_ws.frames if f["type"] == "presence"] == []  # once each
