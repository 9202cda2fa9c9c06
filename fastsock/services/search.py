"""Message search over the rooms the user is a member of now (never rooms they left)."""

from __future__ import annotations

from typing import Any

from fastsock.services.rooms import Rooms
from fastsock.services.schemas import validate
from fastsock.services.views import message_view
from fastsock.store import Store

Doc = dict[str, Any]


class Search:
    def __init__(self, store: Store, rooms: Rooms) -> None:
        self.store = store
        self.rooms = rooms

    async def messages(self, user_id: str, query: Doc) -> Doc:
        """Newest first; page on with `before` = the last id of a page."""
        q = validate("search", query)
        if q["room_id"] is not None:
            await self.rooms.require_member(user_id, q["room_id"])
            room_ids = [q["room_id"]]
        else:
            room_ids = [str(m["room_id"]) for m in await self.store.memberships.for_user(user_id)]
        if not room_ids:
            return {"messages": [], "has_more": False}
        docs, has_more = await self.store.messages.search(
            room_ids, q["q"], before=q["before"], limit=q["limit"]
        )
        return {"messages": [message_view(d) for d in docs], "has_more": has_more}
