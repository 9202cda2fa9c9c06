"""Messages: send (idempotent per sender + client_msg_id), edit, delete, history."""

from __future__ import annotations

from typing import Any

from fastsock.errors import Conflict, Forbidden, InvalidRequest, NotAMember
from fastsock.metrics import Metrics
from fastsock.services import fields
from fastsock.services.clock import now
from fastsock.services.events import EventSink, Origin
from fastsock.services.rooms import ADMIN, Rooms
from fastsock.services.views import message_view
from fastsock.store import Duplicate, Store

Doc = dict[str, Any]

TEXT_MAX = 4000
CLIENT_MSG_ID_MAX = 64
HISTORY_DEFAULT, HISTORY_MAX = 50, 100


class Messages:
    def __init__(self, store: Store, sink: EventSink, rooms: Rooms, metrics: Metrics) -> None:
        self.store = store
        self.sink = sink
        self.rooms = rooms
        self.metrics = metrics

    async def send(self, user_id: str, data: Doc, origin: Origin | None = None) -> tuple[Doc, bool]:
        """Persist and fan out a message; (message, created). Sending the same client_msg_id
        again returns the stored message and announces nothing twice."""
        fields.only(data, {"room_id", "client_msg_id", "text"})
        room_id = fields.object_id(data.get("room_id"), "room_id")
        await self.rooms.require_member(user_id, room_id)
        client_msg_id = fields.text(
            data.get("client_msg_id"), "client_msg_id", max_len=CLIENT_MSG_ID_MAX, strip=False
        )
        text = fields.text(data.get("text"), "text", max_len=TEXT_MAX)

        existing = await self.store.messages.by_client_id(user_id, client_msg_id)
        created = False
        if existing is None:
            at = now()
            doc = {
                "room_id": room_id,
                "sender_id": user_id,
                "type": "text",
                "text": text,
                "attachments": [],
                "client_msg_id": client_msg_id,
                "created_at": at,
                "edited_at": None,
                "deleted": False,
                "reactions": {},
                "version": await self.store.rooms.next_version(room_id, activity_at=at),
            }
            try:
                existing = await self.store.messages.insert(doc)
                created = True
            except Duplicate:  # the same send raced itself (e.g. a retry on another socket)
                existing = await self.store.messages.by_client_id(user_id, client_msg_id)
                assert existing is not None
        if str(existing["room_id"]) != room_id:
            raise Conflict("client_msg_id was already used in another room", field="client_msg_id")
        message = message_view(existing)
        ack = {"client_msg_id": client_msg_id, "message": message}
        await self.sink.publish([user_id], "message.ack", ack, origin=origin)
        if created:
            self.metrics.messages.inc()
            await self.rooms.publish(room_id, "message.new", {"message": message})
        return message, created

    async def edit(self, user_id: str, message_id: Any, data: Doc) -> Doc:
        fields.only(data, {"message_id", "text"})
        message, _ = await self._visible_message(user_id, message_id)
        room_id = str(message["room_id"])
        if str(message["sender_id"]) != user_id:
            raise Forbidden("only the author can edit a message")
        text = fields.text(data.get("text"), "text", max_len=TEXT_MAX)
        if message["deleted"]:
            raise Conflict("the message was deleted")
        at = now()
        version = await self.store.rooms.next_version(room_id)
        updated = await self.store.messages.update(
            message_id, {"deleted": False}, {"text": text, "edited_at": at, "version": version}
        )
        if updated is None:
            raise Conflict("the message was deleted")
        view = message_view(updated)
        await self.rooms.publish(room_id, "message.updated", {"message": view})
        return view

    async def delete(self, user_id: str, message_id: Any) -> Doc:
        message, membership = await self._visible_message(user_id, message_id)
        room_id = str(message["room_id"])
        if str(message["sender_id"]) != user_id and membership["role"] != ADMIN:
            raise Forbidden("only the author or a room admin can delete a message")
        if message["deleted"]:
            return message_view(message)
        at = now()
        version = await self.store.rooms.next_version(room_id)
        tombstone = {
            "text": "",
            "attachments": [],
            "reactions": {},
            "deleted": True,
            "deleted_at": at,
            "version": version,
        }
        updated = await self.store.messages.update(message_id, {"deleted": False}, tombstone)
        if updated is None:  # deleted concurrently; that delete announced it
            updated, _ = await self._visible_message(user_id, message_id)
            return message_view(updated)
        await self.rooms.publish(
            room_id, "message.deleted", {"message_id": message_id, "room_id": room_id}
        )
        return message_view(updated)

    async def history(self, user_id: str, room_id: Any, query: Doc) -> Doc:
        await self.rooms.require_member(user_id, room_id)
        before = fields.optional_object_id(query.get("before"), "before")
        after = fields.optional_object_id(query.get("after"), "after")
        limit = query.get("limit")
        limit = (
            HISTORY_DEFAULT
            if limit is None
            else fields.integer(limit, "limit", low=1, high=HISTORY_MAX)
        )
        if before is not None and after is not None and after >= before:
            raise InvalidRequest("after must be older than before", field="after")
        docs, has_more = await self.store.messages.page(
            room_id, before=before, after=after, limit=limit
        )
        return {"messages": [message_view(d) for d in docs], "has_more": has_more}

    async def _visible_message(self, user_id: str, message_id: Any) -> tuple[Doc, Doc]:
        """The message and the caller's membership of its room. A missing message answers
        like a message in someone else's room, so ids cannot be probed."""
        fields.object_id(message_id, "message_id")
        message = await self.store.messages.get(message_id)
        if message is None:
            raise NotAMember("no such message in a room you are a member of")
        membership = await self.rooms.require_member(user_id, str(message["room_id"]))
        return message, membership
