"""Locks across nodes, in Redis: a room's changes are serialised cluster-wide
(docs/architecture.md, "Change versions and sync").

A node's own writers queue on a local lock first, so at most one of them per key waits in
Redis. The Redis lock is a key holding a random token (SET NX PX), released by
compare-and-delete. Waiters queue in Redis too: the lock goes to the one that asked first, so
a node with a long local queue cannot starve the others. Whoever releases wakes the first
waiter over the bus (`lk`, to its node); waiters also ask again now and then (POLL_S), in
case a wake-up is lost or a lease lapses. A waiter that stops asking (it gave up, or its node
died) loses its place after STALE_MS.

A writer waits WAIT_S at most, on the local lock and in Redis together. Redis failing (an
error, or no answer within CALL_TIMEOUT_S) refuses the writer at once, and every writer for
RETRY_S after it, without asking Redis (outage.py): a node's queue of writers behind a hung
Redis is refused in one go, not one CALL_TIMEOUT_S after another. A refused writer leaves the
Redis queue in the background.

The lease lasts LEASE_MS and is renewed every LEASE_MS / 3 while the block runs, so a slow
write keeps it. What remains: a node stalled longer than the lease (or a Redis that restarts
and forgets the key) lets a second writer in; `room_lock_lost` is logged when the holder
notices."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from redis.exceptions import RedisError

from fastsock.cluster.link import PREFIX, Link
from fastsock.cluster.outage import Outage
from fastsock.errors import Unavailable
from fastsock.services.locks import LocalLocks

log = logging.getLogger("fastsock.cluster")

LEASE_MS = 5000
STALE_MS = 1000  # a waiter that has not asked for this long leaves the queue
WAIT_S = 8.0  # longer than a lease: a dead holder's lease lapses first
RETRY_S = 1.0  # after Redis failed, writers are refused at once for this long
POLL_S = (0.002, 0.05)  # first and longest pause between two asks (doubling), unless woken
CALL_TIMEOUT_S = 2.0  # one Redis call; a hung Redis counts as a failed one
WAKE = "lk"  # bus kind: the lock named in the header is free, and you are first in line

# Tokens are "<node id>.<random>": the releaser wakes the first waiter's node.
# KEYS: lock, queue (token -> when it first asked), seen (token -> when it last asked).
# ARGV: token, lease ms, stale ms. 1: taken; 0: wait (and the caller is queued).
ACQUIRE = """
local token, lease, stale = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now - stale)) do
  redis.call('ZREM', KEYS[2], gone)
  redis.call('ZREM', KEYS[3], gone)
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  local first = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  if first == nil or first == token then
    redis.call('SET', KEYS[1], token, 'PX', lease)
    redis.call('ZREM', KEYS[2], token)
    redis.call('ZREM', KEYS[3], token)
    return 1
  end
end
redis.call('ZADD', KEYS[2], 'NX', now, token)
redis.call('ZADD', KEYS[3], now, token)
redis.call('PEXPIRE', KEYS[2], stale * 2)
redis.call('PEXPIRE', KEYS[3], stale * 2)
return 0
"""

# Leave: out of the queue, and the lock dropped if (and only if) the caller holds it.
# -> the first waiter's token when the lock is free now, else nil.
RELEASE = """
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.call('ZRANGE', KEYS[2], 0, 0)[1]
end
return nil
"""

RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_FAILURES = (RedisError, OSError, TimeoutError)
BUSY = "the room is busy; try again in a moment"
FAILING = "the room cannot be changed now; try again in a moment"


class ClusterLocks:
    """`KeyedLock` (services/locks.py) across every node on `link`'s Redis."""

    def __init__(self, link: Link, namespace: str) -> None:
        self._link = link
        self._prefix = f"{PREFIX}lock:{namespace}:"
        self._local = LocalLocks()
        self._acquire = link.redis.register_script(ACQUIRE)
        self._release = link.redis.register_script(RELEASE)
        self._renew = link.redis.register_script(RENEW)
        self._woken: dict[str, asyncio.Event] = {}  # lock name -> this node's one waiter
        self._leaving: set[asyncio.Task[None]] = set()
        self._outage = Outage(back="room_lock_redis_back")
        link.on(WAKE, self._on_wake)

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Raises 503 `unavailable` (before the block runs) if Redis fails, or failed less
        than RETRY_S ago, or the lock is not had within WAIT_S."""
        name = self._prefix + key
        self._refuse_while_failing()
        deadline = asyncio.get_running_loop().time() + WAIT_S
        async with AsyncExitStack() as held:
            try:
                async with asyncio.timeout_at(deadline):
                    await held.enter_async_context(self._local.hold(key))
            except TimeoutError:
                raise self._busy(name) from None
            keys = [name, name + ":queue", name + ":seen"]
            token = f"{self._link.node_id}.{secrets.token_hex(12)}"
            await self._take(keys, token, deadline)
            renewing = asyncio.create_task(self._keep(keys, token))
            try:
                yield
            finally:
                renewing.cancel()
                await asyncio.shield(self._leave(keys, token))

    async def _take(self, keys: list[str], token: str, deadline: float) -> None:
        self._refuse_while_failing()  # (Redis failed while this writer queued on this node)
        if asyncio.get_running_loop().time() >= deadline:
            raise self._busy(keys[0])  # (its turn on this node came too late: not asked)
        pause, longest = POLL_S
        woken = self._woken[keys[0]] = asyncio.Event()
        bound = asyncio.timeout_at(deadline)
        try:
            async with bound:
                while True:
                    woken.clear()
                    async with asyncio.timeout(CALL_TIMEOUT_S):
                        taken = await self._acquire(keys, [token, LEASE_MS, STALE_MS])
                    self._outage.answered()
                    if taken:
                        return
                    try:
                        async with asyncio.timeout(pause):
                            await woken.wait()
                    except TimeoutError:
                        pause = min(longest, pause * 2)
        except BaseException as exc:
            # Whatever stopped the wait (a failure, the bound, a cancellation), the last ask
            # may have taken the lock unseen: leave, so no one waits for a lease to lapse.
            leaving = self._leave(keys, token)
            refusal = self._refusal(exc, bound.expired(), keys[0])
            if refusal is None:
                await asyncio.shield(leaving)  # (a cancelled waiter is out of the queue)
                raise
            raise refusal from exc  # at once: leaving is bounded, and goes on meanwhile
        finally:
            del self._woken[keys[0]]

    def _refusal(self, exc: BaseException, waited_too_long: bool, name: str) -> Unavailable | None:
        """What the client is told when taking the lock failed (None: not a failure)."""
        if waited_too_long:
            return self._busy(name)
        if isinstance(exc, _FAILURES):
            self._outage.failed("room_lock_unavailable", exc, RETRY_S, key=name)
            return Unavailable(FAILING)
        return None

    def _busy(self, name: str) -> Unavailable:
        log.warning("room_lock_busy", extra={"fields": {"key": name}})
        return Unavailable(BUSY)

    def _refuse_while_failing(self) -> None:
        if self._outage.failing():
            raise Unavailable(FAILING)

    def _on_wake(self, _sender: str, name: str, _payload: bytes) -> None:
        woken = self._woken.get(name)
        if woken is not None:
            woken.set()

    async def _keep(self, keys: list[str], token: str) -> None:
        """Renew the lease while the block runs (cancelled when it ends)."""
        while True:
            await asyncio.sleep(LEASE_MS / 3000)
            try:
                async with asyncio.timeout(CALL_TIMEOUT_S):
                    kept = await self._renew(keys[:1], [token, LEASE_MS])
            except _FAILURES as exc:
                self._outage.failed("room_lock_renew_failed", exc, RETRY_S, key=keys[0])
                continue
            self._outage.answered()
            if not kept:
                log.error("room_lock_lost", extra={"fields": {"key": keys[0]}})
                return

    def _leave(self, keys: list[str], token: str) -> asyncio.Task[None]:
        """Best effort, bounded (CALL_TIMEOUT_S), in a task that finishes even if the caller
        is cancelled meanwhile: a lock left behind lapses with its lease."""
        task = asyncio.create_task(self._release_quietly(keys, token))
        self._leaving.add(task)
        task.add_done_callback(self._leaving.discard)
        return task

    async def _release_quietly(self, keys: list[str], token: str) -> None:
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                first = await self._release(keys, [token])
        except _FAILURES as exc:
            self._outage.failed("room_lock_release_failed", exc, RETRY_S, key=keys[0])
            return
        self._outage.answered()
        if first is not None:
            self._link.send(first.decode().partition(".")[0], WAKE, keys[0])
