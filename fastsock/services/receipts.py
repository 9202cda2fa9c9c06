"""Delivery and read receipts.

Delivered: a recipient's client confirms with `message.delivered`; the first confirmation per
recipient is stored and told to the sender, and the member's delivered pointer moves up to the
newest message confirmed in each room. A message counts as delivered to a member whose delivered
or read pointer is at or after it (the pointers cover earlier messages, as reading the newest
message covers the ones before it), so one room view gives every message's ticks. Read: derived
from each member's read pointer and its recent moves (no per-message writes when reading)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastsock.services import fields
from fastsock.services.clock import iso, now
from fastsock.services.events import EventSink
from fastsock.services.messages import Messages
from fastsock.services.rooms import Rooms
from fastsock.services.schemas import validate
from fastsock.services.views import delivered_pointer
from fastsock.store import Store

Doc = dict[str, Any]


class Receipts:
    def __init__(self, store: Store, sink: EventSink, rooms: Rooms, messages: Messages) -> None:
        self.store = store
        self.sink = sink
        self.rooms = rooms
        self.messages = messages

    async def delivered(self, user_id: str, data: Doc) -> Doc:
        """Record that the user's client received these messages. Ids of messages the user
        sent, cannot see, or that are deleted are ignored (a client may confirm late): they
        neither count nor move a pointer."""
        ids = validate("message.delivered", data)["message_ids"]
        await self.rooms.throttles.check("receipt", user_id)
        found = await self.store.messages.many(ids)
        my_rooms = {str(m["room_id"]) for m in await self.store.memberships.for_user(user_id)}
        eligible = {
            str(m["_id"]): m
            for m in found
            if str(m["room_id"]) in my_rooms
            and str(m["sender_id"]) != user_id
            and not m["deleted"]
            and m["type"] != "system"  # history lines need no receipts
        }
        newest: dict[str, str] = {}  # room id -> the newest message confirmed there
        for mid, m in eligible.items():
            room_id = str(m["room_id"])
            newest[room_id] = max(newest.get(room_id, mid), mid)
        at = now()
        new, _ = await asyncio.gather(
            self.store.deliveries.record(user_id, list(eligible), at),
            self.store.memberships.advance_delivered(user_id, newest, at),
        )
        await asyncio.gather(
            *(
                self.rooms.publish(
                    str(eligible[mid]["room_id"]),
                    "message.delivered",
                    {
                        "room_id": str(eligible[mid]["room_id"]),
                        "message_id": mid,
                        "user_id": user_id,
                        "delivered_at": iso(at),
                    },
                    # Only the sender hears it, and only while still in the room.
                    only={str(eligible[mid]["sender_id"])},
                )
                for mid in sorted(new)
            )
        )
        return {"message_ids": sorted(new)}

    async def for_message(self, user_id: str, message_id: Any) -> list[Doc]:
        """`[{user_id, delivered_at, read_at}]` for the message's room members other than its
        sender who were members when it was sent."""
        message_id = fields.object_id(message_id, "message_id")
        message, _ = await self.messages.visible_message(user_id, message_id)
        room_id, sender = str(message["room_id"]), str(message["sender_id"])
        members, deliveries = await asyncio.gather(
            self.store.memberships.of_room(room_id), self.store.deliveries.for_message(message_id)
        )
        receipts = []
        for member in members:
            member_id = str(member["user_id"])
            if member_id == sender or member["joined_at"] > message["created_at"]:
                continue  # who joined after it was sent never received it (their read
                # pointer starts at the newest message when they join)
            read_at = _read_at(member, message["_id"])
            delivered_at = _delivered_at(member, message["_id"], deliveries.get(member_id), read_at)
            receipts.append(
                {"user_id": member_id, "delivered_at": iso(delivered_at), "read_at": iso(read_at)}
            )
        return receipts


def _delivered_at(membership: Doc, message_id: Any, confirmed: Any, read_at: Any) -> Any:
    """The earliest of: the member's confirmation of this very message, reading it, and the
    delivered pointer passing it (the room view's rule; its time is an upper bound: the
    pointer's last move). None if none of them happened, so both answers agree."""
    pointer, moved_at = delivered_pointer(membership)
    covered = moved_at if pointer is not None and pointer >= message_id else None
    return min((t for t in (confirmed, read_at, covered) if t is not None), default=None)


def _read_at(membership: Doc, message_id: Any) -> Any:
    """When the member's read pointer first reached the message, or None if it has not. The
    log keeps the last moves; past those, the oldest remembered move is an upper bound."""
    pointer = membership.get("last_read_message_id")
    if pointer is None or pointer < message_id:
        return None
    for moved_to, at in membership.get("read_log", []):
        if moved_to >= message_id:
            return at
    return membership.get("last_read_at")  # pointer set before read logs existed
