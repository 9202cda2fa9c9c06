"""Replies: a message may answer another message of its room (`reply_to_id`, set on send and
never changed). What it quotes is read with it, so an edit or a delete of the original shows
in every reply: one batched read per page of messages (history, sync, search, the room list)."""

from __future__ import annotations

from typing import Any

from fastsock.errors import Conflict, InvalidRequest
from fastsock.services.views import message_view
from fastsock.store import Store

Doc = dict[str, Any]


async def check_original(store: Store, room_id: str, reply_to_id: str) -> None:
    """Refuse a reply to anything but a live message of this room. Another room's message
    and an unknown id answer the same, so ids cannot be probed."""
    original = await store.messages.get(reply_to_id)
    if original is None or str(original["room_id"]) != room_id:
        raise InvalidRequest("reply_to_id is no message of this room", field="reply_to_id")
    if original["type"] == "system":
        raise Conflict("room history lines cannot be replied to", field="reply_to_id")
    if original["deleted"]:
        raise Conflict("the message replied to was deleted", field="reply_to_id")


async def views(store: Store, docs: list[Doc]) -> list[Doc]:
    """The messages' views, each with what it replies to (one store call, none without
    replies)."""
    wanted = list({str(d["reply_to_id"]) for d in docs if d.get("reply_to_id")})
    originals = {str(o["_id"]): o for o in await store.messages.many(wanted)} if wanted else {}
    return [message_view(d, originals.get(str(d.get("reply_to_id")))) for d in docs]


async def view(store: Store, doc: Doc) -> Doc:
    return (await views(store, [doc]))[0]
