"""The member cache: each room's members and their roles, kept in memory so that publishing a
room event and checking a membership cost no database round trip.

Exact, not eventually right: every membership change (rooms.py, `Rooms._members_changed`)
invalidates the room's entry before anyone is told of the change, and in cluster mode the bus
invalidates it on the other nodes. A load that started before an invalidation keeps its answer
for its own caller (who asked before the change) but does not store it: the room's
generation moved on while it read. Bounded by the member slots held (an LRU of rooms)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

# A room's members, oldest first (the store's order), each with their role.
Members = Mapping[str, str]
Load = Callable[[str], Awaitable[dict[str, str]]]

# Member slots the cache holds at most (a room costs its members plus ROOM_SLOTS): about
# 100 bytes each, so some 20 MiB when full.
MAX_SLOTS = 200_000
ROOM_SLOTS = 2


@dataclass(slots=True)
class _Loading:
    """Loads of one room in flight, and how often the room was invalidated meanwhile."""

    generation: int = 0
    loads: int = 0


class MemberCache:
    def __init__(self, load: Load, max_slots: int = MAX_SLOTS) -> None:
        self._load = load
        self.max_slots = max_slots
        self.slots = 0
        self._rooms: OrderedDict[str, Members] = OrderedDict()  # least recently used first
        self._loading: dict[str, _Loading] = {}

    async def of(self, room_id: str) -> Members:
        """The room's members and their roles (empty for a room without members or no room).
        Read-only: the cache hands the same mapping to every caller."""
        members = self._rooms.get(room_id)
        if members is not None:
            self._rooms.move_to_end(room_id)
            return members
        loading = self._loading.setdefault(room_id, _Loading())
        started = loading.generation
        loading.loads += 1
        try:
            members = MappingProxyType(await self._load(room_id))
        finally:
            loading.loads -= 1
            if not loading.loads:
                del self._loading[room_id]
        # Not stored when the room changed during the read, nor when it has no members: an
        # empty answer is cheap to ask for again, and caching every id a client makes up
        # would push real rooms out.
        if loading.generation == started and members:
            self._put(room_id, members)
        return members

    def invalidate(self, room_id: str) -> None:
        """The room's members changed (or may have): forget them, and keep any read in
        flight from storing what it read before the change."""
        members = self._rooms.pop(room_id, None)
        if members is not None:
            self.slots -= len(members) + ROOM_SLOTS
        loading = self._loading.get(room_id)
        if loading is not None:
            loading.generation += 1

    def clear(self) -> None:
        """Forget every room: for a node that may have missed invalidations (cluster mode,
        after losing the bus)."""
        for room_id in list(self._rooms):
            self.invalidate(room_id)
        for loading in self._loading.values():
            loading.generation += 1

    def __len__(self) -> int:
        return len(self._rooms)

    def _put(self, room_id: str, members: Members) -> None:
        stored = self._rooms.pop(room_id, None)  # by a concurrent load of the same generation
        if stored is not None:
            self.slots -= len(stored) + ROOM_SLOTS
        self._rooms[room_id] = members
        self.slots += len(members) + ROOM_SLOTS
        while self.slots > self.max_slots and len(self._rooms) > 1:
            _, oldest = self._rooms.popitem(last=False)
            self.slots -= len(oldest) + ROOM_SLOTS
