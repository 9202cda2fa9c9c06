"""Cluster mode (FASTSOCK_REDIS_URL): N FastSock nodes on one Redis and one MongoDB behave as
one server. docs/architecture.md, "Several nodes", describes what is shared and how.

- link.py: the bus between nodes and which nodes are alive (outbox.py: its ordered writes,
  numbering.py: the numbers that show a node what it missed)
- registry.py: every node's sessions and presence, in Redis
- hub.py: the hub of a node, delivering to sessions on every node
- calls.py, rpc.py: the call leader, which holds the live calls, and requests to it
- limits.py: rate limits, one budget across the nodes
- locks.py: locks across the nodes (a room's changes)
- outage.py: Redis failing, as the limits, locks and the call lease see it (logged once)"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from fastsock.cluster.calls import CallLeader
from fastsock.cluster.hub import ClusterHub
from fastsock.cluster.limits import SharedBuckets
from fastsock.cluster.locks import ClusterLocks
from fastsock.metrics import Metrics
from fastsock.services import Services
from fastsock.services.typing import Typing


@contextlib.contextmanager
def _reaching_redis() -> Iterator[None]:
    """Start-up stops with one line when Redis does not answer."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise RuntimeError(f"Redis unreachable at FASTSOCK_REDIS_URL: {exc}") from exc


async def check_redis(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url, socket_connect_timeout=5, socket_timeout=5)
    try:
        with _reaching_redis():
            await client.ping()
    finally:
        await client.aclose()


async def start_cluster_hub(metrics: Metrics, redis_url: str) -> ClusterHub:
    hub = ClusterHub(metrics, redis_url)
    with _reaching_redis():
        await hub.start()
    return hub


def join_cluster(hub: ClusterHub, services: Services) -> None:
    """Connect the services to what the other nodes do."""
    presence = services.presence
    hub.on_offline.append(lambda user_id: presence.announce(user_id, False))
    # A login ended on another node: refused here at once, not once `confirmed` runs out.
    hub.on_login_closed.append(lambda _user_id, family: services.accounts.revoked.add(family))
    _share_typing(hub, services.typing)
    services.rooms.throttles.share(SharedBuckets(hub.link.redis))
    services.rooms.change_lock = ClusterLocks(hub.link, "room")
    # Room members: every node's cache forgets a room whose members changed anywhere, and the
    # whole cache when the node may have missed such news (hub.py, "Starting again").
    rooms = services.rooms
    rooms.on_members_changed.append(hub.members_changed)
    hub.on_members_changed.append(
        lambda room_id, _added, _removed: rooms.members.invalidate(room_id)
    )
    hub.bus_caches.append(rooms.members.clear)
    hub.link.on_dead.append(lambda _node: _catch_up(hub))


async def _catch_up(hub: ClusterHub) -> None:
    """A node died: changes it had stored but not yet published on the bus (a send, an edit,
    a receipt) will never be announced. Every client refetches what changed, as after a
    resync, so nothing stored stays unseen until a reload."""
    hub.tell_everyone("resync", {"reason": "node_lost"})


async def join_calls(hub: ClusterHub, services: Services) -> None:
    """Calls: one node leads them, and every node hands it their requests (calls.py)."""
    await CallLeader(hub, services.calls).start()


def _share_typing(hub: ClusterHub, typing: Typing) -> None:
    """Typing indicators end on any node (services/typing.py, "Cluster mode")."""
    hub.watchers["typing"] = typing.seen_elsewhere
    typing.ask_stop = lambda node, room_id, user_id: hub.link.send(
        node, "ts", {"r": room_id, "u": user_id}
    )
    hub.link.on("ts", lambda _sender, h, _payload: hub.spawn(typing.stop_here(h["u"], h["r"])))
    hub.link.on_node_dead.append(lambda node: typing.holder_gone(node, relay=True))
    hub.link.on_dead.append(lambda node: typing.holder_gone(node, relay=False))
    hub.bus_caches.append(typing.forget_elsewhere)
