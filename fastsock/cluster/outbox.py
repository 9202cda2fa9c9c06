"""A node's ordered write queue to Redis (link.py): publishes and its session registry.

Executed in order, in pipelines of up to BATCH writes, one pipeline at a time: a node's
messages reach every other node in the order it sent them, whatever channel they travel on,
and nothing waits for Redis on the delivery path. Bounded by bytes: when Redis takes the
writes slower than they come, the queue is dropped rather than grown until the process runs
out of memory.

A pipeline that fails may have reached Redis in part, or not at all, or later than the next
one (a timed-out pipeline may still run). Whoever owns the queue is told (`lost`, with whether
it held writes of the node's own state queued since its last reset: not publishes, whose loss
their numbers show to the receivers), and `flush` raises `WriteFailed`."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

log = logging.getLogger("fastsock.cluster")

BATCH = 512  # queued writes per pipeline
QUEUE_BYTES = 32 * 1024 * 1024  # queued writes beyond this are dropped
WRITE_BYTES = 64  # what a queued write other than a publish counts for

Op = Callable[[Pipeline], object]


class WriteFailed(RedisError):
    """What was queued may not all have reached Redis (a write failed, or the queue was full):
    the node started again (`Link.reset`), and so does every node that missed some of it."""


@dataclass(slots=True)
class _Flush:
    done: asyncio.Future[None]
    failures: int  # the queue's count of failed writes when it was queued

    def settle(self, failures: int) -> None:
        if self.done.done():
            return
        if failures == self.failures:
            self.done.set_result(None)
        else:
            self.done.set_exception(WriteFailed("some of it may not have reached Redis"))


class Outbox:
    def __init__(self, redis: aioredis.Redis, lost: Callable[[str, bool], None]) -> None:
        self._redis = redis
        # Told (reason, whether what was lost held writes of its own state of this epoch).
        self._lost = lost
        self.epoch = 0  # the owner's: bumped at each of its resets
        # (op, bytes, epoch, or None for a publish): in order, with the flushes waiting.
        self._queue: deque[tuple[Op, int, int | None] | _Flush] = deque()
        self._bytes = 0
        self._failures = 0  # writes that failed so far (flush waiters compare)
        self._failing = False  # the last write failed (logged once)
        self._wake = asyncio.Event()

    def enqueue(self, op: Op, size: int = WRITE_BYTES, *, publish: bool = False) -> None:
        self._queue.append((op, size, None if publish else self.epoch))
        self._bytes += size
        if self._bytes > QUEUE_BYTES:
            self._overflow()
        self._wake.set()

    async def flush(self) -> None:
        """Wait until everything queued so far has reached Redis. WriteFailed if some of it
        may not have."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Flush(done, self._failures))
        self._wake.set()
        await done

    def _overflow(self) -> None:
        log.warning("cluster_queue_full", extra={"fields": {"dropped": len(self._queue)}})
        dropped, self._queue, self._bytes = self._queue, deque(), 0
        self._failures += 1
        for item in dropped:
            if isinstance(item, _Flush):
                item.settle(self._failures)
        # Not from inside the enqueue of whoever filled the queue: right after it.
        asyncio.get_running_loop().call_soon(self._lost, "queue_full", True)

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch: list[Op] = []
                waiters: list[_Flush] = []
                current = False  # it holds writes of the node's own state of this epoch
                while self._queue and len(batch) < BATCH:
                    item = self._queue.popleft()
                    if isinstance(item, _Flush):
                        waiters.append(item)
                        continue
                    op, size, epoch = item
                    batch.append(op)
                    self._bytes -= size
                    current = current or epoch == self.epoch
                if batch and not await self._execute(batch):
                    self._failures += 1
                    self._lost("write_failed", current)
                for waiter in waiters:
                    waiter.settle(self._failures)

    async def _execute(self, batch: list[Op]) -> bool:
        """Run one batch in a pipeline: False if it failed."""
        pipe = self._redis.pipeline(transaction=False)
        for op in batch:
            op(pipe)
        try:
            results = await pipe.execute(raise_on_error=False)
        except (RedisError, OSError) as exc:
            if not self._failing:
                fields = {"dropped": len(batch), "error": repr(exc)}
                log.warning("cluster_write_failed", extra={"fields": fields})
                self._failing = True
            return False
        if self._failing:
            log.info("cluster_write_back")
            self._failing = False
        refused = [r for r in results if isinstance(r, Exception)]
        if refused:  # a command Redis refused (a bug, not a loss): the others did run
            log.error("cluster_write_refused", extra={"fields": {"error": repr(refused[0])}})
        return True
