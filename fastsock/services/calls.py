"""Calls (docs/calls.md): the one entry point the handlers and the WebSocket layer use.

1:1 calls are services/direct_calls.py, group calls services/group_calls.py; what every kind of
call shares (background work, records, timeline entries) is services/call_records.py. This
facade routes requests to the right kind and answers what concerns all of them (ICE servers, a
room's call history, whether a user is busy, shutdown)."""

from __future__ import annotations

from typing import Any

from fastsock.calls.turn import ice_servers
from fastsock.config import Settings
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
from fastsock.store import Store

Doc = dict[str, Any]
SHUTDOWN_WAIT_S = 5.0  # for the records of the calls ended by shutdown


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

    # --- 1:1 calls ------------------------------------------------------------------------

    async def invite(self, user_id: str, data: Doc, origin: Origin) -> None:
        await self.direct.invite(user_id, data, origin)

    async def accept(self, user_id: str, data: Doc, origin: Origin) -> Doc:
        return await self.direct.accept(user_id, data, origin)

    async def reject(self, user_id: str, data: Doc, origin: Origin) -> Doc:
        return await self.direct.reject(user_id, data, origin)

    async def cancel(self, user_id: str, data: Doc, origin: Origin) -> Doc:
        return await self.direct.cancel(user_id, data, origin)

    async def hangup(self, user_id: str, data: Doc, origin: Origin) -> Doc:
        return await self.direct.hangup(user_id, data, origin)

    async def signal(self, user_id: str, data: Doc, origin: Origin) -> Doc:
        return await self.direct.signal(user_id, data, origin)

    async def media_state(self, user_id: str, data: Doc, origin: Origin) -> Doc:
        return await self.direct.media_state(user_id, data, origin)

    # --- group calls ---------------------------------------------------------------------

    async def join(self, user_id: str, data: Doc, origin: Origin) -> None:
        await self.group.join(user_id, data, origin)

    async def leave(self, user_id: str, data: Doc, origin: Origin) -> Doc:
        return await self.group.leave(user_id, data)

    async def sfu_lost(self, user_id: str, data: Doc, origin: Origin) -> Doc:
        return await self.group.sfu_lost(user_id, data, origin)

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
        self.direct.device_left(session_id, user_id)

    def device_joined(self, session_id: str, user_id: str) -> None:
        self.direct.device_joined(session_id, user_id)

    def device_back(self, session_id: str, user_id: str) -> None:
        self.direct.device_back(session_id, user_id)

    async def close(self) -> None:
        """Shutdown: end every live 1:1 call (the parties are told while sockets are open),
        admit no one to group calls (they go on, on their workers), and wait for the records
        to be written."""
        self.group.close()
        await self.direct.close()
        await self.work.wait(SHUTDOWN_WAIT_S)
