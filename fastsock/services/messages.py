"""Messages: send (idempotent per sender + client_msg_id), edit, delete, history and sync."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

from fastsock.errors import Conflict, Forbidden, InvalidRequest, NotAMember
from fastsock.metrics import Metrics
from fastsock.services import fields, replies
from fastsock.services.clock import now
from fastsock.services.events import EventSink, Origin
from fastsock.services.mentions import Mentions, no_mentions
from fastsock.services.rooms import ADMIN, Rooms
from fastsock.services.schemas import validate
from fastsock.services.system_lines import SYSTEM_PREFIX
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
        self.mentions = Mentions(store, rooms)

    async def send(self, user_id: str, data: Doc, origin: Origin | None = None) -> tuple[Doc, bool]:
        """Persist and fan out a message; (message, created). Sending the same client_msg_id
        again returns the stored message and announces nothing twice."""
        data = validate("message.send", data)
        room_id, client_msg_id = data["room_id"], data["client_msg_id"]
        if client_msg_id.startswith((CALL_PREFIX, SYSTEM_PREFIX)):
            raise InvalidRequest(
                f"client_msg_id must not start with {CALL_PREFIX!r} or {SYSTEM_PREFIX!r}",
                field="client_msg_id",
            )
        await self.rooms.throttles.check("send", user_id)
        attachment_ids = list(data["attachment_ids"])
        # Independent reads, in parallel; nothing is written before all of them passed.
        membership, attachments, existing = await asyncio.gather(
            self.rooms.require_member(user_id, room_id),
            self.uploads.for_message(user_id, attachment_ids),
            self.store.messages.by_client_id(user_id, client_msg_id),
        )
        if not data["text"] and not attachments:
            raise InvalidRequest("a message needs text or attachments", field="text")

        created = False
        if existing is None:
            reply_to_id = data["reply_to_id"]
            if reply_to_id is not None:
                await replies.check_original(self.store, room_id, reply_to_id)
            fields = {
                "type": _message_type(attachments),
                "text": data["text"],
                "attachments": attachments,
                **await self.mentions.of(user_id, membership, data["text"], had_room=False),
                "reply_to_id": reply_to_id,
            }
            existing, created = await self._insert(user_id, room_id, client_msg_id, fields)
            if created:
                await self.uploads.mark_attached(attachment_ids)
        if str(existing["room_id"]) != room_id:
            raise Conflict("client_msg_id was already used in another room", field="client_msg_id")
        message = await replies.view(self.store, existing)
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

    async def post_system(self, room_id: str, actor_id: str, system: Doc) -> None:
        """A room history line (services/system_lines.py), sent by who acted: to the room's
        members at the time, as any message."""
        fields = {"type": "system", "text": "", "attachments": [], "system": system}
        doc, _ = await self._insert(actor_id, room_id, SYSTEM_PREFIX + uuid4().hex, fields)
        await self._announce(message_view(doc))

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
        if claimed is None:
            return
        room_id = message["room_id"]
        await self.rooms.publish(room_id, "message.new", {"message": message})
        if message["type"] != "system":  # history lines never count as unread
            await self._recount(room_id, message["sender_id"])

    async def _recount(self, room_id: str, sender_id: str, users: set[str] | None = None) -> None:
        """A countable message was stored, deleted or its mentions changed: its room's members
        but the sender (or only `users` of them) are told their counts, coalesced as for new
        messages."""
        members = await self.rooms.members.of(room_id)
        told = [u for u in members if u != sender_id and (users is None or u in users)]
        self.rooms.unread.message_stored(room_id, told)

    async def edit(self, user_id: str, data: Doc) -> Doc:
        data = validate("message.edit", data)
        await self.rooms.throttles.check("send", user_id)
        message, membership = await self.visible_message(user_id, data["message_id"])
        room_id = str(message["room_id"])
        if message["type"] == "system":
            raise Conflict("room history lines cannot be changed")
        if str(message["sender_id"]) != user_id:
            raise Forbidden("only the author can edit a message")
        if message["type"] == "call":
            raise Conflict("call entries cannot be edited")
        if message["deleted"]:
            raise Conflict("the message was deleted")
        if not data["text"] and not message["attachments"]:
            raise InvalidRequest("a message needs text or attachments", field="text")
        # Mentions follow the new text (an `@room` it adds is checked as on send); an edit
        # notifies nobody again.
        had_room = bool(message.get("mention_room"))
        mentions = await self.mentions.of(user_id, membership, data["text"], had_room=had_room)
        async with self.rooms.change(room_id) as version:
            updated = await self.store.messages.update(
                data["message_id"],
                {"deleted": False},
                {"text": data["text"], **mentions, "edited_at": now(), "version": version},
            )
        if updated is None:
            raise Conflict("the message was deleted")
        view = await replies.view(self.store, updated)
        await self.rooms.publish(room_id, "message.updated", {"message": view})
        # Mention counts follow the text: whoever was named or unnamed (everyone, for `@room`)
        # hears their counts; the edit itself notifies nobody.
        if had_room != mentions["mention_room"]:
            await self._recount(room_id, user_id)
        elif changed := set(message.get("mentions") or []) ^ set(mentions["mentions"]):
            await self._recount(room_id, user_id, changed)
        return view

    async def delete(self, user_id: str, data: Doc) -> Doc:
        message_id = validate("message.delete", data)["message_id"]
        await self.rooms.throttles.check("send", user_id)
        message, membership = await self.visible_message(user_id, message_id)
        room_id = str(message["room_id"])
        if message["type"] == "system":
            raise Conflict("room history lines cannot be changed")
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
                **no_mentions(),
                "reply_to_id": None,
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
        await self._recount(room_id, str(message["sender_id"]))  # it counted for the others
        return message_view(updated)

    async def history(self, user_id: str, room_id: Any, query: Doc) -> Doc:
        """A page of messages newest-first, or with `changed_after=V` every message created,
        edited, deleted or reacted to since version V, oldest change first, or with
        `around=ID` the message and those around it (`has_newer` too)."""
        q = validate("history", query)
        room_id = fields.object_id(room_id, "room_id")  # the store compares ids as strings
        await self.rooms.require_member(user_id, room_id)
        if q["around"] is not None:
            if any(q[k] is not None for k in ("before", "after", "changed_after")):
                raise InvalidRequest(
                    "around cannot be combined with before/after/changed_after", field="around"
                )
            return await self._around(room_id, q["around"], q["limit"])
        if q["changed_after"] is not None:
            if q["before"] is not None or q["after"] is not None:
                raise InvalidRequest("changed_after cannot be combined with before/after")
            docs, has_more = await self.store.messages.changed(
                room_id, q["changed_after"], q["limit"]
            )
            return await self._page(docs, has_more)
        before, after = q["before"], q["after"]
        if before is not None and after is not None and after >= before:
            raise InvalidRequest("after must be older than before", field="after")
        docs, has_more = await self.store.messages.page(
            room_id, before=before, after=after, limit=q["limit"]
        )
        return await self._page(docs, has_more)

    async def _around(self, room_id: str, message_id: str, limit: int) -> Doc:
        """The message, up to limit/2 older ones and the rest newer, newest first (a reply's
        original far back in the room). Another room's message answers like no message."""
        target = await self.store.messages.get(message_id)
        if target is None or str(target["room_id"]) != room_id:
            raise InvalidRequest("around is no message of this room", field="around")
        older_n = limit // 2
        newer_n = limit - 1 - older_n  # a page of 0 still says whether there are more
        (older, has_more), (newer, has_newer) = await asyncio.gather(
            self.store.messages.page(room_id, before=message_id, after=None, limit=older_n),
            self.store.messages.page(room_id, before=None, after=message_id, limit=newer_n),
        )
        page = await self._page([*newer, target, *older], has_more)
        return {**page, "has_newer": has_newer}

    async def _page(self, docs: list[Doc], has_more: bool) -> Doc:
        return {"messages": await replies.views(self.store, docs), "has_more": has_more}

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
