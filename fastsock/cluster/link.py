"""A node's link to Redis: the bus between nodes, and which nodes are alive.

Every node subscribes to the channel all nodes share (events for users, presence, membership
changes) and to its own (events for one of its sessions, call requests and replies). A bus
message is `<sender node> <kind> <number> <header JSON>\\n<payload>`: the payload is an event
already encoded once by the sender, passed on byte for byte.

Everything a node writes to Redis in the background (publishes, its session registry) goes
through one queue, bounded by bytes and executed in order (outbox.py): a node's messages
reach every other node in the order it sent them, whatever channel they travel on, and
nothing waits for Redis on the delivery path.

Losing messages. A write that fails may have reached Redis in part, or not at all, or late
(after the next one). So each message carries its number on its channel (numbering.py), every
heartbeat (itself unnumbered: losing one loses nothing) repeats the sender's last numbers, and
a node that finds a gap, or a number out of order, starts again (`reset`): its clients
reconnect and resync, and nothing is missed unawares. The sender of a failed write starts
again too if the write held some of its own state (its session registry), and `flush` raises
`WriteFailed`.

Starting again (`reset`): the hooks drop whatever rests on the bus (sockets, sessions,
caches), the node takes a new id (whose channel it subscribed to in advance, so it is heard
at once), its first message under it repeats where the old id's numbering ended, and the old
id is handed over for burial. Once the new id is stamped (and, if the node lost the bus, once
it has heard every live node say where its numbering stands), it takes sockets again
(`connected`) and `on_back` runs.

Liveness: each node stamps its id with Redis' clock every HEARTBEAT_S in a sorted set; a node
not stamped for NODE_TIMEOUT_S is dead. Every node looks; the one whose script moves the id
into `buried` (with a lease) cleans up after it, then tells every node (`dead`) and removes
it from `buried`. A cleanup that failed, or whose node died, is tried again by any node once
the lease has run out."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from fastsock.cluster.numbering import ALL as ALL_NUMBERS
from fastsock.cluster.numbering import Heard, Numbers
from fastsock.cluster.outbox import WRITE_BYTES, Op, Outbox
from fastsock.realtime.hub import new_node_id

log = logging.getLogger("fastsock.cluster")

PREFIX = "fastsock:"
ALL = PREFIX + "bus"
NODES = PREFIX + "nodes"
BURIED = PREFIX + "buried"  # dead node -> until when its cleanup is leased (ms, Redis' clock)
HEARTBEAT_S = 1.0
NODE_TIMEOUT_S = 5.0
CLEANUP_LEASE_S = 10.0  # a cleanup not done by then is tried again, by any node
CALM_BEATS = 2  # after Redis failed or stalled a heartbeat, those to go before burying anyone
JOIN_S = 2.0  # a node back on the bus waits this long at most to hear every live node
FORGET_S = 60.0  # former ids of this node, and senders gone quiet, are forgotten after this
RETRY_S = 0.5  # after Redis failed, wait this long before trying again
MAX_CONNECTIONS = 64  # to Redis, per node, the subscription's included
COMMAND_TIMEOUT_S = 5.0

# KEYS: nodes. ARGV: node. -> 1 stamped, 0 the node is no longer in the set (it was buried).
STAMP = """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
local t = redis.call('TIME')
redis.call('ZADD', KEYS[1], t[1] * 1000 + math.floor(t[2] / 1000), ARGV[1])
return 1
"""

# KEYS: nodes, buried. ARGV: timeout ms, lease ms, the caller (its own stamp late: it stalled,
# and its next stamp counts). -> {nodes found dead now, buried nodes whose cleanup's lease ran
# out}: each leased to the caller.
SWEEP = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local lease = now + tonumber(ARGV[2])
local again = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
local dead = {}
for _, node in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))) do
  if node ~= ARGV[3] then table.insert(dead, node) end
end
for _, node in ipairs(dead) do redis.call('ZREM', KEYS[1], node) end
for _, node in ipairs(dead) do redis.call('ZADD', KEYS[2], lease, node) end
for _, node in ipairs(again) do redis.call('ZADD', KEYS[2], lease, node) end
return {dead, again}
"""

# KEYS: nodes, buried. ARGV: node, lease ms (0: any node may clean up after it at once).
RETIRE = """
local t = redis.call('TIME')
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[2]), ARGV[1])
return 1
"""

Handler = Callable[[str, Any, bytes], None]  # (sender node, header, payload)
DeadHandler = Callable[[str], Awaitable[None]]


def node_channel(node_id: str) -> str:
    return f"{PREFIX}node:{node_id}"


def node_of(session_id: str) -> str:
    """Session ids start with their node's id (realtime/hub.py)."""
    return session_id.partition(".")[0]


def frame(node_id: str, kind: str, number: int, header: object, payload: bytes = b"") -> bytes:
    head = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    return b"%s %s %d %s\n%s" % (node_id.encode(), kind.encode(), number, head, payload)


def parse(message: bytes) -> tuple[str, str, int, Any, bytes]:
    head, _, payload = message.partition(b"\n")
    sender, kind, number, header = head.split(b" ", 3)
    return sender.decode(), kind.decode(), int(number), json.loads(header), payload


_ALL = ALL.encode()


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
        self._stamp_script = self.redis.register_script(STAMP)
        self._sweep = self.redis.register_script(SWEEP)
        self._retire = self.redis.register_script(RETIRE)
        self._handlers: dict[str, Handler] = {}
        self.on_node_dead: list[DeadHandler] = []  # run by the node that cleans up (may raise)
        self.on_dead: list[DeadHandler] = []  # run on every node, after the cleanup
        # Run when this node may have missed bus messages or lost writes: whatever rests on
        # them must be dropped. Then `on_back`, once it is on the bus again under a new id.
        self.on_reset: list[Callable[[], None]] = []
        self.on_back: list[Callable[[], None]] = []
        self.connected = False  # on the bus under `node_id`, taking sockets (readiness)
        self.outbox = Outbox(self.redis, self._writes_lost)
        # The subscription: None while lost. The spare id's channel is subscribed in advance.
        self._pubsub: PubSub | None = None
        self._asked: set[bytes] = set()  # channels subscribed to (asked)
        self._confirmed: set[bytes] = set()  # ... and confirmed by Redis
        self._own = node_channel(node_id).encode()
        self._spare = new_node_id()
        self._former: dict[str, float] = {}  # this node's former ids -> left when (monotonic)
        self._subscribed = asyncio.Event()  # the shared channel and `node_id`'s are heard
        self._settled = asyncio.Event()  # every node awaited by a join was heard
        self._joined = asyncio.Event()  # the first join is done (start)
        self._off_bus = False  # the subscription broke, and is not back yet (logged once)
        self._stamped: str | None = None  # the id this node stamps (once its join stamped it)
        self._numbers = Numbers()
        self._heard = Heard()
        self._tasks: list[asyncio.Task[None]] = []
        self._joining: asyncio.Task[None] | None = None
        self._cleaning: set[str] = set()  # dead nodes this node is cleaning up after
        self._followups: set[asyncio.Task[None]] = set()
        self.on("dead", lambda _sender, node, _payload: self.dead(node))
        self.on("hb", self._on_heartbeat)

    def on(self, kind: str, handler: Handler) -> None:
        self._handlers[kind] = handler

    def is_self(self, node_id: str) -> bool:
        """This node's id, or one it had before a reset (its messages may still be coming)."""
        return node_id == self.node_id or node_id in self._former

    async def start(self) -> None:
        await self.redis.ping()  # unreachable: start-up fails here, with the address
        self._join_again()
        for work in (self._read(), self.outbox.run(), self._heartbeat()):
            self._tasks.append(asyncio.create_task(work))
        try:
            await asyncio.wait_for(self._joined.wait(), COMMAND_TIMEOUT_S + JOIN_S)
        except TimeoutError:
            await self.stop()
            raise RedisError("not subscribed to the bus in time") from None

    async def leave(self) -> None:
        """A clean stop: this node buries itself now rather than after its timeout. Should the
        cleanup fail half-way, its id waits in `buried` for another node to finish it."""
        self.connected, self._stamped = False, None  # no longer stamped: not taken as buried
        lease_ms = int(CLEANUP_LEASE_S * 1000)
        await self._retire(keys=[NODES, BURIED], args=[self.node_id, lease_ms])
        await self._clean_up(self.node_id, tell=False)

    async def stop(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await asyncio.wait_for(self.flush(), 2.0)
        tasks = [*self._tasks, *self._followups, *([self._joining] if self._joining else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()
        await self.redis.aclose()

    # --- writing --------------------------------------------------------------------------

    def broadcast(self, kind: str, header: object, payload: bytes = b"") -> None:
        """To every node, this one included."""
        data = frame(self.node_id, kind, self._numbers.broadcast(), header, payload)
        self.outbox.enqueue(lambda p: p.publish(ALL, data), len(data), publish=True)

    def send(self, node_id: str, kind: str, header: object, payload: bytes = b"") -> None:
        data = frame(self.node_id, kind, self._numbers.send(node_id), header, payload)
        channel = node_channel(node_id)
        self.outbox.enqueue(lambda p: p.publish(channel, data), len(data), publish=True)

    def enqueue(self, op: Op, size: int = WRITE_BYTES) -> None:
        self.outbox.enqueue(op, size)

    async def flush(self) -> None:
        """Wait until everything queued so far has reached Redis. WriteFailed if some of it
        may not have: the node has started again by then (`reset`)."""
        await self.outbox.flush()

    @property
    def epoch(self) -> int:
        """Resets so far."""
        return self.outbox.epoch

    def _writes_lost(self, reason: str, own: bool) -> None:
        """Some writes may not have reached Redis (the numbers of the messages among them show
        the others what they missed). If some held this node's own state (`own`: its session
        registry), it starts again, unless it has had no sockets since its last reset."""
        if own and self.connected:
            self.reset(reason)

    # --- reading --------------------------------------------------------------------------

    async def _read(self) -> None:
        while True:
            try:
                pubsub = await self._subscribe()
                message = await pubsub.get_message(timeout=HEARTBEAT_S)
            except (RedisError, OSError):
                await self._lost()
                await asyncio.sleep(RETRY_S)
                continue
            if message is None:
                continue
            if message["type"] == "message":
                self._receive(message["channel"], message["data"])
            elif message["type"] == "subscribe":
                self._confirmed.add(message["channel"])
                self._check_subscribed()

    async def _subscribe(self) -> PubSub:
        """The subscription, made again if it was lost, to the channels wanted now (the shared
        one, this node's, its spare id's). Its connection comes from the same pool."""
        if self._pubsub is None:
            self._pubsub = self.redis.pubsub()
        wanted = {_ALL, self._own, node_channel(self._spare).encode()}
        if missing := wanted - self._asked:
            await self._pubsub.subscribe(*missing)
            self._asked |= missing
        if unwanted := self._asked - wanted:
            await self._pubsub.unsubscribe(*unwanted)
            self._asked -= unwanted
            self._confirmed -= unwanted
        return self._pubsub

    def _check_subscribed(self) -> None:
        if {_ALL, self._own} <= self._confirmed:
            self._subscribed.set()
        else:
            self._subscribed.clear()

    async def _lost(self) -> None:
        """The subscription broke: whatever was published meanwhile is lost to this node."""
        pubsub, self._pubsub = self._pubsub, None
        self._asked.clear()
        self._confirmed.clear()
        self._check_subscribed()
        self._heard.clear()
        if pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()
        if not self._off_bus:  # once an outage, however many tries it takes to end
            log.warning("cluster_bus_lost")
            self._off_bus = True
        if self.connected:
            self.reset("bus_lost")
        else:
            self._join_again()  # learning the others' numbering anew

    def _receive(self, channel: bytes, data: bytes) -> None:
        try:
            sender, kind, number, header, payload = parse(data)
        except ValueError:
            log.warning("cluster_bad_message")
            return
        shared = channel == _ALL
        if number and (shared or channel == self._own) and not self.is_self(sender):
            expected = self._heard.take(sender, channel, number, shared)
            if expected is not None:
                self._gap(sender, expected=expected, got=number)
        handler = self._handlers.get(kind)
        if handler is not None:
            try:
                handler(sender, header, payload)
            except Exception:
                log.exception("cluster_handler_failed", extra={"fields": {"kind": kind}})
        if shared and self._heard.settle(sender):
            self._settled.set()

    def _gap(self, sender: str, **numbers: int) -> None:
        """Some messages of `sender` never came, or came out of order. Not connected, this
        node has had no sockets since its last reset: nothing to do but go on from here."""
        if self.connected:
            self.reset("bus_gap", sender=sender, **numbers)

    def _on_heartbeat(self, sender: str, header: list[Any], _payload: bytes) -> None:
        """Where `sender`'s numbering stands (its current id's and former ones'): anything
        this node has not heard of by now was lost on the way."""
        answer, listing = header
        if self.is_self(sender):
            return
        self._heard.seen(sender)
        if answer:  # a node (re)joining the bus: tell it where this one's numbering stands
            self._repeat()
        for node, numbers in listing.items():
            for channel, number in numbers.items():
                if channel == ALL_NUMBERS:
                    key, shared = _ALL, True
                elif channel == self.node_id:
                    key, shared = self._own, False
                else:
                    continue
                if not self._heard.reported(node, key, number, shared, sender):
                    self._gap(node, reported=number)

    def _repeat(self, answer: bool = False) -> None:
        """Repeat this node's last numbers on the bus (`answer`: every node, tell me yours).
        Numbered 0: not a message whose loss anyone need know of."""
        header = [int(answer), self._numbers.listing(self.node_id)]
        data = frame(self.node_id, "hb", 0, header)
        self.outbox.enqueue(lambda p: p.publish(ALL, data), len(data), publish=True)

    # --- starting again -------------------------------------------------------------------

    def reset(self, reason: str, **fields: object) -> None:
        """This node may have missed bus messages, or lost writes: the hooks drop what rests on
        them (the hub closes the sockets: their clients resync), and the node takes a new id,
        the old one going to be buried (its sessions and presence)."""
        old = self.node_id
        fields = {"node": old, "reason": reason, **fields}
        log.warning("cluster_node_reset", extra={"fields": fields})
        self.connected = False
        for reset in self.on_reset:  # under the old id: what they write concerns it
            try:
                reset()
            except Exception:
                log.exception("cluster_reset_failed")
        self.outbox.epoch += 1
        self.node_id, self._spare = self._spare, new_node_id()
        self._former[old] = time.monotonic()
        self._numbers.renamed(old)
        self._heard.forget_channel(self._own)
        self._own = node_channel(self.node_id).encode()
        self._check_subscribed()
        self._repeat()  # the new id's first message: where the old one's numbering ended
        self.enqueue(lambda p: p.eval(RETIRE, 2, NODES, BURIED, old, "0"))
        self._join_again()

    def _join_again(self) -> None:
        if self._joining is not None:
            self._joining.cancel()
        self._joining = asyncio.ensure_future(self._join())

    async def _join(self) -> None:
        """Onto the bus as `node_id` (at start, after a reset): stamp the id once its channel
        is heard; if the subscription was (re)made, learn first where every live node's
        numbering stands; then take sockets."""
        node = self.node_id
        while True:
            await self._subscribed.wait()
            try:
                await self.redis.zadd(NODES, {node: await self.now_ms()})
                fresh = self._heard.awaiting is None
                live = await self.alive() if fresh else set()
                break
            except (RedisError, OSError):
                await asyncio.sleep(RETRY_S)
        self._stamped = node
        if fresh:
            self._settled.clear()
            if self._heard.await_senders(live - {node, *self._former}, _ALL):
                self._repeat(answer=True)
                with contextlib.suppress(TimeoutError):  # the silent ones are dead or dying
                    await asyncio.wait_for(self._settled.wait(), JOIN_S)
        self.connected = True
        self._numbers.repeat_again()
        if self._off_bus:
            log.info("cluster_bus_back")
            self._off_bus = False
        if self.epoch:
            for back in self.on_back:
                try:
                    back()
                except Exception:
                    log.exception("cluster_back_failed")
        self._joined.set()

    # --- liveness -------------------------------------------------------------------------

    async def now_ms(self) -> int:
        seconds, micros = await self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def alive(self) -> set[str]:
        """The nodes alive now by their stamps (this one's own rule), read afresh."""
        now = await self.now_ms()
        stamped = await self.redis.zrangebyscore(NODES, now - NODE_TIMEOUT_S * 1000, "+inf")
        return {node.decode() for node in stamped}

    async def _stamp(self) -> bool:
        """Stamp this node's id, if its join stamped it first: False if the id is gone from
        the set by now (another node buried it: it stalled, or was cut off)."""
        node = self.node_id
        if self._stamped != node:
            return True
        return bool(await self._stamp_script(keys=[NODES], args=[node])) or node != self.node_id

    async def _heartbeat(self) -> None:
        loop = asyncio.get_running_loop()
        failing = False
        # Heartbeats to go before this node buries anyone: after Redis failed or stalled it,
        # the others may have been held up as well, and need a heartbeat to stamp again.
        calm = 0
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            asked = loop.time()
            try:
                stamped = await self._stamp()
                if loop.time() - asked > HEARTBEAT_S:
                    calm = CALM_BEATS
                dead, again = [], []
                if not calm:
                    lease_ms = int(CLEANUP_LEASE_S * 1000)
                    args: list[int | str] = [int(NODE_TIMEOUT_S * 1000), lease_ms, self.node_id]
                    dead, again = await self._sweep(keys=[NODES, BURIED], args=args)
            except (RedisError, OSError):
                if not failing:  # once an outage
                    log.warning("cluster_heartbeat_failed")
                    failing = True
                calm = CALM_BEATS
                continue
            calm = max(0, calm - 1)
            if failing:
                log.info("cluster_heartbeat_back")
                failing = False
            if not stamped:
                self.reset("buried")
            self._repeat()
            # Not in this loop: however long a cleanup takes, this node keeps stamping.
            for event, nodes in (("cluster_node_dead", dead), ("cluster_cleanup_again", again)):
                for raw in nodes:
                    log.warning(event, extra={"fields": {"node": raw.decode()}})
                    self._follow(self._clean_up(raw.decode()))
            self._heard.beat(int(FORGET_S / HEARTBEAT_S))
            forgotten = time.monotonic() - FORGET_S
            self._former = {n: at for n, at in self._former.items() if at > forgotten}

    async def _clean_up(self, node_id: str, *, tell: bool = True) -> None:
        """Clean up after a dead node (this one leased it), then tell every node (`tell`). If a
        step fails, the node stays in `buried`: any node tries again when the lease runs out."""
        if node_id in self._cleaning:
            return
        self._cleaning.add(node_id)
        try:
            for cleanup in self.on_node_dead:
                await cleanup(node_id)
            if tell:
                self.broadcast("dead", node_id)
                await self.flush()  # every node heard it (or resets), before it is done
        except Exception as exc:
            fields = {"node": node_id, "error": repr(exc)}
            log.warning("cluster_cleanup_failed", extra={"fields": fields})
            return
        finally:
            self._cleaning.discard(node_id)
        self.enqueue(lambda p: p.zrem(BURIED, node_id))

    def dead(self, node_id: str) -> None:
        """Another node buried `node_id` (kind `dead`)."""
        if node_id == self.node_id:
            # The others took this node for dead and dropped its sessions: start again.
            self.reset("buried")
            return
        self._numbers.forget(node_id)
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
