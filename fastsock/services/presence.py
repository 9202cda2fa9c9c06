"""Presence: who is online, announced to the people who share a room with them."""

from __future__ import annotations

from fastsock.services.events import EventSink
from fastsock.services.rooms import Rooms
from fastsock.services.typing import Typing


class Presence:
    def __init__(self, sink: EventSink, rooms: Rooms, typing: Typing) -> None:
        self.sink = sink
        self.rooms = rooms
        self.typing = typing

    async def changed(self, user_id: str, online: bool) -> None:
        """The user's first socket opened or last one closed (on this node)."""
        if await self.sink.presence_flipped(user_id, online):
            await self.announce(user_id, online)

    async def announce(self, user_id: str, online: bool) -> None:
        """The user came online or went offline (on every node together); offline ends their
        typing indicators, wherever they are held (services/typing.py)."""
        if not online:
            await self.typing.stop_all(user_id)
        contacts = await self.rooms.contacts_of(user_id)
        await self.sink.publish(contacts, "presence", {"user_id": user_id, "online": online})
