"""1:1 calls: the state machine and signaling relay (docs/calls.md).

A call is ringing -> active -> ended, or ends unanswered (declined, cancelled, missed) or at
once (busy, unavailable). Each party takes part with one device (WebSocket session): the
caller's inviting session and the callee's accepting session; SDP and ICE candidates travel
only between those two. Live calls are held in this process's memory and every call is stored
in `calls`. In cluster mode the process is the call leader, which handles every node's call
requests; it also notes the live calls in a `Ledger`, so that the next leader can adopt them
if it stops leading (cluster/calls.py).

State changes happen synchronously between awaits, so two racing requests (say, an accept
and a cancel) cannot both win; the database writes for one call run in order behind them."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from fastsock.errors import Conflict, Forbidden, InvalidRequest, NotFound, Unavailable
from fastsock.metrics import Metrics
from fastsock.services.call import (
    ACTIVE,
    ANSWERED_OR_DECLINED,
    ENDED,
    OUTCOME_EVENTS,
    RINGING,
    Call,
    server_outcome,
)
from fastsock.services.call_ledger import Ledger, concluded, resumable
from fastsock.services.call_records import CallRecords, CallWork
from fastsock.services.clock import now
from fastsock.services.events import EventSink, Origin
from fastsock.services.rooms import Rooms
from fastsock.services.schemas import validate
from fastsock.store import Store
from fastsock.store.ids import new_id

Doc = dict[str, Any]


# A call.signal costs one more token of the call_signal limit per this many SDP bytes: the
# default burst (100) then lets at most ~400 KB through at once, below what a socket may leave
# unsent before it is closed as too slow (512 KiB).
SIGNAL_BYTES = 4096


class DirectCalls:
    def __init__(
        self,
        store: Store,
        sink: EventSink,
        rooms: Rooms,
        records: CallRecords,
        work: CallWork,
        *,
        ring_s: float,
        grace_s: float,
        metrics: Metrics,
        in_group_call: Callable[[str], bool],
    ) -> None:
        self.store = store
        self.sink = sink
        self.rooms = rooms
        self.records = records
        self.work = work
        self.ring_s = ring_s
        self.grace_s = grace_s
        self.metrics = metrics
        self.in_group_call = in_group_call  # a user is in one call at a time, of either kind
        self._calls: dict[str, Call] = {}
        self._by_user: dict[str, Call] = {}  # a user takes part in at most one live call
        self._closing = False
        self.ledger: Ledger | None = None  # cluster mode: set by cluster/calls.py

    def in_call(self, user_id: str) -> bool:
        """Whether the user takes part in a live 1:1 call (ringing or active) on this node."""
        return user_id in self._by_user

    # --- requests from the parties --------------------------------------------------------

    async def invite(self, user_id: str, data: Doc, origin: Origin) -> None:
        data = validate("call.invite", data)
        room_id = data["room_id"]
        if self._closing:
            raise Unavailable("the server is shutting down; call again in a moment")
        await self.rooms.throttles.check("call", user_id)
        await self.rooms.require_member(user_id, room_id)
        room = await self.store.rooms.get(room_id)
        if room is None or room["kind"] != "direct":
            raise InvalidRequest("1:1 calls are placed in direct-message rooms", field="room_id")
        callee_id = next((u for u in room["dm_key"].split(":") if u != user_id), None)
        if callee_id is None:
            raise InvalidRequest("you cannot call yourself", field="room_id")

        # From here to the first await, nothing else runs: the checks and the claim are one step.
        if self.in_group_call(user_id):
            raise Conflict("you are already in a call")
        while (mine := self._by_user.get(user_id)) is not None:
            if mine.state != RINGING or mine.callee_id != user_id or mine.caller_id != callee_id:
                raise Conflict("you are already in a call")
            # Glare: they are ringing us right now. Answer their call from this device, once
            # its caller has heard it was created (its record may still be being stored).
            if mine.announced.is_set():
                await self._accept(mine, origin, reply=True)
                return
            await mine.announced.wait()
        call = Call(
            id=new_id(),
            room_id=room_id,
            media=data["media"],
            caller_id=user_id,
            callee_id=callee_id,
            caller_device=origin.connection_id,
            created_at=now(),
        )
        if callee_id in self._by_user or self.in_group_call(callee_id):
            await self._end_at_once(call, "busy", origin)
        elif not self.sink.is_online(callee_id):
            await self._end_at_once(call, "unavailable", origin)
        else:
            self._hold(call)
            if self.ledger is not None:  # first: a leader dying now leaves no record ringing
                self.ledger.keep(call)
            try:
                await self.records.save_chained(call, insert=True)
            except BaseException:
                self._forget(call)
                if self.ledger is not None:
                    self.ledger.drop(call)
                raise
            finally:
                call.announced.set()
            if call.state != RINGING:
                if call.outcome is None:  # forgotten meanwhile: this node stopped leading
                    raise Unavailable("calls are moving to another server; call again")
                return  # ended while it was being stored (shutdown)
            call.ring_until = now() + timedelta(seconds=self.ring_s)
            self._ring(call)
            await self._watch_device(call, user_id)
            view = call.view()
            self.sink.publish_session(
                call.caller_device, "call.created", {"call": view, "here": True}, origin=origin
            )
            self._tell_user(call, callee_id, "call.ringing", {"call": view})
            if self.ledger is not None and call.state != ENDED:
                # After the events: a call noted as announced has been heard of, and the next
                # leader rings it on (one it was not, it ends).
                self.ledger.keep(call)

    async def accept(self, user_id: str, data: Doc, origin: Origin) -> Doc:
        call = self._party_call(user_id, validate("call.accept", data)["call_id"])
        if user_id != call.callee_id or call.state != RINGING:
            raise Conflict("only the callee can accept a ringing call")
        await self._accept(call, origin, reply=False)
        return {}

    async def reject(self, user_id: str, data: Doc, origin: Origin) -> Doc:
        call = self._party_call(user_id, validate("call.reject", data)["call_id"])
        if user_id != call.callee_id or call.state != RINGING:
            raise Conflict("only the callee can decline a ringing call")
        await self._finish(call, "declined")
        return {}

    async def cancel(self, user_id: str, data: Doc, origin: Origin) -> Doc:
        call = self._party_call(user_id, validate("call.cancel", data)["call_id"])
        if user_id != call.caller_id or call.state != RINGING:
            raise Conflict("only the caller can cancel a ringing call")
        await self._finish(call, "cancelled")
        return {}

    async def hangup(self, user_id: str, data: Doc, origin: Origin) -> Doc:
        """Either party, from any of their devices: ends an active call, or cancels /
        declines a ringing one."""
        call = self._party_call(user_id, validate("call.hangup", data)["call_id"])
        if call.state == ACTIVE:
            outcome = "completed"
        else:
            outcome = "cancelled" if user_id == call.caller_id else "declined"
        await self._finish(call, outcome, "hangup")
        return {}

    async def signal(self, user_id: str, data: Doc, origin: Origin) -> Doc:
        """Relay an SDP description or an ICE candidate to the other party's device."""
        has_sdp, has_candidate = "sdp" in data, "candidate" in data
        clean = validate("call.signal", data)
        # Counted by size too: the other device must read what it is sent, and a flood of
        # large SDPs would get its socket closed as too slow (connections.py).
        size = len(clean["sdp"]["sdp"]) if has_sdp else 0
        await self.rooms.throttles.check("call_signal", user_id, cost=1 + size // SIGNAL_BYTES)
        if has_sdp == has_candidate:
            raise InvalidRequest("a signal carries exactly one of sdp or candidate")
        call = self._party_call(user_id, clean["call_id"])
        if call.state != ACTIVE:
            raise Conflict("signals are relayed once the call is accepted")
        if origin.connection_id != call.device_of(user_id):
            raise Forbidden("signals come from the device that is in the call")
        payload: Doc = {"call_id": call.id, "from": user_id}
        if has_sdp:
            payload["sdp"] = clean["sdp"]
        else:
            payload["candidate"] = clean["candidate"]
        target = call.device_of(call.other(user_id))
        assert target is not None  # active calls have both devices
        self.sink.publish_session(target, "call.signal", payload)
        if (
            has_sdp
            and user_id == call.callee_id
            and clean["sdp"]["type"] == "answer"
            and call.accepted_clock is not None
        ):
            self.metrics.call_setup.observe(time.monotonic() - call.accepted_clock)
            call.accepted_clock = None  # renegotiations are not setups
        return {}

    async def media_state(self, user_id: str, data: Doc, origin: Origin) -> Doc:
        """Relay whether the device sends audio and video (muted or not) to the other
        party's device, which cannot tell a muted track from a silent one."""
        clean = validate("call.media_state", data)
        await self.rooms.throttles.check("call_signal", user_id)
        call = self._party_call(user_id, clean["call_id"])
        if call.state != ACTIVE:
            raise NotFound("no such call in progress")
        if origin.connection_id != call.device_of(user_id):
            raise Forbidden("media state comes from the device that is in the call")
        target = call.device_of(call.other(user_id))
        assert target is not None  # active calls have both devices
        state = {"audio": clean["audio"], "video": clean["video"]}
        self.sink.publish_session(
            target, "call.media_state", {"call_id": call.id, "from": user_id, **state}
        )
        return {}

    # --- devices coming and going (from the WebSocket layer) ------------------------------

    def device_left(self, session_id: str, user_id: str) -> None:
        """A socket of a device in a call closed: wait for it to resume, then end the call."""
        call = self._by_user.get(user_id)
        if call is None or call.device_of(user_id) != session_id:
            return
        old = call.grace_timers.pop(session_id, None)
        if old is not None:
            old.cancel()
        call.grace_timers[session_id] = self.work.later(
            self.grace_s, lambda: self._lost(call, user_id, session_id)
        )

    def device_joined(self, session_id: str, user_id: str) -> None:
        """A new session (a tab opened or reloaded): it rings too if the user is being called."""
        call = self._by_user.get(user_id)
        if (
            call is not None
            and call.announced.is_set()
            and call.state == RINGING
            and call.callee_id == user_id
        ):
            self.sink.publish_session(
                session_id, "call.ringing", {"call": call.view(), "here": False}
            )

    def device_back(self, session_id: str, user_id: str) -> None:
        call = self._by_user.get(user_id)
        if call is not None and (timer := call.grace_timers.pop(session_id, None)) is not None:
            timer.cancel()

    async def close(self) -> None:
        """Shutdown: end the live calls (the parties are told while sockets are open); their
        records are written in the background (`CallWork`). In cluster mode a call whose
        devices are all on other nodes goes on: the next leader adopts it from the ledger."""
        self._closing = True
        for call in list(self._calls.values()):
            devices = [d for d in (call.caller_device, call.callee_device) if d is not None]
            if self.ledger is None or not all(self.ledger.elsewhere(d) for d in devices):
                await self._end(call, "shutdown")

    # --- cluster mode (cluster/calls.py) ---------------------------------------------------

    async def devices_lost(self, lost: Callable[[str], bool], reason: str) -> None:
        """Devices that can never come back (their node died, or shut down): their calls end
        now, as if their grace period were over."""
        for call in list(self._calls.values()):
            for user_id in (call.caller_id, call.callee_id):
                device = call.device_of(user_id)
                if device is not None and lost(device):
                    await self._device_gone(call, user_id, reason)

    async def adopt(self, calls: list[Call], lost: Callable[[str], bool]) -> int:
        """Take over the calls of the ledger, left by the previous leader: each goes on here as
        it stood and its parties are told nothing (nothing changed for them). A ringing call
        rings until its deadline; a device that is away gets its grace period, and one whose
        node died (`lost`) ends its call at once. An ended call is told and stored again (the
        previous leader may have stopped before); a note that makes no sense, or a ringing
        call its parties may not have heard of, ends (`server_lost`). -> how many are taken
        on."""
        held: list[Call] = []
        for call in calls:
            if concluded(call):
                self._conclude(call, call.view())
            # A user takes part in one call at a time.
            elif resumable(call) and not {call.caller_id, call.callee_id} & self._by_user.keys():
                self._hold(call)
                held.append(call)
            else:
                self._close(call, server_outcome(call), "server_lost")
            call.announced.set()
        # Every call is held before the first await: a node found dead from now on ends the
        # calls of its devices (`devices_lost`).
        for call in held:
            if call.state == RINGING:
                self._ring(call)
            for user_id in (call.caller_id, call.callee_id):
                device = call.device_of(user_id)
                if call.state != ENDED and device is not None and lost(device):
                    await self._device_gone(call, user_id, "connection_lost")
            for user_id in (call.caller_id, call.callee_id):
                if call.state != ENDED:
                    await self._watch_device(call, user_id)
        return len(held)

    def abandon(self) -> None:
        """This node no longer leads calls: forget every live call without a word (the next
        leader adopts them), and let its timers that still fire do nothing."""
        for call in list(self._calls.values()):
            call.state = ENDED
            call.announced.set()
            self._forget(call)

    # --- transitions ----------------------------------------------------------------------

    async def _accept(self, call: Call, origin: Origin, *, reply: bool) -> None:
        """`reply`: the accepted event is the answer to the request (glare: an invite)."""
        if call.ring_timer is not None:
            call.ring_timer.cancel()
        call.state = ACTIVE
        call.callee_device = origin.connection_id
        call.answered_at = now()
        call.accepted_clock = time.monotonic()
        if self.ledger is not None:
            self.ledger.keep(call)
        self._tell(call, "call.accepted", {"call": call.view()}, origin if reply else None)
        # Written in the background: the callee's answer and candidates, which follow on the
        # same socket, must not queue behind a database write.
        self.work.run(self.records.save_chained(call))
        await self._watch_device(call, call.callee_id)

    async def _finish(self, call: Call, outcome: str, reason: str | None = None) -> None:
        """End a live call (no-op if something else ended it first), store it, tell both
        parties and post its timeline entry."""
        if call.state != ENDED:
            self._close(call, outcome, reason)

    async def _end(self, call: Call, reason: str) -> None:
        """Ended by the server (`server_outcome`)."""
        await self._finish(call, server_outcome(call), reason)

    def _close(self, call: Call, outcome: str, reason: str | None) -> None:
        call.state, call.outcome, call.end_reason = ENDED, outcome, reason
        call.ended_at = now()
        self._forget(call)
        view = call.view()
        self.records.count(view)
        self._conclude(call, view)

    def _conclude(self, call: Call, view: Doc) -> None:
        """Tell both parties how the call ended, then store it and post its timeline entry in
        the background (shutdown waits for them): the call is over for the users whether or
        not the database answers. The ledger notes the end before the events and forgets the
        call once it is stored: a leader that stops meanwhile leaves it to the next one."""
        data: Doc = {"call": view}
        if call.outcome == "completed":
            data = {
                "call_id": call.id,
                "reason": call.end_reason,
                "duration_s": view["duration_s"],
                **data,
            }
        if self.ledger is not None:
            self.ledger.keep(call)
        self._tell(call, OUTCOME_EVENTS[view["outcome"]], data)
        self.work.run(self._record(call, view))

    async def _record(self, call: Call, view: Doc) -> None:
        try:
            await self.records.save_chained(call)
            await self._post(call, view)
        finally:
            if self.ledger is not None:
                self.ledger.drop(call)

    async def _end_at_once(self, call: Call, outcome: str, origin: Origin) -> None:
        """busy / unavailable: the call never rings. Only the caller is told; the callee
        finds a missed call in the conversation."""
        call.state, call.outcome, call.ended_at = ENDED, outcome, call.created_at
        view = call.view()
        self.records.count(view)
        await self.records.save_chained(call, insert=True)
        await self._post(call, view)  # first, so the reply finds the entry in the history
        self.sink.publish_devices(
            call.caller_id,
            OUTCOME_EVENTS[outcome],
            {"call": view},
            call.caller_device,
            origin=origin,
        )

    async def _watch_device(self, call: Call, user_id: str) -> None:
        """A request can be handled after its socket closed (requests queue): a device that
        joins a call already disconnected gets its grace period at once."""
        device = call.device_of(user_id)
        if device is not None and not await self.sink.session_attached(user_id, device):
            self.device_left(device, user_id)

    def _ring(self, call: Call) -> None:
        """Ring until the call's deadline (at once if it is past): then it is missed."""
        assert call.ring_until is not None
        left = (call.ring_until - now()).total_seconds()
        call.ring_timer = self.work.later(max(0.0, left), lambda: self._ring_out(call))

    async def _ring_out(self, call: Call) -> None:
        # Not answered in the same moment the timer fired, and still this node's to end.
        if call.state == RINGING and self._leads():
            await self._finish(call, "missed")

    async def _lost(self, call: Call, user_id: str, session_id: str) -> None:
        if not self._leads() or await self.sink.session_attached(user_id, session_id):
            return  # another node leads now, or resumed in the same moment
        await self._device_gone(call, user_id, "connection_lost")

    async def _device_gone(self, call: Call, user_id: str, reason: str) -> None:
        """The user's device in the call is gone for good: the call ends (while it rings,
        only the caller has a device in it)."""
        if call.state == ACTIVE:
            await self._finish(call, "completed", reason)
        elif user_id == call.caller_id:
            await self._finish(call, "cancelled", reason)

    async def _post(self, call: Call, view: Doc) -> None:
        # A callee who took part (or chose not to) has seen the call; a missed one is news.
        seen_by = call.callee_id if call.outcome in ANSWERED_OR_DECLINED else None
        await self.records.post_entry(view, seen_by=seen_by)

    def _hold(self, call: Call) -> None:
        self._calls[call.id] = call
        self._by_user[call.caller_id] = self._by_user[call.callee_id] = call
        self.metrics.calls_active.inc()

    def _leads(self) -> bool:
        """Whether this node may change its calls (in cluster mode: it still leads)."""
        return self.ledger is None or self.ledger.leads()

    def _forget(self, call: Call) -> None:
        if call.ring_timer is not None:
            call.ring_timer.cancel()
        for timer in call.grace_timers.values():
            timer.cancel()
        call.grace_timers.clear()
        if self._calls.pop(call.id, None) is not None:
            self.metrics.calls_active.dec()
        for user_id in (call.caller_id, call.callee_id):
            if self._by_user.get(user_id) is call:
                del self._by_user[user_id]

    # --- helpers ---------------------------------------------------------------------------

    def _party_call(self, user_id: str, call_id: str) -> Call:
        """The live call if the user is one of its parties. Anyone else, and any call that
        is over or never existed, gets the same answer."""
        call = self._calls.get(call_id)
        # A call still being stored is not known yet: its caller has not heard of it either.
        if (
            call is None
            or not call.announced.is_set()
            or user_id not in (call.caller_id, call.callee_id)
        ):
            raise NotFound("no such call in progress")
        return call

    def _tell(self, call: Call, type_: str, data: Doc, origin: Origin | None = None) -> None:
        for user_id in (call.caller_id, call.callee_id):
            self._tell_user(call, user_id, type_, data, origin)

    def _tell_user(
        self, call: Call, user_id: str, type_: str, data: Doc, origin: Origin | None = None
    ) -> None:
        """Every session of the user; `here` marks the one that is their device in the call."""
        self.sink.publish_devices(user_id, type_, data, call.device_of(user_id), origin=origin)
