"""The `messages` collection. Messages are ordered by `_id` (ObjectId) within a room; deleted
messages stay as tombstones. `(sender_id, client_msg_id)` is unique: sends are idempotent.

Reactions are stored as `reactions: [{emoji, user_ids}]`, never with emoji as field names (a
field path cannot hold every emoji safely, and stores differ on non-ASCII paths); the contract's
`{emoji: [user_ids]}` map is built on the way out."""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any, overload

from pymongo import ASCENDING, DESCENDING, TEXT, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, OperationFailure

from fastsock.store.base import UNREAD_WINDOW, Duplicate
from fastsock.store.ids import oid
from fastsock.store.mongo.docs import plain

Doc = dict[str, Any]
AFTER = ReturnDocument.AFTER


def stored_reactions(reactions: dict[str, list[str]]) -> list[Doc]:
    return [{"emoji": e, "user_ids": list(u)} for e, u in reactions.items()]


@overload
def message_out(doc: Doc) -> Doc: ...
@overload
def message_out(doc: Doc | None) -> Doc | None: ...
def message_out(doc: Doc | None) -> Doc | None:
    out = plain(doc)
    if out is not None:
        out["reactions"] = {r["emoji"]: r["user_ids"] for r in out.get("reactions") or []}
    return out


def messages_out(docs: list[Doc]) -> list[Doc]:
    return [message_out(d) for d in docs]


MEMBERSHIPS = "memberships"  # the collection unread_counts reads the read pointers from


def _live(room_id: str) -> Doc:
    return {"room_id": oid(room_id), "deleted": False}


def _newer(user_id: str, after: str | None) -> Doc:
    """Messages a member has not read: after their pointer (all without one), by others."""
    newer: Doc = {"sender_id": {"$ne": oid(user_id)}}
    if after is not None:
        newer["_id"] = {"$gt": oid(after)}
    return newer


def _window(room_id: str) -> list[Doc]:
    """The room's newest UNREAD_WINDOW messages that count (no history lines), newest first."""
    countable = {**_live(room_id), "type": {"$ne": "system"}}
    return [{"$match": countable}, {"$sort": {"_id": -1}}, {"$limit": UNREAD_WINDOW}]


class Messages:
    def __init__(self, coll: AsyncCollection[Doc]) -> None:
        self.coll = coll
        self.text_search = False  # set by create_indexes: does the server do $text?

    async def create_indexes(self) -> None:
        await self.coll.create_index([("room_id", ASCENDING), ("_id", DESCENDING)])
        await self.coll.create_index(
            [("sender_id", ASCENDING), ("client_msg_id", ASCENDING)], unique=True
        )
        await self.coll.create_index([("room_id", ASCENDING), ("version", ASCENDING)])
        await self.coll.create_index([("attachments.id", ASCENDING)])
        # Mention counts (unread_counts, summaries): who is named, and `@room`.
        await self.coll.create_index(
            [("mentions", ASCENDING), ("room_id", ASCENDING), ("_id", ASCENDING)]
        )
        await self.coll.create_index(
            [("room_id", ASCENDING), ("mention_room", ASCENDING), ("_id", ASCENDING)]
        )
        # A server without text search refuses this; search then falls back to a regex match.
        with contextlib.suppress(OperationFailure):
            await self.coll.create_index([("text", TEXT)], default_language="none")
        self.text_search = await self._probe_text_search()

    async def _probe_text_search(self) -> bool:
        try:
            await self.coll.find({"$text": {"$search": "probe"}}).limit(1).to_list()
        except OperationFailure:
            return False
        return True

    async def insert(self, doc: Doc) -> Doc:
        stored = {
            **doc,
            "room_id": oid(doc["room_id"]),
            "sender_id": oid(doc["sender_id"]),
            "reactions": stored_reactions(doc.get("reactions", {})),
        }
        # Message references are ObjectIds like every other id (transfer ID_FIELDS); only
        # `mentions` holds user id strings, for the `$toString` join of unread_counts.
        if doc.get("reply_to_id") is not None:
            stored["reply_to_id"] = oid(doc["reply_to_id"])
        try:
            result = await self.coll.insert_one(stored)
        except DuplicateKeyError as exc:
            raise Duplicate("client_msg_id") from exc
        return {**doc, "_id": str(result.inserted_id)}

    async def get(self, message_id: str) -> Doc | None:
        return message_out(await self.coll.find_one({"_id": oid(message_id)}))

    async def by_client_id(self, sender_id: str, client_msg_id: str) -> Doc | None:
        return message_out(
            await self.coll.find_one({"sender_id": oid(sender_id), "client_msg_id": client_msg_id})
        )

    async def page(
        self, room_id: str, *, before: str | None, after: str | None, limit: int
    ) -> tuple[list[Doc], bool]:
        filt: Doc = {"room_id": oid(room_id)}
        id_range: Doc = {}
        if before is not None:
            id_range["$lt"] = oid(before)
        if after is not None:
            id_range["$gt"] = oid(after)
        if id_range:
            filt["_id"] = id_range
        direction = ASCENDING if after is not None else DESCENDING
        docs = await self.coll.find(filt).sort("_id", direction).limit(limit + 1).to_list()
        has_more = len(docs) > limit
        docs = docs[:limit]
        if direction == ASCENDING:
            docs.reverse()
        return messages_out(docs), has_more

    async def latest_visible(self, room_id: str) -> Doc | None:
        return message_out(
            await self.coll.find_one(
                {"room_id": oid(room_id), "deleted": False}, sort=[("_id", DESCENDING)]
            )
        )

    async def count_unread(self, room_id: str, user_id: str, after: str | None) -> int:
        """The window's count alone (no mention count: its caller only asks "any unread?")."""
        pipeline = [*_window(room_id), {"$match": _newer(user_id, after)}, {"$count": "n"}]
        found = await (await self.coll.aggregate(pipeline)).to_list()
        return found[0]["n"] if found else 0

    async def _counts(self, room_id: str, user_id: str, after: str | None) -> tuple[int, int]:
        """One member's counts, as unread_counts makes them for many, in one aggregation: the
        window's count, then (`$unionWith`, on the mention indexes) the mentioning count."""
        newer = _newer(user_id, after)
        mentioning = {
            **_live(room_id),
            **newer,
            "$or": [{"mention_room": True}, {"mentions": user_id}],
        }
        pipeline = [
            *_window(room_id),
            {"$match": newer},
            {"$count": "unread"},
            {
                "$unionWith": {
                    "coll": self.coll.name,
                    "pipeline": [{"$match": mentioning}, {"$count": "mentions"}],
                }
            },
        ]
        found = await (await self.coll.aggregate(pipeline)).to_list()
        n = {k: v for doc in found for k, v in doc.items() if k in ("unread", "mentions")}
        return n.get("unread", 0), n.get("mentions", 0)

    async def unread_counts(self, room_id: str, user_ids: list[str]) -> dict[str, tuple[int, int]]:
        """One aggregation over the room's memberships (the (user_id, room_id) index), each
        counting within its own unread range: the window of the (room_id, _id) index, the
        messages naming the member (the (mentions, room_id, _id) index) and those with `@room`
        (the (room_id, mention_room, _id) index)."""
        if not user_ids:
            return {}
        mine: Doc = {
            "$match": {
                "$expr": {
                    "$and": [
                        {"$ne": ["$sender_id", "$$user"]},
                        {"$gt": ["$_id", "$$after"]},  # no pointer (null) is below every id
                    ]
                }
            }
        }
        let = {"user": "$user_id", "after": "$last_read_message_id"}
        live = _live(room_id)

        def lookup(into: str, stages: list[Doc], **join: str) -> Doc:
            spec = {"from": self.coll.name, "let": let, "as": into, **join}
            return {"$lookup": {**spec, "pipeline": [*stages, mine, {"$count": "n"}]}}

        pipeline: list[Doc] = [
            {"$match": {"room_id": oid(room_id), "user_id": {"$in": [oid(u) for u in user_ids]}}},
            {"$addFields": {"name": {"$toString": "$user_id"}}},  # as `mentions` holds ids
            lookup("unread", _window(room_id)),
            # Messages naming the member (the mentions index), then those with `@room`.
            lookup(
                "named",
                [{"$match": {**live, "mention_room": {"$ne": True}}}],
                localField="name",
                foreignField="mentions",
            ),
            lookup("everyone", [{"$match": {**live, "mention_room": True}}]),
        ]
        out: dict[str, tuple[int, int]] = {}
        async for doc in await self.coll.database[MEMBERSHIPS].aggregate(pipeline):
            n = {k: doc[k][0]["n"] if doc[k] else 0 for k in ("unread", "named", "everyone")}
            out[str(doc["user_id"])] = (n["unread"], n["named"] + n["everyone"])
        return out

    async def summaries(
        self, user_id: str, read_pointers: dict[str, str | None]
    ) -> dict[str, tuple[int, int, Doc | None]]:
        """One counting aggregation and one find per room, all in flight together (each
        served by the (room_id, _id) and mention indexes, as on their own)."""
        rooms = list(read_pointers.items())
        counts, latest = await asyncio.gather(
            asyncio.gather(*(self._counts(r, user_id, after) for r, after in rooms)),
            asyncio.gather(*(self.latest_visible(r) for r, _ in rooms)),
        )
        return {str(r): (*n, doc) for (r, _), n, doc in zip(rooms, counts, latest, strict=True)}

    async def update(self, message_id: str, expect: Doc, changes: Doc) -> Doc | None:
        if "reactions" in changes:
            changes = {**changes, "reactions": stored_reactions(changes["reactions"])}
        doc = await self.coll.find_one_and_update(
            {"_id": oid(message_id), **expect}, {"$set": changes}, return_document=AFTER
        )
        return message_out(doc)

    async def changed(self, room_id: str, after_version: int, limit: int) -> tuple[list[Doc], bool]:
        """Messages whose version is above `after_version`, lowest version first."""
        cursor = self.coll.find({"room_id": oid(room_id), "version": {"$gt": after_version}})
        docs = await cursor.sort("version", ASCENDING).limit(limit + 1).to_list()
        return messages_out(docs[:limit]), len(docs) > limit

    async def many(self, message_ids: list[str]) -> list[Doc]:
        docs = await self.coll.find({"_id": {"$in": [oid(m) for m in message_ids]}}).to_list()
        return messages_out(docs)

    async def search(
        self, room_ids: list[str], words: list[str], *, before: str | None, limit: int
    ) -> tuple[list[Doc], bool]:
        """With a text index MongoDB's text search (whole words, any of them). Otherwise (a
        server without text search) each word is a case-insensitive substring and all must
        match: "e-mail", searched as `e` and `mail`, still finds "e-mail"."""
        if not room_ids or not words:
            return [], False
        filt: Doc = {"room_id": {"$in": [oid(r) for r in room_ids]}, "deleted": False}
        if self.text_search:
            filt["$text"] = {"$search": " ".join(words)}
        else:
            filt["$and"] = [{"text": {"$regex": re.escape(w), "$options": "i"}} for w in words]
        if before is not None:
            filt["_id"] = {"$lt": oid(before)}
        docs = await self.coll.find(filt).sort("_id", DESCENDING).limit(limit + 1).to_list()
        return messages_out(docs[:limit]), len(docs) > limit

    async def add_reaction(
        self, message_id: str, emoji: str, user_id: str, version: int, max_kinds: int
    ) -> Doc | None:
        base = {"_id": oid(message_id), "deleted": False}
        joinable = {"$elemMatch": {"emoji": emoji, "user_ids": {"$ne": user_id}}}
        for _ in range(2):  # the second round covers an emoji added by someone meanwhile
            # An emoji already on the message: join it.
            doc = await self.coll.find_one_and_update(
                {**base, "reactions": joinable},
                {"$push": {"reactions.$.user_ids": user_id}, "$set": {"version": version}},
                return_document=AFTER,
            )
            if doc is not None:
                return message_out(doc)
            # A new emoji: only while under the cap (counted in reaction_kinds).
            doc = await self.coll.find_one_and_update(
                {**base, "reactions.emoji": {"$ne": emoji}, "reaction_kinds": {"$lt": max_kinds}},
                {
                    "$push": {"reactions": {"emoji": emoji, "user_ids": [user_id]}},
                    "$set": {"version": version},
                    "$inc": {"reaction_kinds": 1},
                },
                return_document=AFTER,
            )
            if doc is not None:
                return message_out(doc)
        return None

    async def remove_reaction(
        self, message_id: str, emoji: str, user_id: str, version: int
    ) -> Doc | None:
        doc = await self.coll.find_one_and_update(
            {
                "_id": oid(message_id),
                "deleted": False,
                "reactions": {"$elemMatch": {"emoji": emoji, "user_ids": user_id}},
            },
            {"$pull": {"reactions.$.user_ids": user_id}, "$set": {"version": version}},
            return_document=AFTER,
        )
        out = message_out(doc)
        if out is None or out["reactions"].get(emoji):
            return out
        # That was the last one: drop the emoji so it frees a slot.
        emptied = await self.coll.find_one_and_update(
            {"_id": oid(message_id), "reactions": {"$elemMatch": {"emoji": emoji, "user_ids": []}}},
            {"$pull": {"reactions": {"emoji": emoji}}, "$inc": {"reaction_kinds": -1}},
            return_document=AFTER,
        )
        return message_out(emptied) if emptied is not None else out

    async def shares_upload(self, upload_id: str, room_ids: list[str] | None) -> bool:
        """Does a live message (in one of these rooms, if given) carry the upload?"""
        filt: Doc = {"attachments.id": upload_id, "deleted": False}
        if room_ids is not None:
            filt["room_id"] = {"$in": [oid(r) for r in room_ids]}
        return await self.coll.find_one(filt, projection={"_id": 1}) is not None
