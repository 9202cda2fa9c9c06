"""Presence: who is online, announced to the people who share a room with them."""

from __future__ import annotations

from fastsock.services.events import EventSink
from fastsock.services.rooms import Rooms


class Presence:
    def __init__(self, sink: EventSink, rooms: Rooms) -> None:
        self.sink = sink
        self.rooms = rooms

    async def announce(self, user_id: str, online: bool) -> None:
        contacts = await self.rooms.contacts_of(user_id)
        await self.sink.publish(contacts, "presence", {"user_id": user_id, "online": online})
