"""Client -> server WebSocket events: one entry per event type, each calling one service.

A handler returns the data of the generic `ack` reply (sent when the frame had a `ref`), or
None when the service already replied with a specific event (`message.ack`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastsock.services import Services, fields
from fastsock.services.events import Origin

Doc = dict[str, Any]
Route = Callable[[Services, str, Doc, Origin], Awaitable[Doc | None]]


async def message_send(s: Services, user_id: str, data: Doc, origin: Origin) -> Doc | None:
    await s.messages.send(user_id, data, origin)
    return None


async def message_edit(s: Services, user_id: str, data: Doc, origin: Origin) -> Doc | None:
    return {"message": await s.messages.edit(user_id, data.get("message_id"), data)}


async def message_delete(s: Services, user_id: str, data: Doc, origin: Origin) -> Doc | None:
    fields.only(data, {"message_id"})
    return {"message": await s.messages.delete(user_id, data.get("message_id"))}


async def message_read(s: Services, user_id: str, data: Doc, origin: Origin) -> Doc | None:
    return await s.rooms.mark_read(user_id, data.get("room_id"), data)


ROUTES: dict[str, Route] = {
    "message.send": message_send,
    "message.edit": message_edit,
    "message.delete": message_delete,
    "message.read": message_read,
}
