"""Calls in cluster mode: one node, the call leader, holds every live call (docs/architecture.md,
"Calls"); every node takes call requests and hands them to it.

- Election: a lease in Redis (`calls:leader`, LEASE_S), taken by whichever node finds it free
  and renewed by its holder every heartbeat; each node learns the holder at the same time. A
  leader that cannot renew in time stops leading on its own (`_expired`) before the lease can
  pass to another node, so two nodes never lead at once. A leader that stalled past that
  moment notices before it acts: requests, notices and its calls' timers check the time
  first (`_still_leading`, `Ledger.leads`).
- Requests (`Calls.handle`: 1:1 and group call requests, the SFU workers' reports, a member's
  removal) travel to the leader over the bus (rpc.py); the errors it raises come back. Device
  notices (a socket of a call's device closed, resumed, or a new tab opened) are sent one way.
  With no leader known, a request waits REQUEST_TIMEOUT_S at most, then gets `unavailable`.
- Taking over: the new leader adopts the 1:1 calls of the ledger (the previous leader's): they
  go on as they stood, their parties told nothing (DirectCalls.adopt: timers re-armed, devices
  that went away meanwhile get their grace period, those of dead nodes end their calls). It
  takes device notices while it adopts (requests wait until it is done), then reconciles the
  group calls as a start-up does and runs the workers' sweep.
- Stopping to lead (the lease lost, the bus lost): the node forgets its calls without a word;
  the next leader adopts them from the ledger. A leader that shuts down ends the calls of its
  own devices and leaves the others to the next leader, giving the lease up once its ledger
  notes are in Redis.
- A node that dies: the leader ends at once the 1:1 calls of devices on it (their sessions can
  never resume: a client that reconnects elsewhere gets a new session). Group-call participants
  connected to it stay in their calls: their media goes to the SFU worker, which reports who is
  there. A node that shuts down asks the leader to end its devices' calls (reason `shutdown`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, cast

from redis.exceptions import RedisError

from fastsock.cluster.hub import ClusterHub
from fastsock.cluster.link import HEARTBEAT_S, PREFIX, Link, node_of
from fastsock.cluster.outage import Outage
from fastsock.cluster.rpc import Elsewhere, Rpc
from fastsock.errors import ApiError, Unavailable
from fastsock.services.call import Call
from fastsock.services.calls import Calls
from fastsock.services.events import Origin

log = logging.getLogger("fastsock.cluster")

LEASE = PREFIX + "calls:leader"
LEDGER = PREFIX + "calls:direct"  # live 1:1 call id -> its entry (`_entry`)
LEASE_S = 5.0
# A leader stops leading this long before its lease could expire unrenewed.
LEASE_MARGIN_S = 1.0
REQUEST_TIMEOUT_S = 8.0  # for a request: finding the leader and its answer
SERVICE = "calls"
NOTICE, READY = "cn", "ld"  # bus kinds: a device notice; a new leader has taken over
NODE_CLOSED = "node_closed"  # a request to the leader from a node that shuts down
NO_LEADER = "calls are moving to another server; try again in a moment"
CLOSING = "the server is shutting down; try again in a moment"

# KEYS: the lease. ARGV: this node, lease ms. Take the lease if free, extend it if ours.
# -> its holder.
TAKE_OR_RENEW = """
local holder = redis.call('GET', KEYS[1])
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
if holder == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return holder
"""
# KEYS: the lease. ARGV: this node. Give the lease up if it is ours.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Ledger:
    """The live 1:1 calls, in Redis (services/call_ledger.py), written through the node's
    ordered queue: a note lands before the events that follow it. Only while this node leads:
    the calls it forgot are the next leader's to note."""

    def __init__(self, link: Link, leads: Callable[[], bool]) -> None:
        self.link = link
        self.leads = leads

    def keep(self, call: Call) -> None:
        if self.leads():
            entry = _entry(call)
            self.link.enqueue(lambda p: p.hset(LEDGER, call.id, entry))

    def drop(self, call: Call) -> None:
        if self.leads():
            self.link.enqueue(lambda p: p.hdel(LEDGER, call.id))

    def elsewhere(self, device: str) -> bool:
        return node_of(device) != self.link.node_id

    async def calls(self) -> list[Call]:
        calls = []
        # redis-py types a command `Awaitable[T] | T`, one signature for both of its clients.
        ledger = await cast(Awaitable[dict[bytes, bytes]], self.link.redis.hgetall(LEDGER))
        for call_id, raw in ledger.items():
            try:
                calls.append(_call(raw))
            except (ValueError, KeyError, TypeError):  # not ours to read (another version?)
                log.warning(
                    "call_ledger_entry_unreadable", extra={"fields": {"id": call_id.decode()}}
                )
                await cast(Awaitable[int], self.link.redis.hdel(LEDGER, call_id.decode()))
        return calls


class CallLeader:
    """This node's part in the call leadership: the lease, the requests it sends to the leader,
    and while it leads, the requests it handles (services.calls.Router)."""

    def __init__(self, hub: ClusterHub, calls: Calls) -> None:
        self.link = hub.link
        self.calls = calls
        self.rpc = Rpc(self.link)
        self.ledger = Ledger(self.link, self._leads)
        self.leader: str | None = None  # the lease's holder, as last seen
        self._term: str | None = None  # this node's id while it holds the lease
        self._ready = False  # leading, and taken over
        self._until = 0.0  # loop time: this node leads until then, unless it renews
        self._expiry: asyncio.TimerHandle | None = None
        self._changed = asyncio.Event()  # set (and replaced) when the above change
        self._closing = False
        self._tasks: dict[str, asyncio.Task[None]] = {}  # "lease", "takeover", "sweep"
        self._lease_outage = Outage(back="call_lease_redis_back")  # logged once per outage
        self._take_or_renew = self.link.redis.register_script(TAKE_OR_RENEW)
        self.rpc.serve(SERVICE, self._serve)
        self.link.on(NOTICE, self._on_notice)
        self.link.on(READY, self._on_ready)
        self.link.on_dead.append(self._node_dead)
        hub.on_reset.append(self._reset)
        calls.router = self
        calls.direct.ledger = self.ledger

    async def start(self) -> None:
        """The first look at the lease now: the first node to start leads at once."""
        await self._tick()
        self._tasks["lease"] = asyncio.create_task(self._keep_lease())

    # --- the router (services.calls.Router) ------------------------------------------------

    async def request(self, name: str, args: list[Any]) -> Any:
        if self._closing:
            raise Unavailable(CLOSING)
        return await self._ask(name, args)

    def notify(self, name: str, args: list[Any]) -> None:
        """Lost when there is no leader: the next one checks the devices of the calls it
        adopts."""
        if self._closing or self.leader is None:
            return
        if self._still_leading():
            self.calls.notice(name, args)
        else:
            self.link.send(self.leader, NOTICE, {"n": name, "a": args})

    async def close(self) -> None:
        """Shutdown, after `Calls.close`: a leader has ended its calls and hands the lease on;
        another node has the leader end the calls of its devices."""
        self._closing = True
        self._stop("lease")
        term = self._term
        if term is not None:
            self._step_down()
            await self._give_up(term)
            log.info("call_leadership_handed_on", extra={"fields": {"node": term}})
            return
        try:
            await self._ask(NODE_CLOSED, [self.link.node_id])
        except ApiError as exc:
            log.warning("call_node_close_unannounced", extra={"fields": {"error": exc.message}})

    async def _ask(self, name: str, args: list[Any]) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REQUEST_TIMEOUT_S
        while True:
            leader = await self._leader(deadline)
            if leader == self.link.node_id:
                if self._still_leading():
                    return await self._handle(name, args)
                continue  # it stopped leading: wait for the next leader
            packed = [_pack(a) for a in args]
            try:
                return await self.rpc.call(leader, SERVICE, name, packed, deadline - loop.time())
            except Elsewhere:
                if self.leader == leader:  # stale: learn the holder again at the next tick
                    self._learn(None)

    async def _leader(self, deadline: float) -> str:
        """The leader to ask: another node, or this one once it has taken over."""
        loop = asyncio.get_running_loop()
        while True:
            leader = self.leader
            if leader is not None and (leader != self.link.node_id or self._ready):
                return leader
            try:
                async with asyncio.timeout_at(deadline):
                    await self._changed.wait()
            except TimeoutError:
                raise Unavailable(NO_LEADER) from None
            if loop.time() >= deadline:
                raise Unavailable(NO_LEADER)

    # --- serving, while this node leads ---------------------------------------------------

    async def _serve(self, name: str, packed: list[Any]) -> Any:
        if not self._still_leading():
            raise Elsewhere
        if not self._ready:  # taking over: the request waits for it
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT_S):
                    while self._term is not None and not self._ready:
                        await self._changed.wait()
            except TimeoutError:
                raise Unavailable(NO_LEADER) from None
        if not self._still_leading() or not self._ready:
            raise Elsewhere
        return await self._handle(name, [_unpack(a) for a in packed])

    async def _handle(self, name: str, args: list[Any]) -> Any:
        if name == NODE_CLOSED:
            await self._devices_gone(args[0], "shutdown")
            return None
        return await self.calls.handle(name, args)

    def _on_notice(self, _sender: str, h: dict[str, Any], _payload: bytes) -> None:
        # Taken while taking over too: the calls adopted by then hear of their devices. Else
        # it was sent to a leader that has stopped; the next one checks the devices.
        if self._still_leading():
            self.calls.notice(h["n"], h["a"])

    async def _node_dead(self, node_id: str) -> None:
        self.rpc.give_up(node_id)
        if node_id == self.leader:
            self._learn(None)
        if self._still_leading():  # while taking over too: for the calls adopted by then
            await self._devices_gone(node_id, "connection_lost")

    async def _devices_gone(self, node_id: str, reason: str) -> None:
        await self.calls.direct.devices_lost(lambda device: node_of(device) == node_id, reason)

    # --- the lease ------------------------------------------------------------------------

    async def _keep_lease(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            try:
                await self._tick()
            except (RedisError, OSError) as exc:  # a leader stops leading at `_until`
                self._lease_outage.failed("call_lease_failed", exc, 0.0)
            else:
                self._lease_outage.answered()

    async def _tick(self) -> None:
        """Take the lease if it is free, renew it if it is ours; learn who holds it."""
        node = self.link.node_id
        loop = asyncio.get_running_loop()
        sent = loop.time()
        holder = (
            await self._take_or_renew(keys=[LEASE], args=[node, int(LEASE_S * 1000)])
        ).decode()
        if holder == node and node == self.link.node_id:  # (not renamed by a reset meanwhile)
            self._until = sent + LEASE_S - LEASE_MARGIN_S
            if self._expiry is not None:
                self._expiry.cancel()
            self._expiry = loop.call_at(self._until, self._expired)
            if self._term is None:
                self._term = node
                log.info("call_leader_elected", extra={"fields": {"node": node}})
                self._tasks["takeover"] = asyncio.create_task(self._take_over(node))
        elif self._term is not None:
            log.warning("call_leadership_lost", extra={"fields": {"node": self._term}})
            self._step_down()
        self._learn(holder)

    def _release(self, term: str) -> None:
        """Give the lease up after this node's earlier writes (its queue is ordered): the next
        leader reads the ledger as this one left it. If Redis fails, the lease expires."""
        self.link.enqueue(lambda p: p.eval(RELEASE, 1, LEASE, term))

    async def _give_up(self, term: str) -> None:
        self._release(term)
        with contextlib.suppress(RedisError):  # not released: the lease lapses on its own
            await self.link.flush()

    def _leads(self) -> bool:
        """Whether this node leads now: it holds the lease, whose renewal is not overdue."""
        return self._term is not None and asyncio.get_running_loop().time() < self._until

    def _still_leading(self) -> bool:
        """`_leads`, and if not because the renewal is overdue (a stall: the `_expired` timer
        has not run yet), stop leading now, before anything acts on the calls."""
        self._expired()
        return self._term is not None

    def _expired(self) -> None:
        if self._term is not None and asyncio.get_running_loop().time() >= self._until:
            log.warning("call_lease_expired", extra={"fields": {"node": self._term}})
            self._step_down()

    async def _take_over(self, term: str) -> None:
        """Adopt the calls the previous leader held; reconcile the group calls."""
        group = self.calls.group
        try:
            notes = await self.ledger.calls()
            alive = await self._alive()
            adopted = await self.calls.direct.adopt(
                notes, lambda device: node_of(device) not in alive
            )
            if self.calls.settings.sfu_secret:
                await group.workers.start()
        except Exception:
            # Someone (perhaps this node again) takes over at a later heartbeat.
            log.exception("call_takeover_failed")
            if self._term == term:
                del self._tasks["takeover"]  # this task: not cancelled by the step down
                self._step_down()
                await self._give_up(term)
            return
        if self._term != term:
            return
        del self._tasks["takeover"]
        if self.calls.settings.sfu_secret:
            self._tasks["sweep"] = asyncio.create_task(group.workers.keep_up())
        self._ready = True
        log.info("call_leader_ready", extra={"fields": {"node": term, "adopted": adopted}})
        self.link.broadcast(READY, {})
        self._pulse()

    async def _alive(self) -> set[str]:
        """The nodes alive now, read afresh: a node that has just started may lead before its
        link has looked."""
        return await self.link.alive() | {self.link.node_id}

    def _step_down(self) -> None:
        """Stop leading: forget the calls (the next leader adopts them from the ledger)."""
        self._term, self._ready = None, False
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        self._stop("takeover")
        self._stop("sweep")
        self.calls.group.workers.clear_gauges()  # the new leader's sweeps export them now
        self.calls.direct.abandon()
        self.calls.group.forget_all()
        self._pulse()

    def _reset(self) -> None:
        """This node may have missed requests or notices, and has a new id: it stops leading
        and gives the lease up for the next leader."""
        term = self._term
        if term is not None:
            log.warning("call_leadership_reset", extra={"fields": {"node": term}})
            self._step_down()
            self._release(term)
        self._learn(None)

    def _on_ready(self, sender: str, _h: Any, _payload: bytes) -> None:
        self._learn(sender)

    def _learn(self, holder: str | None) -> None:
        if holder == self.leader:
            return
        if self.leader is not None and self.leader != self.link.node_id:
            self.rpc.give_up(self.leader)
        self.leader = holder
        self._pulse()

    def _pulse(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _stop(self, task: str) -> None:
        running = self._tasks.pop(task, None)
        if running is not None:
            running.cancel()


# --- what travels: request arguments and ledger entries -------------------------------------


def _pack(arg: Any) -> list[Any]:
    """A request argument as JSON: an Origin, or any JSON value (client data included)."""
    if isinstance(arg, Origin):
        return ["o", arg.connection_id, arg.ref]
    return ["v", arg]


def _unpack(packed: list[Any]) -> Any:
    return Origin(packed[1], packed[2]) if packed[0] == "o" else packed[1]


def _entry(call: Call) -> str:
    """What the next leader needs to adopt the call (or to conclude it, once it ended)."""
    times = {
        "created_at": call.created_at,
        "answered_at": call.answered_at,
        "ring_until": call.ring_until,
        "ended_at": call.ended_at,
    }
    return json.dumps(
        {
            "id": call.id,
            "room_id": call.room_id,
            "media": call.media,
            "caller_id": call.caller_id,
            "callee_id": call.callee_id,
            "caller_device": call.caller_device,
            "callee_device": call.callee_device,
            "state": call.state,
            "announced": call.announced.is_set(),
            "outcome": call.outcome,
            "end_reason": call.end_reason,
            **{name: t.isoformat() if t else None for name, t in times.items()},
        }
    )


def _call(raw: bytes) -> Call:
    """A ledger entry as a call; KeyError, ValueError or TypeError if it does not name one
    whose parties could be told. What else it says may be missing or wrong (another version
    wrote it): adoption checks it (services/call_ledger.py)."""
    e = json.loads(raw)
    call = Call(
        id=e["id"],
        room_id=e["room_id"],
        media=e["media"],
        caller_id=e["caller_id"],
        callee_id=e["callee_id"],
        caller_device=e["caller_device"],
        created_at=datetime.fromisoformat(e["created_at"]),
        callee_device=e.get("callee_device"),
        state=str(e.get("state")),
        outcome=e.get("outcome"),
        end_reason=e.get("end_reason"),
        answered_at=_time(e.get("answered_at")),
        ring_until=_time(e.get("ring_until")),
        ended_at=_time(e.get("ended_at")),
    )
    if e.get("announced") is True:
        call.announced.set()
    return call


def _time(value: Any) -> datetime | None:
    """A time of an entry; None if it has none or one this version cannot read."""
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
