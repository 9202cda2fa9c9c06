"""Cluster mode (FASTSOCK_REDIS_URL): N FastSock nodes on one Redis and one MongoDB behave as
one server. docs/architecture.md, "Several nodes", describes what is shared and how.

- link.py: the bus between nodes and which nodes are alive
- registry.py: every node's sessions and presence, in Redis
- hub.py: the hub of a node, delivering to sessions on every node"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from fastsock.cluster.hub import ClusterHub
from fastsock.metrics import Metrics
from fastsock.services import Services


async def check_redis(redis_url: str) -> None:
    """Start-up stops here, with one line, when Redis does not answer."""
    client = aioredis.Redis.from_url(redis_url, socket_connect_timeout=5, socket_timeout=5)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        raise RuntimeError(f"Redis unreachable at FASTSOCK_REDIS_URL: {exc}") from exc
    finally:
        await client.aclose()


async def start_cluster_hub(metrics: Metrics, redis_url: str) -> ClusterHub:
    hub = ClusterHub(metrics, redis_url)
    try:
        await hub.start()
    except (RedisError, OSError) as exc:
        raise RuntimeError(f"Redis unreachable at FASTSOCK_REDIS_URL: {exc}") from exc
    return hub


def join_cluster(hub: ClusterHub, services: Services) -> None:
    """Connect the services to what the other nodes do."""
    presence = services.presence
    hub.on_offline.append(lambda user_id: presence.announce(user_id, False))
