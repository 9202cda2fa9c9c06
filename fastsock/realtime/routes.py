"""Client -> server WebSocket events: one entry per event type, each calling one service,
which validates `data` against the schema table (services/schemas.py).

A handler returns the data of the generic `ack` reply (sent when the frame had a `ref`), or
None when the service already replied with a specific event (`message.ack`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastsock.services import Services
from fastsock.services.events import Origin

Doc = dict[str, Any]
Route = Callable[[Services, str, Doc, Origin], Awaitable[Doc | None]]


async def message_send(s: Services, user_id: str, data: Doc, origin: Origin) -> Doc | None:
    await s.messages.send(user_id, data, origin)
    return None


async def message_edit(s: Services, user_id: str, data: Doc, origin: Origin) -> Doc | None:
    return {"message": await s.messages.edit(user_id, data)}


async def message_delete(s: Services, user_id: str, data: Doc, origin: Origin) -> Doc | None:
    return {"message": await s.messages.delete(user_id, data)}


async def message_read(s: Services, user_id: str, data: Doc, origin: Origin) -> Doc | None:
    return await s.rooms.mark_read(user_id, data)


async def message_delivered(s: Services, user_id: str, data: Doc, origin: Origin) -> Doc | None:
    return await s.receipts.delivered(user_id, data)


async def typing(s: Services, user_id: str, data: Doc, origin: Origin) -> Doc | None:
    await s.typing.update(user_id, data)
    return {}


async def reaction_add(s: Services, user_id: str, data: Doc, origin: Origin) -> Doc | None:
    return await s.reactions.add(user_id, data)


async def reaction_remove(s: Services, user_id: str, data: Doc, origin: Origin) -> Doc | None:
    return await s.reactions.remove(user_id, data)


async def call_invite(s: Services, user_id: str, data: Doc, origin: Origin) -> Doc | None:
    await s.calls.invite(user_id, data, origin)
    return None


async def call_join(s: Services, user_id: str, data: Doc, origin: Origin) -> Doc | None:
    await s.calls.join(user_id, data, origin)  # answered with call.sfu or call.unavailable
    return None


ROUTES: dict[str, Route] = {
    "message.send": message_send,
    "message.edit": message_edit,
    "message.delete": message_delete,
    "message.read": message_read,
    "message.delivered": message_delivered,
    "typing": typing,
    "reaction.add": reaction_add,
    "reaction.remove": reaction_remove,
    "call.invite": call_invite,
    "call.accept": lambda s, u, d, o: s.calls.accept(u, d, o),
    "call.reject": lambda s, u, d, o: s.calls.reject(u, d, o),
    "call.cancel": lambda s, u, d, o: s.calls.cancel(u, d, o),
    "call.hangup": lambda s, u, d, o: s.calls.hangup(u, d, o),
    "call.signal": lambda s, u, d, o: s.calls.signal(u, d, o),
    "call.media_state": lambda s, u, d, o: s.calls.media_state(u, d, o),
    "call.join": call_join,
    "call.leave": lambda s, u, d, o: s.calls.leave(u, d, o),
    "call.sfu_lost": lambda s, u, d, o: s.calls.sfu_lost(u, d, o),
}
