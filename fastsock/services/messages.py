"""Messages: send (idempotent per sender + client_msg_id), edit, delete, history and sync."""

from __future__ import annotations

import asyncio
from typing import Any

from fastsock.errors import Conflict, Forbidden, InvalidRequest, NotAMember
from fastsock.metrics import Metrics
from fastsock.services import fields
from fastsock.services.clock import now
from fastsock.services.events import EventSink, Origin
from fastsock.services.rooms import ADMIN, Rooms
from fastsock.services.schemas import validate
from fastsock.services.typing import Typing
from fastsock.services.uploads import Uploads
from fastsock.services.views import message_view
from fastsock.store import Duplicate, Store

Doc = dict[str, Any]

CALL_PREFIX = "call:"  # client_msg_id of call entries; refused in client sends


class Messages:
    def __init__(
        self,
        store: Store,
        sink: EventSink,
        rooms: Rooms,
        typing: Typing,
        uploads: Uploads,
        metrics: Metrics,
    ) -> None:
        self.uploads = uploads
        self.store = store
        self.sink = sink
        self.rooms = rooms
        self.typing = typing
        self.metrics = metrics

    async def send(self, user_id: str, data: Doc, origin: Origin | None = None) -> tuple[Doc, bool]:
        """Persist and fan out a message; (message, created). Sending the same client_msg_id
        again returns the stored message and announces nothing twice."""
        data = validate("message.send", data)
        room_id, client_msg_id = data["room_id"], data["client_msg_id"]
        if client_msg_id.startswith(CALL_PREFIX):
            raise InvalidRequest(
                f"client_msg_id must not start with {CALL_PREFIX!r}", field="client_msg_id"
            )
        await self.rooms.throttles.check("send", user_id)
        attachment_ids = list(data["attachment_ids"])
        # Independent reads, in parallel; nothing is written before all of them passed.
        _, attachments, existing = await asyncio.gather(
            self.rooms.require_member(user_id, room_id),
            self.uploads.for_message(user_id, attachment_ids),
            self.store.messages.by_client_id(user_id, client_msg_id),
        )
        if not data["text"] and not attachments:
            raise InvalidRequest("a message needs text or attachments", field="text")

        created = False
        if existing is None:
            fields = {
                "type": _message_type(attachments),
                "text": data["text"],
                "attachments": attachments,
            }
            existing, created = await self._insert(user_id, room_id, client_msg_id, fields)
            if created:
                await self.uploads.mark_attached(attachment_ids)
        if str(existing["room_id"]) != room_id:
            raise Conflict("client_msg_id was already used in another room", field="client_msg_id")
        message = message_view(existing)
        ack = {"client_msg_id": client_msg_id, "message": message}
        await self.sink.publish([user_id], "message.ack", ack, origin=origin)
        if created:
            self.metrics.messages.inc()
            await self.typing.stop(user_id, room_id)  # sending ends "is typing…" at once
        # A retry of a send that was stored but never announced (the server failed in
        # between) announces it now; a normal retry announces nothing twice.
        if not existing.get("announced", True):
            await self.uploads.mark_attached([a["id"] for a in message["attachments"]])
            await self._announce(message)
        return message, created

    async def post_call(self, call: Doc) -> Doc:
        """A finished call's entry in its room's timeline, sent by the caller; posting the
        same call again returns the stored entry."""
        client_msg_id = CALL_PREFIX + call["id"]
        existing = await self.store.messages.by_client_id(call["caller_id"], client_msg_id)
        if existing is None:
            fields = {"type": "call", "text": "", "attachments": [], "call": call}
            existing, _ = await self._insert(
                call["caller_id"], call["room_id"], client_msg_id, fields
            )
        message = message_view(existing)
        if not existing.get("announced", True):
            await self._announce(message)
        return message

    async def _insert(
        self, sender_id: str, room_id: str, client_msg_id: str, fields: Doc
    ) -> tuple[Doc, bool]:
        """Store a new message with the room's next version; (stored message, created)."""
        at = now()
        try:
            async with self.rooms.change(room_id, activity_at=at) as version:
                doc = await self.store.messages.insert(
                    {
                        "room_id": room_id,
                        "sender_id": sender_id,
                        **fields,
                        "client_msg_id": client_msg_id,
                        "created_at": at,
                        "edited_at": None,
                        "deleted": False,
                        "reactions": {},
                        "reaction_kinds": 0,
                        "version": version,
                        "announced": False,
                    }
                )
            return doc, True
        except Duplicate:  # the same send raced itself (e.g. a retry on another socket)
            raced = await self.store.messages.by_client_id(sender_id, client_msg_id)
            assert raced is not None
            return raced, False

    async def _announce(self, message: Doc) -> None:
        """Announce once: whoever flips the stored flag announces. A send racing its own
        retry (two tabs, or a resend after a reconnect) both see an unannounced message, and
        only one of them may tell the room. Flipping first leaves a crash between the flip
        and the publish unannounced live (a client's next sync still finds the message);
        announcing first would announce twice on every such race."""
        claimed = await self.store.messages.update(
            message["id"], {"announced": False}, {"announced": True}
        )
        if claimed is not None:
            await self.rooms.publish(message["room_id"], "message.new", {"message": message})

    async def edit(self, user_id: str, data: Doc) -> Doc:
        data = validate("message.edit", data)
        await self.rooms.throttles.check("send", user_id)
        message, _ = await self.visible_message(user_id, data["message_id"])
        room_id = str(message["room_id"])
        if str(message["sender_id"]) != user_id:
            raise Forbidden("only the author can edit a message")
        if message["type"] == "call":
            raise Conflict("call entries cannot be edited")
        if message["deleted"]:
            raise Conflict("the message was deleted")
        if not data["text"] and not message["attachments"]:
            raise InvalidRequest("a message needs text or attachments", field="text")
        async with self.rooms.change(room_id) as version:
            updated = await self.store.messages.update(
                data["message_id"],
                {"deleted": False},
                {"text": data["text"], "edited_at": now(), "version": version},
            )
        if updated is None:
            raise Conflict("the message was deleted")
        view = message_view(updated)
        await self.rooms.publish(room_id, "message.updated", {"message": view})
        return view

    async def delete(self, user_id: str, data: Doc) -> Doc:
        message_id = validate("message.delete", data)["message_id"]
        await self.rooms.throttles.check("send", user_id)
        message, membership = await self.visible_message(user_id, message_id)
        room_id = str(message["room_id"])
        if str(message["sender_id"]) != user_id and membership["role"] != ADMIN:
            raise Forbidden("only the author or a room admin can delete a message")
        if message["deleted"]:
            return message_view(message)
        async with self.rooms.change(room_id) as version:
            tombstone = {
                "text": "",
                "attachments": [],
                "reactions": {},
                "reaction_kinds": 0,
                "deleted": True,
                "deleted_at": now(),
                "version": version,
            }
            updated = await self.store.messages.update(message_id, {"deleted": False}, tombstone)
        if updated is None:  # deleted concurrently; that delete announced it
            updated, _ = await self.visible_message(user_id, message_id)
            return message_view(updated)
        await self.uploads.release([a["id"] for a in message.get("attachments", [])])
        await self.rooms.publish(
            room_id, "message.deleted", {"message_id": message_id, "room_id": room_id}
        )
        return message_view(updated)

    async def history(self, user_id: str, room_id: Any, query: Doc) -> Doc:
        """A page of messages newest-first, or with `changed_after=V` every message created,
        edited, deleted or reacted to since version V, oldest change first."""
        q = validate("history", query)
        room_id = fields.object_id(room_id, "room_id")  # the store compares ids as strings
        await self.rooms.require_member(user_id, room_id)
        if q["changed_after"] is not None:
            if q["before"] is not None or q["after"] is not None:
                raise InvalidRequest("changed_after cannot be combined with before/after")
            docs, has_more = await self.store.messages.changed(
                room_id, q["changed_after"], q["limit"]
            )
            return {"messages": [message_view(d) for d in docs], "has_more": has_more}
        before, after = q["before"], q["after"]
        if before is not None and after is not None and after >= before:
            raise InvalidRequest("after must be older than before", field="after")
        docs, has_more = await self.store.messages.page(
            room_id, before=before, after=after, limit=q["limit"]
        )
        return {"messages": [message_view(d) for d in docs], "has_more": has_more}

    async def visible_message(self, user_id: str, message_id: str) -> tuple[Doc, Doc]:
        """The message and the caller's membership of its room. A missing message answers
        like a message in someone else's room, so ids cannot be probed."""
        message = await self.store.messages.get(message_id)
        if message is None:
            raise NotAMember("no such message in a room you are a member of")
        membership = await self.rooms.require_member(user_id, str(message["room_id"]))
        return message, membership


def _message_type(attachments: list[Doc]) -> str:
    if not attachments:
        return "text"
    return "image" if all("width" in a for a in attachments) else "file"
