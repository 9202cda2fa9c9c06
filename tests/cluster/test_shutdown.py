"""A node that stops cleanly takes its sessions and presence out of the cluster at once."""

from __future__ import annotations

from tests.cluster.conftest import Nodes


async def test_a_stopped_node_takes_its_users_offline(nodes: Nodes) -> None:
    api0, api1 = nodes.api(0), nodes.api(1)
    alice, bob = await api0.register(), await api1.register()
    await api0.group(alice, bob)
    bob_socket = await api1.ws(bob)
    await api0.ws(alice)
    await bob_socket.expect(
        "presence", lambda f: f["data"] == {"user_id": alice.id, "online": True}
    )
    server = nodes.servers.pop(0)
    await server.stop()
    offline = {"user_id": alice.id, "online": False}
    await bob_socket.expect("presence", lambda f: f["data"] == offline, timeout=10)
    r = await api1.get(f"/users/{alice.id}", bob)
    assert r.body["online"] is False
