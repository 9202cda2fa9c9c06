"""Group calls (docs/calls.md, "Group calls"): FastSock admits members of a group room to the
room's call on an SFU worker, keeps who is in it from the workers' reports (taken by
services/group_workers.py), moves calls off workers that drain or go silent, and ends them.

The call's state lives in the store (`calls`, kind `group`), changed only by conditional writes,
so of two requests racing for a start, move or end exactly one wins. This node's memory holds
caches and timers: the live calls it knows (call -> room), who it saw present (the busy check
of 1:1 calls), admissions (join tokens not yet expired), empty-call timers, and the commands
waiting for each worker. In cluster mode they live on the call leader only, which handles every
request and worker report (cluster/calls.py); events reach members on every node (the sink)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from fastsock import tracing
from fastsock.calls.admission import WorkerInfo
from fastsock.calls.registry import ANSWERS, GONE, WorkerRegistry
from fastsock.calls.sfu_tokens import issue_join
from fastsock.calls.turn import ice_servers
from fastsock.config import Settings
from fastsock.errors import Conflict, InvalidRequest, NotFound, Unavailable
from fastsock.metrics import Metrics
from fastsock.services.call_records import CallRecords, CallWork
from fastsock.services.clock import now
from fastsock.services.events import EventSink, Origin
from fastsock.services.group_call import (
    END_EMPTY,
    END_NO_WORKER,
    END_WORKER_LOST,
    MOVE_DRAIN,
    MOVE_LOST,
    Admissions,
    group_doc,
)
from fastsock.services.group_workers import GroupWorkers
from fastsock.services.rooms import Rooms
from fastsock.services.schemas import validate
from fastsock.services.views import call_view
from fastsock.store import Duplicate, Store
from fastsock.store.ids import new_id

Doc = dict[str, Any]
log = logging.getLogger("fastsock.calls")

PLACE_ATTEMPTS = 3  # a call started, moved or ended by another request meanwhile: look again
# Ways out of a call that are final: the call need not wait for them to come back.
FINAL_EXITS = ("leave", "removed")


class GroupCalls:
    def __init__(
        self,
        store: Store,
        sink: EventSink,
        rooms: Rooms,
        records: CallRecords,
        work: CallWork,
        settings: Settings,
        metrics: Metrics,
        in_direct_call: Callable[[str], bool],
    ) -> None:
        self.store = store
        self.sink = sink
        self.rooms = rooms
        self.records = records
        self.work = work
        self.settings = settings
        self.metrics = metrics
        self.in_direct_call = in_direct_call
        self.registry = WorkerRegistry(store, settings, now)
        self.admissions = Admissions(settings.sfu_token_ttl_s)
        self._rooms: dict[str, str] = {}  # live call -> its room, for calls named by id
        self._present: dict[str, str] = {}  # user -> the call they are in
        self._empty_timers: dict[str, Any] = {}  # call -> asyncio.TimerHandle
        self._closing = False
        self.workers = GroupWorkers(self)

    def in_call(self, user_id: str) -> bool:
        """In a group call, or about to join one (for the 1:1 busy check)."""
        return user_id in self._present or self.admissions.call_of(user_id) is not None

    # --- requests from members ----------------------------------------------------------------

    async def join(self, user_id: str, data: Doc, origin: Origin) -> None:
        """Admit the user to the room's call, starting it if there is none: `call.sfu` (or
        `call.unavailable`) answers on the requesting session."""
        data = validate("call.join", data)
        room_id = data["room_id"]
        if self._closing:
            raise Unavailable("the server is shutting down; join again in a moment")
        await self.rooms.throttles.check("call_join", user_id)
        await self.rooms.require_member(user_id, room_id)
        room = await self.store.rooms.get(room_id)
        if room is None or room["kind"] != "group":
            raise InvalidRequest(
                "group calls are held in group rooms (call.invite calls a direct room)",
                field="room_id",
            )
        if not self.settings.sfu_secret:
            self._unavailable(room_id, "not_configured", origin)
            return
        if self.in_direct_call(user_id):
            raise Conflict("you are already in a call")
        for _ in range(PLACE_ATTEMPTS):
            call = await self.store.calls.live_group(room_id)
            if self._elsewhere(user_id, None if call is None else call["_id"]):
                raise Conflict("you are already in a group call: leave it first")
            if call is None:
                worker, reason = await self.registry.choose()
                if worker is None:
                    self._unavailable(room_id, reason or "no_worker", origin)
                    return
                try:
                    call = await self._start(room_id, data["media"], user_id, worker)
                except Duplicate:  # another member started it at the same moment
                    continue
            else:
                self.know(call)
                worker = await self.registry.get(call["worker_id"])
                if worker is None or not self.registry.is_healthy(worker):
                    await self._rescue(call, worker)  # moved or ended: look again
                    continue
                taken = set(call["present_ids"]) | self.admissions.of_call(call["_id"])
                if user_id not in taken and len(taken) >= self.settings.call_max_participants:
                    self._unavailable(room_id, "call_full", origin)
                    return
                if user_id not in call["present_ids"] and worker.peers + worker.pending >= (
                    worker.capacity
                ):
                    self._unavailable(room_id, "worker_full", origin)
                    return
            if not await self._admit(
                user_id, call, worker, "call.sfu", [origin.connection_id], origin
            ):
                continue  # the call ended or moved meanwhile
            self.metrics.sfu_admissions.labels("admitted").inc()
            return
        raise Unavailable("the call is moving to another worker; join again in a moment")

    async def leave(self, user_id: str, data: Doc) -> Doc:
        call = await self._call_of(user_id, validate("call.leave", data)["call_id"])
        self.admissions.discard(call["_id"], user_id)
        if user_id in call["present_ids"]:
            self.registry.evict(call["worker_id"], call["_id"], user_id)
            await self.left(call, user_id, "leave")
        return {}

    async def sfu_lost(self, user_id: str, data: Doc, origin: Origin) -> Doc:
        """The user's connection to the call's worker dropped. If the worker still answers its
        health URL, or does not answer but still heartbeats (too busy to answer in time: one
        participant must not knock out a worker), the user rejoins it. If nothing listens
        there, another worker answers, or it is silent and has missed a heartbeat, it is lost
        now (before all its heartbeats are missed) and its calls move: `call.sfu_moved` either
        way."""
        call_id = validate("call.sfu_lost", data)["call_id"]
        await self.rooms.throttles.check("call_join", user_id)
        call = await self._call_of(user_id, call_id, rejoin=True)
        worker = await self.registry.up(call["worker_id"])
        if worker is not None:
            answer = await self.registry.probe(worker)
            if answer == ANSWERS or (answer != GONE and not self.registry.is_quiet(worker)):
                await self._admit(user_id, call, worker, "call.sfu_moved", [origin.connection_id])
                return {}
        if worker is not None and await self.registry.mark_lost(worker.id):
            log.warning("sfu_worker_lost", extra={"fields": {"worker_id": worker.id}})
        # Whoever marked it lost, its calls move now (each move happens once).
        await self.move_calls(call["worker_id"], MOVE_LOST)
        return {}

    async def listed(self, call: Doc, user_id: str) -> Doc:
        """A worker's heartbeat lists the user in the call, and FastSock has them neither
        present nor on their way: their `peer_joined` was lost, an older heartbeat took them
        out, or the evict meant for them was (FastSock restarted, the reply never arrived).
        A member joins again; someone no longer a member, or in another call, is evicted
        again. An evict still waiting goes out in this reply."""
        if self.registry.evicting(call["worker_id"], call["_id"], user_id):
            return call
        if self._elsewhere(user_id, call["_id"]):
            self.registry.evict(call["worker_id"], call["_id"], user_id)
            return call
        return await self.joined(call, user_id)

    async def member_removed(self, room_id: str, user_id: str) -> None:
        """A member left or was removed from the room: out of its call at once."""
        call = await self.store.calls.live_group(room_id)
        if call is not None:
            await self.put_out(call, user_id)

    async def put_out(self, call: Doc, user_id: str) -> Doc:
        """Someone no longer a member of the call's room: evicted, and out of the call."""
        self.admissions.discard(call["_id"], user_id)
        if user_id in call["present_ids"]:
            self.registry.evict(call["worker_id"], call["_id"], user_id)
            call = await self.left(call, user_id, "removed", also=user_id)
        return call

    def close(self) -> None:
        """Shutdown: no more admissions. Calls go on, on their workers."""
        self._closing = True
        self._cancel_timers()

    def forget_all(self) -> None:
        """This node no longer leads calls (cluster mode): drop the caches, timers and worker
        commands. The calls go on, on their workers; the next leader knows them again from the
        store (`GroupWorkers.start`)."""
        self._cancel_timers()
        self._rooms.clear()
        self._present.clear()
        self.admissions.clear()
        self.registry.forget_commands()

    # --- moving and ending ----------------------------------------------------------------

    async def move_calls(self, worker_id: str, reason: str) -> None:
        for call in await self.store.calls.live_on_worker(worker_id):
            await self.move(call, reason)

    async def _rescue(self, call: Doc, worker: WorkerInfo | None) -> None:
        """A call found on a worker that takes no one: move it (or end it) now."""
        draining = worker is not None and self.registry.is_fresh(worker) and worker.draining
        await self.move(call, MOVE_DRAIN if draining else MOVE_LOST)

    async def move(self, call: Doc, reason: str) -> None:
        """To the least-loaded other worker (one choice per call, so a lost worker's calls
        spread); everyone in it or on their way is sent there. Nowhere to go: it ends."""
        old = call["worker_id"]
        target, _ = await self.registry.choose(exclude=frozenset({old}))
        if target is None:
            await self.end(call, END_WORKER_LOST if reason == MOVE_LOST else END_NO_WORKER)
            return
        if not await self.store.calls.move(call["_id"], old, target.id, now()):
            return  # moved or ended by another request meanwhile
        self.metrics.sfu_moves.labels(reason).inc()
        self.registry.end(old, call["_id"])
        log.info(
            "group_call_moved",
            extra={"fields": {"call_id": call["_id"], "from": old, "to": target.id, "why": reason}},
        )
        on_their_way = self.admissions.of_call(call["_id"]) - set(call["present_ids"])
        for user_id in [*call["present_ids"], *sorted(on_their_way)]:
            await self._admit(user_id, call, target, "call.sfu_moved", None)
        if not call["present_ids"]:
            self.arm_empty(call["_id"])

    async def end(self, call: Doc, reason: str) -> None:
        """End the live call (a no-op if another request ended it first), tell the room and
        post its timeline entry."""
        at = now()
        duration = max(0, round((at - call["created_at"]).total_seconds()))
        ended = await self.store.calls.end_group(call["_id"], at, duration, reason)
        if ended is None:
            return
        self._forget(call["_id"])
        self.registry.end(call["worker_id"], call["_id"])
        view = call_view(ended)
        payload = {
            "call_id": view["id"],
            "room_id": view["room_id"],
            "reason": reason,
            "duration_s": view["duration_s"],
            "participants": view["participant_ids"],
            "call": view,
        }
        await self.rooms.publish(view["room_id"], "call.ended", payload)
        self.records.count(view)
        self.work.run(self.records.post_entry(view))

    # --- transitions ------------------------------------------------------------------------

    async def _start(self, room_id: str, media: str, user_id: str, worker: WorkerInfo) -> Doc:
        doc = group_doc(new_id(), room_id, media, user_id, worker.id, now())
        call = await self.store.calls.start_group(doc)
        self._rooms[call["_id"]] = room_id
        log.info(
            "group_call_started",
            extra={"fields": {"call_id": call["_id"], "room_id": room_id, "worker_id": worker.id}},
        )
        # Once per call (the store keeps one live call per room): members' clients ring.
        await self.rooms.publish(room_id, "call.started", {"call": call_view(call)})
        self.arm_empty(call["_id"])  # until someone joins
        return call

    async def _admit(
        self,
        user_id: str,
        call: Doc,
        worker: WorkerInfo,
        type_: str,
        sessions: list[str] | None,
        origin: Origin | None = None,
    ) -> bool:
        """Send the user to the call on the worker: a join token (and ICE servers) to each of
        `sessions` (None: every session of the user), and the admission counted until the
        token expires. False, with nothing sent, when the call ended or moved meanwhile."""
        attributes = {"fastsock.call.id": call["_id"], "fastsock.sfu.worker.id": worker.id}
        with tracing.span("sfu admission", attributes) as span:
            self.admissions.add(call["_id"], user_id)  # from now on the call does not end as empty
            self.registry.forgive(call["_id"], user_id)  # an evict would hit their new connection
            await self.registry.reserve(worker.id)
            live = await self.store.calls.live_group(call["room_id"])
            if live is None or (live["_id"], live["worker_id"]) != (call["_id"], worker.id):
                self.admissions.discard(call["_id"], user_id)
                tracing.refused(span, "call_moved")
                return False
            token = issue_join(
                self.settings.sfu_secret or "",
                user_id=user_id,
                room_id=call["room_id"],
                call_id=call["_id"],
                worker_id=worker.id,
                now=time.time(),
                ttl=self.settings.sfu_token_ttl_s,
            )
            payload: Doc = {
                "call_id": call["_id"],
                "room_id": call["room_id"],
                "worker_url": worker.url,
                "token": token,
                **ice_servers(self.settings, user_id),
            }
            if type_ == "call.sfu":
                payload["call"] = call_view(call)
            if sessions is None:
                await self.sink.publish([user_id], type_, payload, origin=origin)
            for session in sessions or ():
                self.sink.publish_session(session, type_, payload, origin=origin)
            return True

    async def joined(self, call: Doc, user_id: str) -> Doc:
        if await self.store.memberships.get(call["room_id"], user_id) is None:
            # Removed from the room while joining: out at once.
            self.registry.evict(call["worker_id"], call["_id"], user_id)
            return call
        doc, added = await self.store.calls.add_participant(call["_id"], user_id)
        if doc is None:
            self.registry.end(call["worker_id"], call["_id"])
            return call
        self._present[user_id] = call["_id"]
        self._cancel_empty(call["_id"])
        if added:
            await self._tell(doc, "call.participant_joined", user_id)
        return doc

    async def left(
        self, call: Doc, user_id: str, reason: str | None, *, also: str | None = None
    ) -> Doc:
        """The user is out of the call (`reason`: why, from the worker or FastSock). The last
        one out ends it if they left on purpose; otherwise it waits for them to come back."""
        if reason == "replaced":  # their newer connection took their place: still in
            return call
        doc, removed = await self.store.calls.remove_participant(call["_id"], user_id)
        if doc is None or not removed:
            return call if doc is None else doc
        if self._present.get(user_id) == call["_id"]:
            del self._present[user_id]
        if reason in FINAL_EXITS:
            self.admissions.discard(call["_id"], user_id)
        await self._tell(doc, "call.participant_left", user_id, also=also)
        if not doc["present_ids"]:
            if reason in FINAL_EXITS and not self.admissions.of_call(call["_id"]):
                await self.end(doc, END_EMPTY)
            else:
                self.arm_empty(call["_id"])
        return doc

    async def _tell(self, call: Doc, type_: str, user_id: str, *, also: str | None = None) -> None:
        """A participant event to the room's members (and `also`, a member just removed)."""
        data = {
            "call_id": call["_id"],
            "room_id": call["room_id"],
            "user_id": user_id,
            "present_ids": list(call["present_ids"]),
        }
        await self.rooms.publish(call["room_id"], type_, data)
        if also is not None:
            await self.sink.publish([also], type_, data)

    # --- timers and caches ------------------------------------------------------------------

    def remember(self, call: Doc) -> None:
        """A live call this node has not seen yet (start-up): known by id from now on, and
        ended if nobody comes back to it."""
        self._rooms[call["_id"]] = call["room_id"]
        self._present.update(dict.fromkeys(call["present_ids"], call["_id"]))
        if not call["present_ids"]:
            self.arm_empty(call["_id"])

    def know(self, call: Doc) -> None:
        self._rooms[call["_id"]] = call["room_id"]

    def arm_empty(self, call_id: str) -> None:
        """Nobody in the call: it ends after the grace period unless someone comes (back)."""
        self._cancel_empty(call_id)
        self._empty_timers[call_id] = self.work.later(
            self.settings.call_empty_grace_s, lambda: self._end_if_empty(call_id)
        )

    def _cancel_timers(self) -> None:
        for timer in self._empty_timers.values():
            timer.cancel()
        self._empty_timers.clear()

    def _cancel_empty(self, call_id: str) -> None:
        timer = self._empty_timers.pop(call_id, None)
        if timer is not None:
            timer.cancel()

    async def _end_if_empty(self, call_id: str) -> None:
        self._empty_timers.pop(call_id, None)
        room_id = self._rooms.get(call_id)
        call = await self.store.calls.live_group(room_id) if room_id else None
        if call is None or call["_id"] != call_id or call["present_ids"]:
            return
        if self.admissions.of_call(call_id):
            self.arm_empty(call_id)  # someone is on their way (their token is still good)
        else:
            await self.end(call, END_EMPTY)

    def _forget(self, call_id: str) -> None:
        self._cancel_empty(call_id)
        self._rooms.pop(call_id, None)
        self.admissions.forget(call_id)
        for user_id in [u for u, c in self._present.items() if c == call_id]:
            del self._present[user_id]

    async def _call_of(self, user_id: str, call_id: str, *, rejoin: bool = False) -> Doc:
        """The live call if the user is in it or admitted to it, or with `rejoin`, took part in
        it and is still a member of its room (a dropped connection is reported gone by the
        worker before the user's `call.sfu_lost` may arrive). Anyone else, and any call that is
        over or never existed, gets the same answer."""
        room_id = self._rooms.get(call_id)
        call = await self.store.calls.live_group(room_id) if room_id else None
        if call is None or call["_id"] != call_id:
            raise NotFound("no such call in progress")
        if user_id in call["present_ids"] or self.admissions.has(call_id, user_id):
            return call
        if not rejoin or user_id not in call["participant_ids"]:
            raise NotFound("no such call in progress")
        await self.rooms.require_member(user_id, call["room_id"])
        taken = set(call["present_ids"]) | self.admissions.of_call(call_id)
        if len(taken) >= self.settings.call_max_participants:
            raise Conflict("the call is full now")
        return call

    def _elsewhere(self, user_id: str, call_id: str | None) -> bool:
        """Present in, or admitted to, a group call other than `call_id`."""
        calls = {self._present.get(user_id), self.admissions.call_of(user_id)} - {None}
        return bool(calls - {call_id})

    def _unavailable(self, room_id: str, reason: str, origin: Origin) -> None:
        self.metrics.sfu_admissions.labels(reason).inc()
        self.sink.publish_session(
            origin.connection_id,
            "call.unavailable",
            {"room_id": room_id, "reason": reason},
            origin=origin,
        )
