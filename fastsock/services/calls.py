"""Calls (docs/calls.md): the one entry point the handlers and the WebSocket layer use.

1:1 calls are services/direct_calls.py, group calls services/group_calls.py; what every kind of
call shares (background work, records, timeline entries) is services/call_records.py. This
facade routes requests to the right kind and answers what concerns all of them (ICE servers, a
room's call history, whether a user is busy, shutdown).

Live calls are held by one node. With several nodes (cluster mode) any node takes the requests
and hands them to the one that holds the calls, the call leader, through a `Router`
(cluster/calls.py); the leader handles them here (`handle`, `notice`), exactly as a single
node does. Requests name what they do, and their arguments are JSON values and `Origin`s."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast

from fastsock.calls.turn import ice_servers
from fastsock.config import Settings
from fastsock.errors import Unavailable
from fastsock.metrics import Metrics
from fastsock.services import fields
from fastsock.services.call_records import CallRecords, CallWork
from fastsock.services.direct_calls import DirectCalls
from fastsock.services.events import EventSink, Origin
from fastsock.services.group_calls import GroupCalls
from fastsock.services.messages import Messages
from fastsock.services.rooms import Rooms
from fastsock.services.schemas import validate
from fastsock.services.views import call_view
from fastsock.store import Store, is_unavailable

Doc = dict[str, Any]
log = logging.getLogger("fastsock.calls")
SHUTDOWN_WAIT_S = 5.0  # for the records of the calls ended by shutdown


class Router(Protocol):
    """Where requests are handled in cluster mode: on the call leader (cluster/calls.py)."""

    async def request(self, name: str, args: list[Any]) -> Any:
        """Handled by the leader: its answer, or the ApiError it raised."""
        ...

    def notify(self, name: str, args: list[Any]) -> None:
        """Told to the leader; nothing comes back."""
        ...

    async def close(self) -> None:
        """Shutdown, once this node's calls are closed: refuse further requests."""
        ...


class Calls:
    def __init__(
        self,
        store: Store,
        sink: EventSink,
        rooms: Rooms,
        messages: Messages,
        settings: Settings,
        metrics: Metrics,
    ) -> None:
        self.store = store
        self.rooms = rooms
        self.settings = settings
        self.work = CallWork()
        self.records = CallRecords(store, rooms, messages, metrics)
        self.direct = DirectCalls(
            store,
            sink,
            rooms,
            self.records,
            self.work,
            ring_s=settings.call_ring_s,
            grace_s=settings.call_grace_s,
            metrics=metrics,
            in_group_call=lambda user_id: self.group.in_call(user_id),
        )
        self.group = GroupCalls(
            store, sink, rooms, self.records, self.work, settings, metrics, self.direct.in_call
        )
        self.router: Router | None = None  # cluster mode: set by cluster/calls.py
        workers = self.group.workers
        self._requests: dict[str, Callable[..., Awaitable[Any]]] = {
            "invite": self.direct.invite,
            "accept": self.direct.accept,
            "reject": self.direct.reject,
            "cancel": self.direct.cancel,
            "hangup": self.direct.hangup,
            "signal": self.direct.signal,
            "media_state": self.direct.media_state,
            "join": self.group.join,
            "leave": lambda user_id, data, _origin: self.group.leave(user_id, data),
            "sfu_lost": self.group.sfu_lost,
            "member_removed": self.group.member_removed,
            "worker_registered": workers.registered,
            "worker_heartbeat": workers.heartbeat,
            "worker_events": workers.events,
            "worker_gone": workers.gone,
        }
        self._notices: dict[str, Callable[..., None]] = {
            "device_left": self.direct.device_left,
            "device_joined": self.direct.device_joined,
            "device_back": self.direct.device_back,
        }
        rooms.on_member_removed.append(self.member_removed)

    # --- 1:1 calls ------------------------------------------------------------------------

    async def invite(self, user_id: str, data: Doc, origin: Origin) -> None:
        await self._request("invite", user_id, data, origin)

    async def accept(self, user_id: str, data: Doc, origin: Origin) -> Doc:
        return await self._answer("accept", user_id, data, origin)

    async def reject(self, user_id: str, data: Doc, origin: Origin) -> Doc:
        return await self._answer("reject", user_id, data, origin)

    async def cancel(self, user_id: str, data: Doc, origin: Origin) -> Doc:
        return await self._answer("cancel", user_id, data, origin)

    async def hangup(self, user_id: str, data: Doc, origin: Origin) -> Doc:
        return await self._answer("hangup", user_id, data, origin)

    async def signal(self, user_id: str, data: Doc, origin: Origin) -> Doc:
        return await self._answer("signal", user_id, data, origin)

    async def media_state(self, user_id: str, data: Doc, origin: Origin) -> Doc:
        return await self._answer("media_state", user_id, data, origin)

    # --- group calls ---------------------------------------------------------------------

    async def join(self, user_id: str, data: Doc, origin: Origin) -> None:
        await self._request("join", user_id, data, origin)

    async def leave(self, user_id: str, data: Doc, origin: Origin) -> Doc:
        return await self._answer("leave", user_id, data, origin)

    async def sfu_lost(self, user_id: str, data: Doc, origin: Origin) -> Doc:
        return await self._answer("sfu_lost", user_id, data, origin)

    async def member_removed(self, room_id: str, user_id: str) -> None:
        """A member left or was removed from a room (a `Rooms.on_member_removed` hook): out
        of its group call at once."""
        try:
            await self._request("member_removed", room_id, user_id)
        except Exception as exc:
            # No call leader to tell (cluster mode), or the database failed meanwhile. The room
            # change stands regardless; the worker's next heartbeat that still lists them
            # puts them out (GroupWorkers.heartbeat).
            if not isinstance(exc, Unavailable) and not is_unavailable(exc):
                raise
            where = {"room_id": room_id, "user_id": user_id}
            log.warning("call_member_removal_deferred", extra={"fields": where})

    # --- what SFU workers report (handlers/sfu.py) ----------------------------------------

    async def worker_registered(self, worker_id: str, data: Doc) -> Doc:
        return await self._answer("worker_registered", worker_id, data)

    async def worker_heartbeat(self, worker_id: str, data: Doc) -> Doc:
        return await self._answer("worker_heartbeat", worker_id, data)

    async def worker_events(self, worker_id: str, data: Doc) -> Doc:
        return await self._answer("worker_events", worker_id, data)

    async def worker_gone(self, worker_id: str) -> None:
        await self._request("worker_gone", worker_id)

    # --- every kind of call ---------------------------------------------------------------

    def in_call(self, user_id: str) -> bool:
        """Whether the user is busy: in a live call of any kind."""
        return self.direct.in_call(user_id) or self.group.in_call(user_id)

    async def ice_servers(self, user_id: str) -> Doc:
        """STUN/TURN servers with short-lived TURN credentials for this user."""
        await self.rooms.throttles.check("ice", user_id)
        return ice_servers(self.settings, user_id)

    async def timeline(self, user_id: str, room_id: Any, query: Doc) -> Doc:
        q = validate("calls", query)
        room_id = fields.object_id(room_id, "room_id")  # the store compares ids as strings
        await self.rooms.require_member(user_id, room_id)
        docs, has_more = await self.store.calls.page(room_id, before=q["before"], limit=q["limit"])
        return {"calls": [call_view(d) for d in docs], "has_more": has_more}

    # --- devices coming and going (from the WebSocket layer) ------------------------------

    def device_left(self, session_id: str, user_id: str) -> None:
        self._notify("device_left", session_id, user_id)

    def device_joined(self, session_id: str, user_id: str) -> None:
        self._notify("device_joined", session_id, user_id)

    def device_back(self, session_id: str, user_id: str) -> None:
        self._notify("device_back", session_id, user_id)

    async def close(self) -> None:
        """Shutdown: end every live 1:1 call (the parties are told while sockets are open),
        admit no one to group calls (they go on, on their workers), and wait for the records
        to be written. In cluster mode only the call leader has calls to end; the router then
        hands the leadership on, or has the leader end the calls of this node's devices."""
        self.group.close()
        await self.direct.close()
        await self.work.wait(SHUTDOWN_WAIT_S)
        if self.router is not None:
            await self.router.close()

    # --- where requests are handled -------------------------------------------------------

    async def handle(self, name: str, args: list[Any]) -> Any:
        """Handle a request on this node (in cluster mode, the call leader)."""
        return await self._requests[name](*args)

    def notice(self, name: str, args: list[Any]) -> None:
        """Take a notice on this node (in cluster mode, the call leader)."""
        self._notices[name](*args)

    async def _request(self, name: str, *args: Any) -> Any:
        if self.router is not None:
            return await self.router.request(name, list(args))
        return await self.handle(name, list(args))

    async def _answer(self, name: str, *args: Any) -> Doc:
        # A request whose handler answers with a document; from the call leader that is
        # decoded JSON, so its type is the protocol's word, not the checker's.
        return cast(Doc, await self._request(name, *args))

    def _notify(self, name: str, *args: Any) -> None:
        if self.router is not None:
            self.router.notify(name, list(args))
        else:
            self.notice(name, list(args))
