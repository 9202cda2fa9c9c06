"""Locks across nodes (fastsock/cluster/locks.py) against a real redis-server: two Links
(with their own connections and bus subscriptions) stand for two nodes. The tests of a Redis
that stops answering stall one of their own (CLIENT PAUSE), never the session's."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from fastsock.cluster import locks as cluster_locks
from fastsock.cluster.link import PREFIX, Link
from fastsock.cluster.locks import ClusterLocks
from fastsock.errors import Unavailable
from tests.cluster.conftest import until
from tests.redis_server import RedisServer

LOCK = f"{PREFIX}lock:room:r1"
QUEUE = LOCK + ":queue"
STALL_MS = 15_000  # a Redis that stops answering: far longer than any refusal below takes


@pytest.fixture
async def links(redis_url: str) -> AsyncIterator[list[Link]]:
    pair = [Link(redis_url, node) for node in ("na", "nb")]
    for link in pair:
        await link.start()
    yield pair
    for link in pair:
        await link.stop()


@pytest.fixture
def redis(links: list[Link]) -> aioredis.Redis:
    """For looking at the keys."""
    return links[0].redis


async def queued(client: aioredis.Redis) -> bool:
    return bool(await client.zcard(QUEUE))


async def empty(client: aioredis.Redis) -> bool:
    return not await queued(client)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, to stall: the session's one stays untouched."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


async def stall(server: RedisServer) -> None:
    """Every client's commands wait for STALL_MS from now (the server, and the test, can still
    be stopped meanwhile)."""
    control = aioredis.from_url(server.url)
    await control.execute_command("CLIENT", "PAUSE", STALL_MS, "ALL")
    await control.aclose()


async def still_stalled(server: RedisServer) -> bool:
    probe = aioredis.from_url(server.url)
    try:
        async with asyncio.timeout(0.5):
            await probe.ping()
    except TimeoutError:
        return True
    finally:
        await probe.aclose()
    return False


async def writers(locks: ClusterLocks, count: int) -> tuple[list[BaseException | None], int]:
    """`count` writers of one room at once on one node: how each ended, and how many ran."""
    ran = 0

    async def write() -> None:
        nonlocal ran
        async with locks.hold("r1"):
            ran += 1

    ended = await asyncio.gather(*(write() for _ in range(count)), return_exceptions=True)
    return ended, ran


class Holder:
    """A block holding `key` on `locks` until told to leave."""

    def __init__(self, locks: ClusterLocks, key: str = "r1") -> None:
        self.entered = asyncio.Event()
        self.leave = asyncio.Event()
        self.task = asyncio.create_task(self._run(locks, key))

    async def _run(self, locks: ClusterLocks, key: str) -> None:
        async with locks.hold(key):
            self.entered.set()
            await self.leave.wait()


async def test_two_nodes_exclude_each_other(links: list[Link], redis: aioredis.Redis) -> None:
    node_a, node_b = ClusterLocks(links[0], "room"), ClusterLocks(links[1], "room")
    first = Holder(node_a)
    await first.entered.wait()
    second = Holder(node_b)
    await until(lambda: queued(redis), "node B waiting in Redis")
    assert not second.entered.is_set()
    first.leave.set()
    await second.entered.wait()
    second.leave.set()
    await asyncio.gather(first.task, second.task)
    assert not await redis.exists(LOCK, QUEUE)  # nothing left behind


async def test_the_first_node_to_ask_goes_first(
    links: list[Link], redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node with writers queued locally cannot starve another that asked before them, even
    one that only notices the lock is free at its next ask."""
    monkeypatch.setattr(cluster_locks, "POLL_S", (0.05, 0.05))
    node_a, node_b = ClusterLocks(links[0], "room"), ClusterLocks(links[1], "room")
    links[1].on(cluster_locks.WAKE, lambda *_: None)  # node B is never woken
    a1 = Holder(node_a)
    await a1.entered.wait()
    a2 = Holder(node_a)  # queued on node A's own lock
    b = Holder(node_b)
    await until(lambda: queued(redis), "a waiter queued in Redis")
    a1.leave.set()  # a2 asks at once, but b asked first
    await asyncio.wait(
        [asyncio.create_task(h.entered.wait()) for h in (a2, b)],
        timeout=5,
        return_when=asyncio.FIRST_COMPLETED,
    )
    assert b.entered.is_set() and not a2.entered.is_set()
    b.leave.set()
    await a2.entered.wait()
    a2.leave.set()
    await asyncio.gather(a1.task, a2.task, b.task)


async def test_the_releaser_wakes_the_next_node(
    links: list[Link], redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock changes nodes at once, not at the waiter's next ask."""
    monkeypatch.setattr(cluster_locks, "POLL_S", (60.0, 60.0))  # only a wake-up is in time
    node_a, node_b = ClusterLocks(links[0], "room"), ClusterLocks(links[1], "room")
    first = Holder(node_a)
    await first.entered.wait()
    second = Holder(node_b)
    await until(lambda: queued(redis), "a waiter queued in Redis")
    first.leave.set()
    async with asyncio.timeout(5):
        await second.entered.wait()
    second.leave.set()
    await asyncio.gather(first.task, second.task)


async def test_the_lease_is_renewed_while_the_block_runs(
    links: list[Link], redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cluster_locks, "LEASE_MS", 1500)
    monkeypatch.setattr(cluster_locks, "WAIT_S", 30.0)
    node_a, node_b = ClusterLocks(links[0], "room"), ClusterLocks(links[1], "room")
    renewed = 0
    renew = node_a._renew

    async def counting(*args: object) -> object:
        nonlocal renewed
        kept = await renew(*args)  # type: ignore[arg-type]
        renewed += bool(kept)
        return kept

    monkeypatch.setattr(node_a, "_renew", counting)
    slow = Holder(node_a)
    await slow.entered.wait()
    other = Holder(node_b)
    # Three renewals, LEASE_MS / 3 apart: the block has outlived one lease.
    async with asyncio.timeout(20):
        while renewed < 3 and not other.entered.is_set():
            await asyncio.sleep(0.05)
    assert not other.entered.is_set()
    assert await redis.exists(LOCK)
    slow.leave.set()
    await other.entered.wait()
    other.leave.set()
    await asyncio.gather(slow.task, other.task)


async def test_waiting_is_bounded(
    links: list[Link], redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cluster_locks, "WAIT_S", 0.2)
    node_a, node_b = ClusterLocks(links[0], "room"), ClusterLocks(links[1], "room")
    holder = Holder(node_a)
    await holder.entered.wait()
    ran = False
    with pytest.raises(Unavailable):
        async with node_b.hold("r1"):
            ran = True
    assert not ran
    await until(lambda: empty(redis), "the refused waiter out of the queue (in the background)")
    holder.leave.set()
    await holder.task


async def test_redis_failure_refuses_before_the_block_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "fastsock.cluster")
    dead = Link("redis://127.0.0.1:1/0", "nc")  # nothing listens there
    locks = ClusterLocks(dead, "room")
    ran = False
    for _ in range(3):
        with pytest.raises(Unavailable):
            async with locks.hold("r1"):
                ran = True
    assert not ran
    events = [r.getMessage() for r in caplog.records if r.name == "fastsock.cluster"]
    assert events == ["room_lock_unavailable"]  # once per outage, not per change
    await dead.redis.aclose()


async def test_cancelled_waiter_leaves_the_queue(links: list[Link], redis: aioredis.Redis) -> None:
    node_a, node_b = ClusterLocks(links[0], "room"), ClusterLocks(links[1], "room")
    holder = Holder(node_a)
    await holder.entered.wait()
    waiter = Holder(node_b)
    await until(lambda: queued(redis), "a waiter queued in Redis")
    waiter.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter.task
    assert not await redis.zcard(QUEUE)  # left before the cancellation went on
    holder.leave.set()
    await holder.task
    # The next one gets the lock at once: no one left in front of it.
    again = Holder(node_b)
    await again.entered.wait()
    again.leave.set()
    await again.task


async def test_cancelled_holder_releases(links: list[Link], redis: aioredis.Redis) -> None:
    node_a, node_b = ClusterLocks(links[0], "room"), ClusterLocks(links[1], "room")
    holder = Holder(node_a)
    await holder.entered.wait()
    holder.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await holder.task
    assert not await redis.exists(LOCK)  # released before the cancellation went on
    other = Holder(node_b)
    await other.entered.wait()
    other.leave.set()
    await other.task


async def test_a_stalled_redis_refuses_every_local_writer_while_it_stalls(
    own_redis: RedisServer,
) -> None:
    """The first writer finds Redis not answering (CALL_TIMEOUT_S); the writers queued behind
    it on this node are refused at once, not each after a Redis call of its own."""
    link = Link(own_redis.url, "na")  # not started: the lock needs commands only
    locks = ClusterLocks(link, "room")
    await stall(own_redis)
    ended, ran = await writers(locks, 5)
    assert all(isinstance(e, Unavailable) for e in ended), ended
    assert ran == 0
    assert await still_stalled(own_redis)  # every one refused while Redis still stalls
    own_redis.stop()  # the background releases fail now, and end
    await until(lambda: not locks._leaving, "the refused writers' releases ended")
    await link.redis.aclose()


async def test_one_deadline_covers_the_wait_on_the_node_and_in_redis(
    own_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each Redis call of the writers of one node ends in a timeout (nothing refuses them at
    once here): a writer's turn on the node comes out of its WAIT_S, so the last of twenty is
    refused within WAIT_S too, not after the others' Redis calls one after another (twenty
    CALL_TIMEOUT_S are longer than the stall)."""
    monkeypatch.setattr(cluster_locks, "RETRY_S", 0.0)  # ask a failing Redis every time
    monkeypatch.setattr(cluster_locks, "CALL_TIMEOUT_S", 1.0)
    monkeypatch.setattr(cluster_locks, "WAIT_S", 1.5)
    link = Link(own_redis.url, "na")
    locks = ClusterLocks(link, "room")
    await stall(own_redis)
    ended, ran = await writers(locks, 20)
    assert all(isinstance(e, Unavailable) for e in ended), ended
    assert ran == 0
    assert await still_stalled(own_redis)  # the last refused too while Redis still stalls
    own_redis.stop()
    await until(lambda: not locks._leaving, "the refused writers' releases ended")
    await link.redis.aclose()


async def test_a_refusal_does_not_wait_for_leaving_the_queue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Leaving the Redis queue after a failure goes on in the background (bounded)."""
    link = Link("redis://127.0.0.1:1/0", "nd")  # nothing listens there
    locks = ClusterLocks(link, "room")
    go_on, left = asyncio.Event(), asyncio.Event()

    async def slow_release(*_args: object) -> object:
        try:
            await go_on.wait()  # a Redis that takes its time (up to CALL_TIMEOUT_S)
        finally:
            left.set()
        return None

    monkeypatch.setattr(locks, "_release", slow_release)
    with pytest.raises(Unavailable):
        async with locks.hold("r1"):
            pass
    assert not left.is_set()  # refused before the release was over
    go_on.set()
    await until(left.is_set, "the release done in the background")
    await link.redis.aclose()


async def test_writers_are_refused_at_once_while_redis_fails_then_served_again(
    links: list[Link], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "fastsock.cluster")
    locks = ClusterLocks(links[0], "room")
    acquire, release, asked = locks._acquire, locks._release, 0

    async def broken(*_args: object) -> object:
        nonlocal asked
        asked += 1
        raise RedisConnectionError("Redis went away")

    monkeypatch.setattr(locks, "_acquire", broken)
    monkeypatch.setattr(locks, "_release", broken)
    for _ in range(3):
        with pytest.raises(Unavailable):
            async with locks.hold("r1"):
                pass
    assert asked == 1  # the others were refused without asking (for RETRY_S)
    await until(lambda: not locks._leaving, "the refused writer's release tried")
    monkeypatch.setattr(locks, "_acquire", acquire)  # Redis is back
    monkeypatch.setattr(locks, "_release", release)
    await until(lambda: not locks._outage.failing(), "RETRY_S over")
    async with locks.hold("r1"):
        pass
    events = [r.getMessage() for r in caplog.records if r.name == "fastsock.cluster"]
    assert events == ["room_lock_unavailable", "room_lock_redis_back"]  # once per outage
