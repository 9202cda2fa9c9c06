"""A node's link to Redis: the bus between nodes, and which nodes are alive.

Every node subscribes to two channels: one all nodes share (events for users, presence,
membership changes) and its own (events for one of its sessions, calls requests and
replies). A bus message is `<sender node> <kind> <header JSON>\\n<payload>`: the payload is an
event already encoded once by the sender, passed on byte for byte.

Everything a node writes to Redis in the background (publishes, its session registry) goes
through one queue, executed in order in pipelines: a node's messages reach every other node
in the order it sent them, whatever channel they travel on, and nothing waits for Redis on
the delivery path.

Liveness: each node stamps its id with Redis' clock every HEARTBEAT_S in a sorted set; a node
not stamped for NODE_TIMEOUT_S is dead. Every node looks, exactly one (the one whose ZREM
removes it) cleans up after it, then tells every node (`dead`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

log = logging.getLogger("fastsock.cluster")

PREFIX = "fastsock:"
ALL = PREFIX + "bus"
NODES = PREFIX + "nodes"
HEARTBEAT_S = 1.0
NODE_TIMEOUT_S = 5.0
RETRY_S = 0.5  # after Redis failed, wait this long before trying again
BATCH = 512  # queued writes per pipeline
MAX_CONNECTIONS = 64  # to Redis, per node (the subscription has its own)
COMMAND_TIMEOUT_S = 5.0

Handler = Callable[[str, Any, bytes], None]  # (sender node, header, payload)
DeadHandler = Callable[[str], Awaitable[None]]
Op = Callable[[Pipeline], object]


def node_channel(node_id: str) -> str:
    return f"{PREFIX}node:{node_id}"


def node_of(session_id: str) -> str:
    """Session ids start with their node's id (realtime/hub.py)."""
    return session_id.partition(".")[0]


def frame(node_id: str, kind: str, header: object, payload: bytes = b"") -> bytes:
    head = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    return b"%s %s %s\n%s" % (node_id.encode(), kind.encode(), head, payload)


def parse(message: bytes) -> tuple[str, str, Any, bytes]:
    head, _, payload = message.partition(b"\n")
    sender, kind, header = head.split(b" ", 2)
    return sender.decode(), kind.decode(), json.loads(header), payload


class Link:
    def __init__(self, url: str, node_id: str) -> None:
        self.node_id = node_id
        # Bounded: a burst of limit checks and locks waits for a connection rather than
        # opening one each; a Redis that stops answering fails a command within seconds.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            timeout=COMMAND_TIMEOUT_S,
            socket_connect_timeout=COMMAND_TIMEOUT_S,
            socket_timeout=COMMAND_TIMEOUT_S,
        )
        self.redis = aioredis.Redis(connection_pool=pool)
        self._pubsub = self.redis.pubsub()
        self._handlers: dict[str, Handler] = {}
        self.on_node_dead: list[DeadHandler] = []  # run by the node that cleans up
        self.on_dead: list[DeadHandler] = []  # run on every node, after the cleanup
        # Run when this node may have missed bus messages (its subscription broke, or the
        # others took it for dead): whatever it derived from them must be dropped.
        self.on_reset: list[Callable[[], None]] = []
        self._queue: deque[Op | asyncio.Future[None]] = deque()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.live_nodes: set[str] = {node_id}
        self.connected = False  # subscribed to the bus now (readiness)
        self._stamped_as: str | None = None  # the id this node last stamped
        self._followups: set[asyncio.Task[None]] = set()
        self.on("dead", lambda _sender, node, _payload: self.dead(node))

    def on(self, kind: str, handler: Handler) -> None:
        self._handlers[kind] = handler

    async def start(self) -> None:
        await self.redis.ping()  # unreachable: start-up fails here, with the address
        await self._stamp()
        await self._pubsub.subscribe(ALL, node_channel(self.node_id))
        self.connected = True
        for work in (self._read(), self._write(), self._heartbeat()):
            self._tasks.append(asyncio.create_task(work))

    async def stop(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await asyncio.wait_for(self.flush(), 2.0)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(RedisError, OSError):
            await self.redis.zrem(NODES, self.node_id)  # the others need not wait for its timeout
        with contextlib.suppress(RedisError, OSError):
            await self._pubsub.aclose()
        await self.redis.aclose()

    # --- writing --------------------------------------------------------------------------

    def broadcast(self, kind: str, header: object, payload: bytes = b"") -> None:
        """To every node, this one included."""
        data = frame(self.node_id, kind, header, payload)
        self.enqueue(lambda p: p.publish(ALL, data))

    def send(self, node_id: str, kind: str, header: object, payload: bytes = b"") -> None:
        data = frame(self.node_id, kind, header, payload)
        self.enqueue(lambda p: p.publish(node_channel(node_id), data))

    def enqueue(self, op: Op) -> None:
        self._queue.append(op)
        self._wake.set()

    async def flush(self) -> None:
        """Wait until everything queued so far has reached Redis."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(done)
        self._wake.set()
        await done

    async def _write(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch: list[Op] = []
                waiters: list[asyncio.Future[None]] = []
                while self._queue and len(batch) < BATCH:
                    item = self._queue.popleft()
                    if isinstance(item, asyncio.Future):
                        waiters.append(item)
                    else:
                        batch.append(item)
                await self._execute(batch)
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)

    async def _execute(self, batch: list[Op]) -> None:
        if not batch:
            return
        pipe = self.redis.pipeline(transaction=False)
        for op in batch:
            op(pipe)
        try:
            await pipe.execute()
        except (RedisError, OSError):
            # What was lost may have been events for other nodes: they notice the outage on
            # their own subscriptions and reset; this node's reader does the same.
            log.warning("cluster_write_failed", extra={"fields": {"dropped": len(batch)}})

    # --- reading --------------------------------------------------------------------------

    async def _read(self) -> None:
        subscribed: str | None = node_channel(self.node_id)  # None: lost, to subscribe again
        while True:
            try:
                if subscribed is None:
                    await self._subscribe_again()
                    subscribed = node_channel(self.node_id)
                elif subscribed != node_channel(self.node_id):  # a reset renamed this node
                    await self._pubsub.unsubscribe(subscribed)
                    subscribed = node_channel(self.node_id)
                    await self._pubsub.subscribe(subscribed)
                message = await self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=HEARTBEAT_S
                )
            except (RedisError, OSError):
                if self.connected:  # once an outage, however many tries it takes to end
                    log.warning("cluster_bus_lost")
                    self.connected = False
                    self.reset()
                subscribed = None
                await asyncio.sleep(RETRY_S)
                continue
            if message is None:
                continue
            try:
                sender, kind, header, payload = parse(message["data"])
            except ValueError:
                log.warning("cluster_bad_message")
                continue
            handler = self._handlers.get(kind)
            if handler is None:
                continue
            try:
                handler(sender, header, payload)
            except Exception:
                log.exception("cluster_handler_failed", extra={"fields": {"kind": kind}})

    async def _subscribe_again(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._pubsub.aclose()
        self._pubsub = self.redis.pubsub()
        await self._pubsub.subscribe(ALL, node_channel(self.node_id))
        self.connected = True
        log.info("cluster_bus_back")

    def reset(self) -> None:
        """This node may have missed bus messages: the handlers drop what rests on them and
        give the node a new id (realtime/hub.py), so the others bury the old one."""
        for reset in self.on_reset:
            try:
                reset()
            except Exception:
                log.exception("cluster_reset_failed")

    # --- liveness -------------------------------------------------------------------------

    async def now_ms(self) -> int:
        seconds, micros = await self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def _stamp(self) -> None:
        node_id = self.node_id
        added = await self.redis.zadd(NODES, {node_id: await self.now_ms()})
        if added and self._stamped_as == node_id and node_id == self.node_id:
            # Our entry was gone: another node buried this one (we stalled, or were cut off)
            # and may have told it while we could not hear. Start again, as on `dead`.
            log.warning("cluster_node_was_buried", extra={"fields": {"node": node_id}})
            self.reset()
        self._stamped_as = self.node_id

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            try:
                await self._stamp()
                await self._bury()
            except (RedisError, OSError):
                log.warning("cluster_heartbeat_failed")

    async def _bury(self) -> None:
        """Find the nodes that stopped stamping; clean up after those this node claims."""
        now = await self.now_ms()
        stamps = await self.redis.zrange(NODES, 0, -1, withscores=True)
        live: set[str] = set()
        for raw, stamp in stamps:
            node = raw.decode()
            if stamp >= now - NODE_TIMEOUT_S * 1000:
                live.add(node)
            elif node == self.node_id:
                continue  # our own stamp is late (this process stalled): the next one counts
            elif await self.redis.zrem(NODES, node):  # one node wins the claim
                log.warning("cluster_node_dead", extra={"fields": {"node": node}})
                # Not in this loop: however long the cleanup takes, this node keeps stamping.
                self._follow(self._clean_up(node))
        self.live_nodes = live | {self.node_id}

    async def _clean_up(self, node_id: str) -> None:
        try:
            for cleanup in self.on_node_dead:
                await cleanup(node_id)
        finally:
            self.broadcast("dead", node_id)

    def dead(self, node_id: str) -> None:
        """Another node buried `node_id` (kind `dead`)."""
        if node_id == self.node_id:
            # The others took this node for dead and dropped its sessions: start again.
            self.reset()
            return
        self.live_nodes.discard(node_id)
        for handler in self.on_dead:
            self._follow(handler(node_id))

    def _follow(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._followups.add(task)
        task.add_done_callback(self._followed)

    def _followed(self, task: asyncio.Task[None]) -> None:
        self._followups.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("cluster_dead_node_handler_failed", exc_info=task.exception())
