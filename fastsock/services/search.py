"""Message search over the rooms the user is a member of now (never rooms they left).

Only words are searched for (store/words.py: letters, digits and the marks that follow them;
every other character separates words). The store gets the list of words alone, so no backend
ever reads query syntax from a user (MongoDB's `$text` would take `-x` as "not x", `"` as a
phrase, and refuses a search made of nothing but such syntax), and a query without a word
finds nothing on either backend."""

from __future__ import annotations

from typing import Any

from fastsock.services import replies
from fastsock.services.rooms import Rooms
from fastsock.services.schemas import validate
from fastsock.store import Store
from fastsock.store.words import search_words

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
        words = search_words(q["q"])
        if not room_ids or not words:
            return {"messages": [], "has_more": False}
        docs, has_more = await self.store.messages.search(
            room_ids, words, before=q["before"], limit=q["limit"]
        )
        return {"messages": await replies.views(self.store, docs), "has_more": has_more}
