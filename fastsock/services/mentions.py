"""Mentions, derived by the server from a message's text on send and on edit: `@username`
tokens resolved among the room's current members (unknown names and non-members are just
text), and `@room`, which only admins of group rooms may use, a few times an hour."""

from __future__ import annotations

import re
from typing import Any

from fastsock.errors import Forbidden
from fastsock.services.rooms import ADMIN, Rooms
from fastsock.services.schemas import RESERVED_USERNAMES
from fastsock.store import Store

Doc = dict[str, Any]

# A token: `@` not preceded by a word character or another `@` (so no e-mail addresses), then
# a username (registration's characters, any case). Trailing `.`/`-` are punctuation.
TOKEN = re.compile(r"(?<![\w@])@([a-z0-9_.-]{3,32})", re.IGNORECASE)
ROOM = "room"
MAX_MENTIONS = 50  # users per message; more: the first ones
assert ROOM in RESERVED_USERNAMES  # nobody can be called what mentions everyone

# Names looked up per message: the first ones, a few times the mentions kept (some named may
# not be members or not exist), so a text of hundreds of `@names` costs one bounded query.
MAX_LOOKUP = 4 * MAX_MENTIONS


def no_mentions() -> Doc:
    """A message's mention fields when it mentions nobody (a fresh dict each time: stored
    documents must not share it)."""
    return {"mentions": [], "mention_room": False}


def names(text: str) -> list[str]:
    """The usernames the text mentions, in text order, each once (lowercase)."""
    found: dict[str, None] = {}
    for match in TOKEN.finditer(text):
        name = match.group(1).rstrip(".-").lower()
        if len(name) >= 3:
            found[name] = None
    return list(found)


class Mentions:
    def __init__(self, store: Store, rooms: Rooms) -> None:
        self.store = store
        self.rooms = rooms

    async def of(self, user_id: str, membership: Doc, text: str, *, had_room: bool) -> Doc:
        """`{mentions, mention_room}` of a text the member sends to their room. Adding `@room`
        (on send, or an edit of a message without it: `had_room` false) by a non-admin or in a
        DM: 403; more than the `room_mention` limit: 429. An edit keeping it is not checked."""
        tokens = names(text)
        if not tokens:
            return no_mentions()
        mention_room = ROOM in tokens
        if mention_room and not had_room:
            await self._allow_room_mention(user_id, membership)
        wanted = [n for n in tokens if n != ROOM][:MAX_LOOKUP]
        mentions: list[str] = []
        if wanted:
            # Only the named accounts (the username index), kept if they are members now.
            members = await self.rooms.members.of(membership["room_id"])
            accounts = await self.store.users.by_usernames(wanted)
            by_name = {u["username"]: str(u["_id"]) for u in accounts}
            named = (by_name.get(n) for n in wanted)
            mentions = [u for u in named if u is not None and u in members][:MAX_MENTIONS]
        return {"mentions": mentions, "mention_room": mention_room}

    async def _allow_room_mention(self, user_id: str, membership: Doc) -> None:
        room = await self.store.rooms.get(membership["room_id"])
        if membership["role"] != ADMIN or room is None or room["kind"] != "group":
            raise Forbidden("only room admins can mention @room")
        await self.rooms.throttles.check("room_mention", user_id)
