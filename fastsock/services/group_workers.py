"""What SFU workers tell FastSock about group calls (the internal API: registration,
heartbeats, peer events, deregistration), and the upkeep of calls whose worker went away:
the sweep every heartbeat period and the reconciliation at start-up (docs/calls.md, "Group
calls"; in cluster mode both run on the call leader, from when it takes over: cluster/calls.py).
The transitions themselves (join, leave, move, end) are services/group_calls.py."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from fastsock.calls.registry import ANSWERS
from fastsock.errors import ApiError
from fastsock.services.group_call import END_WORKER_LOST, MOVE_DRAIN, MOVE_LOST
from fastsock.services.schemas import validate
from fastsock.store import is_unavailable

if TYPE_CHECKING:
    from fastsock.services.group_calls import GroupCalls

Doc = dict[str, Any]
log = logging.getLogger("fastsock.calls")
WORKER_STATES = ("up", "draining", "stale")  # fastsock_sfu_workers{state}


class UnknownWorker(ApiError):
    """A worker FastSock holds as lost, or never registered: it drops its rooms and registers."""

    status, code = 404, "unknown_worker"


class GroupWorkers:
    def __init__(self, calls: GroupCalls) -> None:
        self.calls = calls
        self.store = calls.store
        self.registry = calls.registry
        self.settings = calls.settings
        self.metrics = calls.metrics

    # --- reports from workers -----------------------------------------------------------------

    async def registered(self, worker_id: str, data: Doc) -> Doc:
        body = validate("sfu.register", data)
        await self.registry.register(worker_id, body)
        log.info("sfu_worker_registered", extra={"fields": {"worker_id": worker_id}})
        # A worker registering holds no rooms: calls still placed on it (it registers again
        # after being refused as unknown) must move.
        await self.calls.move_calls(worker_id, MOVE_LOST)
        return {
            "heartbeat_s": self.settings.sfu_heartbeat_s,
            "missed_heartbeats": self.settings.sfu_missed_heartbeats,
            "token_ttl_s": self.settings.sfu_token_ttl_s,
        }

    async def heartbeat(self, worker_id: str, data: Doc) -> Doc:
        """Its load, and who it has in which call: a draining worker's calls move. Both ways,
        except for someone just admitted or moved there (perhaps connecting right now): someone
        the store has in a call but the worker does not is out (their `peer_left` was lost);
        someone the worker has in a call but the store does not is handled as if it had just
        joined (`GroupCalls.listed`: their `peer_joined` was lost, or the evict meant for them)."""
        body = validate("sfu.heartbeat", data)
        worker = await self.registry.heartbeat(worker_id, body)
        if worker is None:
            raise UnknownWorker("no such worker: register again")
        if worker.draining:
            await self.calls.move_calls(worker_id, MOVE_DRAIN)
        reported = {c["call_id"]: set(c["user_ids"]) for c in body["calls"]}
        for call in await self.store.calls.live_on_worker(worker_id):
            users = reported.pop(call["_id"], set())
            self.calls.know(call)
            # Removed from the room while the removal could not reach the call (the database
            # or the call leader away then): out now.
            members = await self.calls.rooms.members.of(call["room_id"])
            for user_id in sorted(users & set(call["present_ids"]) - set(members)):
                call = await self.calls.put_out(call, user_id)
            for user_id in set(call["present_ids"]) - users:
                if not self.calls.admissions.has(call["_id"], user_id):
                    call = await self.calls.left(call, user_id, "disconnected")
            for user_id in sorted(users - set(call["present_ids"])):
                if not self.calls.admissions.has(call["_id"], user_id):
                    call = await self.calls.listed(call, user_id)
        for call_id in reported:  # calls it holds that ended or moved away
            self.registry.end(worker_id, call_id)
        return self.registry.commands_for(worker_id)

    async def events(self, worker_id: str, data: Doc) -> Doc:
        events = validate("sfu.events", data)["events"]
        if await self.registry.up(worker_id) is None:
            raise UnknownWorker("no such worker: register again")
        calls = {c["_id"]: c for c in await self.store.calls.live_on_worker(worker_id)}
        for event in events:
            call_id, user_id = event["call_id"], event["user_id"]
            call = calls.get(call_id)
            if call is None:  # ended or moved away: the worker must close it
                self.registry.end(worker_id, call_id)
            elif event["type"] == "peer_joined":
                calls[call_id] = await self.calls.joined(call, user_id)
            else:
                calls[call_id] = await self.calls.left(call, user_id, event["reason"])
        return self.registry.commands_for(worker_id)

    async def gone(self, worker_id: str) -> None:
        """The worker drained and deregistered: whatever call is left on it moves."""
        if await self.registry.up(worker_id) is None:
            raise UnknownWorker("no such worker")
        await self.registry.remove(worker_id)
        log.info("sfu_worker_gone", extra={"fields": {"worker_id": worker_id}})
        await self.calls.move_calls(worker_id, MOVE_DRAIN)

    # --- upkeep -------------------------------------------------------------------------------

    async def start(self) -> None:
        """At start-up: calls whose worker died while this node was down end (a worker still
        in the registry must answer its health URL); the others are known again."""
        await self.registry.sweep()
        # Calls first: a call started meanwhile is on a worker already registered.
        calls = await self.store.calls.live_groups()
        fresh = [w for w in await self.registry.workers() if self.registry.is_fresh(w)]
        hosting = {c["worker_id"] for c in calls}
        probed = [w for w in fresh if w.id in hosting]
        answers = await asyncio.gather(*(self.registry.probe(w) for w in probed))
        alive = {w.id for w, answer in zip(probed, answers, strict=True) if answer == ANSWERS}
        for worker in probed:
            if worker.id not in alive and await self.registry.mark_lost(worker.id):
                log.warning("sfu_worker_lost", extra={"fields": {"worker_id": worker.id}})
        for call in calls:
            if call["worker_id"] in alive:
                self.calls.remember(call)
            else:
                await self.calls.end(call, END_WORKER_LOST)
        await self.sweep()

    async def keep_up(self) -> None:
        """Sweep every heartbeat period, until cancelled."""
        while True:
            await asyncio.sleep(self.settings.sfu_heartbeat_s)
            try:
                await self.sweep()
            except Exception as exc:
                if not is_unavailable(exc):
                    log.exception("sfu_sweep_failed")

    async def sweep(self) -> None:
        """Every heartbeat period: workers silent for too long are lost and their calls move
        (so do calls left on any worker that is not up, whoever lost it); the gauges."""
        for worker_id in await self.registry.sweep():
            log.warning("sfu_worker_lost", extra={"fields": {"worker_id": worker_id}})
        # Calls first: a call started meanwhile is on a worker already registered.
        calls = await self.store.calls.live_groups()
        workers = await self.registry.workers()
        up = {w.id for w in workers}
        for call in calls:
            if call["worker_id"] not in up:
                await self.calls.move(call, MOVE_LOST)
        states = dict.fromkeys(WORKER_STATES, 0)
        for w in workers:
            fresh = self.registry.is_fresh(w)
            states["stale" if not fresh else "draining" if w.draining else "up"] += 1
        self._gauges(states, len(calls))

    def clear_gauges(self) -> None:
        """This node stopped sweeping (no longer the call leader): its gauges read 0 rather
        than the last sweep's figures, which the new leader's now stand for."""
        self._gauges(dict.fromkeys(WORKER_STATES, 0), 0)

    def _gauges(self, workers: dict[str, int], calls: int) -> None:
        for state, count in workers.items():
            self.metrics.sfu_workers.labels(state).set(count)
        self.metrics.group_calls_active.set(calls)
