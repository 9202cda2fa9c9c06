"""Reactions: one emoji per (user, message), idempotent add/remove, a bounded number of
distinct emoji per message. Every change goes to the room as `reaction.updated` with the
message's full reaction map, so concurrent updates converge on every client."""

from __future__ import annotations

from typing import Any

from fastsock.errors import Conflict
from fastsock.services.messages import Messages
from fastsock.services.rooms import Rooms
from fastsock.services.schemas import validate
from fastsock.store import Store

Doc = dict[str, Any]

MAX_KINDS = 20  # distinct emoji on one message


class Reactions:
    def __init__(self, store: Store, rooms: Rooms, messages: Messages) -> None:
        self.store = store
        self.rooms = rooms
        self.messages = messages

    async def add(self, user_id: str, data: Doc) -> Doc:
        return await self._change(user_id, validate("reaction.add", data), add=True)

    async def remove(self, user_id: str, data: Doc) -> Doc:
        return await self._change(user_id, validate("reaction.remove", data), add=False)

    async def _change(self, user_id: str, data: Doc, *, add: bool) -> Doc:
        message_id, emoji = data["message_id"], data["emoji"]
        await self.rooms.throttles.check("reaction", user_id)
        message, _ = await self.messages.visible_message(user_id, message_id)
        if message["deleted"]:
            raise Conflict("the message was deleted")
        if message["type"] == "system":
            raise Conflict("room history lines cannot be reacted to")
        room_id = str(message["room_id"])
        async with self.rooms.change(room_id) as version:
            store = self.store.messages
            updated = await (
                store.add_reaction(message_id, emoji, user_id, version, MAX_KINDS)
                if add
                else store.remove_reaction(message_id, emoji, user_id, version)
            )
        if updated is None:  # no change: already so, or refused
            current = await self.store.messages.get(message_id)
            assert current is not None
            has = user_id in current.get("reactions", {}).get(emoji, [])
            if add and not has and not current["deleted"]:
                raise Conflict(f"a message holds at most {MAX_KINDS} different reactions")
            return _view(current)
        view = _view(updated)
        await self.rooms.publish(room_id, "reaction.updated", view)
        return view


def _view(doc: Doc) -> Doc:
    return {
        "message_id": str(doc["_id"]),
        "room_id": str(doc["room_id"]),
        "reactions": doc.get("reactions", {}),
        "version": doc["version"],
    }
