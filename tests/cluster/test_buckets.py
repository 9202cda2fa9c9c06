"""The Redis token bucket (fastsock/cluster/limits.py) against a real redis-server, and
Throttles falling back to the node's own limiter when Redis fails.

Refill is tested without waiting: the bucket's last update is moved back on Redis' clock."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from fastsock.cluster import limits as cluster_limits
from fastsock.cluster.limits import SharedBuckets, bucket_key
from fastsock.config import Limits
from fastsock.errors import RateLimited
from fastsock.services.limits import RateLimiter, Throttles

SLOW = 1e-6  # tokens per second: no refill worth counting while a test runs


@pytest.fixture
async def clients(redis_url: str) -> AsyncIterator[list[aioredis.Redis]]:
    """Two connections: what two nodes would hold."""
    pair = [aioredis.Redis.from_url(redis_url) for _ in range(2)]
    yield pair
    for client in pair:
        await client.aclose()


async def rewind(client: aioredis.Redis, kind: str, key: object, seconds: float) -> None:
    """Make the bucket's last update `seconds` older than Redis' clock says now."""
    secs, micros = await client.time()
    at = int(secs) * 1_000_000 + int(micros) - int(seconds * 1_000_000)
    await client.hset(bucket_key(kind, key), "at", at)


async def test_burst_then_refusal_with_the_wait(clients: list[aioredis.Redis]) -> None:
    buckets = SharedBuckets(clients[0])
    takes = [await buckets.retry_after("send", "u1", 2.0, 3, 1) for _ in range(4)]
    assert takes[:3] == [0.0, 0.0, 0.0]
    assert 0 < takes[3] <= 0.5  # one token at 2/s, minus the microseconds gone by
    assert await buckets.retry_after("send", "u2", 2.0, 3, 1) == 0.0  # keys are independent
    assert await buckets.retry_after("typing", "u1", 2.0, 3, 1) == 0.0  # and kinds


async def test_refills_by_the_time_elapsed_on_redis_clock(clients: list[aioredis.Redis]) -> None:
    buckets = SharedBuckets(clients[0])
    for _ in range(3):
        assert await buckets.retry_after("send", "u", 2.0, 3, 1) == 0.0
    assert await buckets.retry_after("send", "u", 2.0, 3, 1) > 0
    await rewind(clients[0], "send", "u", 0.5)  # half a second: one token back
    assert await buckets.retry_after("send", "u", 2.0, 3, 1) == 0.0
    assert await buckets.retry_after("send", "u", 2.0, 3, 1) > 0
    await rewind(clients[0], "send", "u", 3600)  # an hour: full, never more than the burst
    assert [await buckets.retry_after("send", "u", 2.0, 3, 1) for _ in range(4)][3] > 0


async def test_cost_above_the_burst_is_never_granted(clients: list[aioredis.Redis]) -> None:
    buckets = SharedBuckets(clients[0])
    assert await buckets.retry_after("invite", "u", SLOW, 5, 6) == math.inf
    assert await buckets.retry_after("invite", "u", SLOW, 5, 5) == 0.0  # the refusal took nothing


@pytest.mark.parametrize("costs", [[1, 2, 5, 1, 1, 3], [4, 4, 1, 2], [6, 1, 5, 1]])
async def test_same_answers_as_the_local_limiter(
    clients: list[aioredis.Redis], costs: list[int]
) -> None:
    local = RateLimiter(SLOW, 5, clock=lambda: 0.0)
    shared = SharedBuckets(clients[0])
    for cost in costs:
        expected = local.retry_after("u", cost)
        got = await shared.retry_after("invite", "u", SLOW, 5, cost)
        assert got == pytest.approx(expected, rel=1e-3), (costs, cost)


async def test_an_idle_bucket_expires_once_it_would_be_full(
    clients: list[aioredis.Redis],
) -> None:
    buckets = SharedBuckets(clients[0])
    await buckets.retry_after("login", ["203.0.113.7", "alice"], 10 / 60, 10, 1)
    key = bucket_key("login", ["203.0.113.7", "alice"])
    assert 59_000 < await clients[0].pttl(key) <= 60_000  # 10 tokens at 10/min: a minute
    # A bucket that is full again after 20 ms: gone from Redis by then, and full.
    for _ in range(2):
        assert await buckets.retry_after("send", "quick", 100.0, 2, 1) == 0.0
    async with asyncio.timeout(5):
        while await clients[0].exists(bucket_key("send", "quick")):
            await asyncio.sleep(0.01)
    assert [await buckets.retry_after("send", "quick", SLOW, 2, 1) for _ in range(3)][:2] == [
        0.0,
        0.0,
    ]


async def test_two_nodes_share_one_budget(clients: list[aioredis.Redis]) -> None:
    node_a, node_b = SharedBuckets(clients[0]), SharedBuckets(clients[1])
    key = ("198.51.100.1", "bob")  # tuple keys: the same key on every node
    assert await node_a.retry_after("login", key, SLOW, 3, 1) == 0.0
    assert await node_b.retry_after("login", key, SLOW, 3, 1) == 0.0
    assert await node_a.retry_after("login", list(key), SLOW, 3, 1) == 0.0
    assert await node_b.retry_after("login", key, SLOW, 3, 1) > 0
    assert await node_a.retry_after("login", key, SLOW, 3, 1) > 0


def test_keys_cannot_collide() -> None:
    assert bucket_key("login", ("a", "b:c")) != bucket_key("login", ("a:b", "c"))
    assert bucket_key("login", ("a", "b")) != bucket_key("login", "a,b")
    assert bucket_key("send", "u") != bucket_key("sen", "du")


async def test_redis_failure_falls_back_to_the_local_limiter_logged_once(
    clients: list[aioredis.Redis],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "fastsock.cluster")
    refused: list[str] = []
    throttles = Throttles(Limits(send_per_s=SLOW, send_burst=2), refused.append)
    buckets = SharedBuckets(clients[0])
    throttles.share(buckets)
    await throttles.check("send", "u")  # from Redis: one of two taken there

    take = buckets._take

    async def broken(*_args: object) -> object:
        raise RedisConnectionError("Redis went away")

    monkeypatch.setattr(buckets, "_take", broken)
    monkeypatch.setattr(cluster_limits, "RETRY_S", 0.0)  # ask Redis again on every check
    await throttles.check("send", "u")  # the node's own budget of two now
    await throttles.check("send", "u")
    with pytest.raises(RateLimited) as refusal:
        await throttles.check("send", "u")
    assert refusal.value.retry_after > 0 and refused == ["send"]
    outage = [r for r in caplog.records if r.getMessage() == "cluster_limits_local"]
    assert len(outage) == 1  # once per outage, not once per check

    monkeypatch.setattr(buckets, "_take", take)  # Redis is back: its budget has one left
    await throttles.check("send", "u")
    with pytest.raises(RateLimited):
        await throttles.check("send", "u")
    assert [r.getMessage() for r in caplog.records].count("cluster_limits_shared") == 1
