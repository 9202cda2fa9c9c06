"""Locks across nodes, in Redis: a room's changes are serialised cluster-wide
(docs/architecture.md, "Change versions and sync").

A node's own writers queue on a local lock first, so at most one of them per key waits in
Redis. The Redis lock is a key holding a random token (SET NX PX), released by
compare-and-delete. Waiters queue in Redis too: the lock goes to the one that asked first, so
a node with a long local queue cannot starve the others. Whoever releases wakes the first
waiter over the bus (`lk`, to its node); waiters also ask again now and then (POLL_S), in
case a wake-up is lost or a lease lapses. A waiter that stops asking (it gave up, or its node
died) loses its place after STALE_MS.

The lease lasts LEASE_MS and is renewed every LEASE_MS / 3 while the block runs, so a slow
write keeps it. What remains: a node stalled longer than the lease (or a Redis that restarts
and forgets the key) lets a second writer in; `room_lock_lost` is logged when the holder
notices."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.exceptions import RedisError

from fastsock.cluster.link import PREFIX, Link
from fastsock.errors import Unavailable
from fastsock.services.locks import LocalLocks

log = logging.getLogger("fastsock.cluster")

LEASE_MS = 5000
STALE_MS = 1000  # a waiter that has not asked for this long leaves the queue
WAIT_S = 8.0  # longer than a lease: a dead holder's lease lapses first
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
        self._failing = False  # Redis failed, and has not answered since: log once per outage
        link.on(WAKE, self._on_wake)

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Raises 503 `unavailable` (before the block runs) if Redis fails or the lock stays
        taken for WAIT_S."""
        async with self._local.hold(key):
            name = self._prefix + key
            keys = [name, name + ":queue", name + ":seen"]
            token = f"{self._link.node_id}.{secrets.token_hex(12)}"
            await self._take(keys, token)
            renewing = asyncio.create_task(self._keep(keys, token))
            try:
                yield
            finally:
                renewing.cancel()
                await self._leave(keys, token)

    async def _take(self, keys: list[str], token: str) -> None:
        pause, longest = POLL_S
        woken = self._woken[keys[0]] = asyncio.Event()
        bound = asyncio.timeout(WAIT_S)
        try:
            async with bound:
                while True:
                    woken.clear()
                    async with asyncio.timeout(CALL_TIMEOUT_S):
                        taken = await self._acquire(keys, [token, LEASE_MS, STALE_MS])
                    self._answered()
                    if taken:
                        return
                    try:
                        async with asyncio.timeout(pause):
                            await woken.wait()
                    except TimeoutError:
                        pause = min(longest, pause * 2)
        except BaseException as exc:
            refusal = self._refusal(exc, bound.expired(), keys[0])
            # Whatever stopped the wait (a failure, the bound, a cancellation), the last ask
            # may have taken the lock unseen: leave, so no one waits for a lease to lapse.
            await self._leave(keys, token)
            if refusal is None:
                raise
            raise refusal from exc
        finally:
            del self._woken[keys[0]]

    def _refusal(self, exc: BaseException, waited_too_long: bool, name: str) -> Unavailable | None:
        """What the client is told when taking the lock failed (None: not a failure)."""
        if waited_too_long:
            log.warning("room_lock_busy", extra={"fields": {"key": name}})
            return Unavailable("the room is busy; try again in a moment")
        if isinstance(exc, _FAILURES):
            self._failed("room_lock_unavailable", name, exc)
            return Unavailable("the room cannot be changed now; try again in a moment")
        return None

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
                self._failed("room_lock_renew_failed", keys[0], exc)
                continue
            self._answered()
            if not kept:
                log.error("room_lock_lost", extra={"fields": {"key": keys[0]}})
                return

    async def _leave(self, keys: list[str], token: str) -> None:
        """Best effort, and finished even if the caller is cancelled meanwhile: a lock left
        behind lapses with its lease."""
        task = asyncio.create_task(self._release_quietly(keys, token))
        self._leaving.add(task)
        task.add_done_callback(self._leaving.discard)
        await asyncio.shield(task)

    async def _release_quietly(self, keys: list[str], token: str) -> None:
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                first = await self._release(keys, [token])
        except _FAILURES as exc:
            self._failed("room_lock_release_failed", keys[0], exc)
            return
        self._answered()
        if first is not None:
            self._link.send(first.decode().partition(".")[0], WAKE, keys[0])

    def _failed(self, event: str, name: str, exc: BaseException) -> None:
        if not self._failing:
            self._failing = True
            log.warning(event, extra={"fields": {"key": name, "error": repr(exc)}})

    def _answered(self) -> None:
        if self._failing:
            self._failing = False
            log.info("room_lock_redis_back")
