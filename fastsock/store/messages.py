"""The `messages` collection. Messages are ordered by `_id` (ObjectId) within a room; deleted
messages stay as tombstones. `(sender_id, client_msg_id)` is unique: sends are idempotent."""

from __future__ import annotations

import contextlib
import re
from typing import Any

from pymongo import ASCENDING, DESCENDING, TEXT, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, OperationFailure

from fastsock.store.errors import Duplicate
from fastsock.store.ids import oid

Doc = dict[str, Any]


class Messages:
    def __init__(self, coll: AsyncCollection) -> None:
        self.coll = coll

    async def create_indexes(self) -> None:
        await self.coll.create_index([("room_id", ASCENDING), ("_id", DESCENDING)])
        await self.coll.create_index(
            [("sender_id", ASCENDING), ("client_msg_id", ASCENDING)], unique=True
        )
        await self.coll.create_index([("room_id", ASCENDING), ("version", ASCENDING)])
        await self.coll.create_index([("attachments.id", ASCENDING)])
        # A server without text search refuses this; search then falls back to a regex match.
        with contextlib.suppress(OperationFailure):
            await self.coll.create_index([("text", TEXT)], default_language="none")

    async def probe_text_search(self) -> bool:
        try:
            await self.coll.find({"$text": {"$search": "probe"}}).limit(1).to_list()
        except OperationFailure:
            return False
        return True

    async def insert(self, doc: Doc) -> Doc:
        doc = {**doc, "room_id": oid(doc["room_id"]), "sender_id": oid(doc["sender_id"])}
        try:
            result = await self.coll.insert_one(doc)
        except DuplicateKeyError as exc:
            raise Duplicate("client_msg_id") from exc
        return {**doc, "_id": result.inserted_id}

    async def get(self, message_id: str) -> Doc | None:
        return await self.coll.find_one({"_id": oid(message_id)})

    async def by_client_id(self, sender_id: str, client_msg_id: str) -> Doc | None:
        return await self.coll.find_one(
            {"sender_id": oid(sender_id), "client_msg_id": client_msg_id}
        )

    async def page(
        self, room_id: str, *, before: str | None, after: str | None, limit: int
    ) -> tuple[list[Doc], bool]:
        """Up to `limit` messages newest-first, and whether more lie beyond the page.

        Without `after` the page is the newest messages older than `before`; with `after` it is
        the oldest messages newer than `after` (so paging forward never skips one)."""
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
        return docs, has_more

    async def latest_visible(self, room_id: str) -> Doc | None:
        return await self.coll.find_one(
            {"room_id": oid(room_id), "deleted": False}, sort=[("_id", DESCENDING)]
        )

    async def count_unread(self, room_id: str, user_id: str, after: Any | None) -> int:
        filt: Doc = {"room_id": oid(room_id), "sender_id": {"$ne": oid(user_id)}, "deleted": False}
        if after is not None:
            filt["_id"] = {"$gt": oid(after)}
        return await self.coll.count_documents(filt)

    async def update(self, message_id: str, expect: Doc, update: Doc) -> Doc | None:
        """Apply the update operators if the message still matches `expect`; returns the new
        document, or None when it did not match."""
        return await self.coll.find_one_and_update(
            {"_id": oid(message_id), **expect}, update, return_document=ReturnDocument.AFTER
        )

    async def changed(self, room_id: str, after_version: int, limit: int) -> tuple[list[Doc], bool]:
        """Messages whose version is above `after_version`, lowest version first."""
        cursor = self.coll.find({"room_id": oid(room_id), "version": {"$gt": after_version}})
        docs = await cursor.sort("version", ASCENDING).limit(limit + 1).to_list()
        return docs[:limit], len(docs) > limit

    async def many(self, message_ids: list[str]) -> list[Doc]:
        return await self.coll.find({"_id": {"$in": [oid(m) for m in message_ids]}}).to_list()

    async def search(
        self, room_ids: list[str], query: str, *, before: str | None, limit: int, text_index: bool
    ) -> tuple[list[Doc], bool]:
        """Non-deleted messages in the rooms matching `query`, newest first. With `text_index`
        MongoDB's text search (whole words, stemmed); otherwise a case-insensitive substring
        match, for servers without text search."""
        filt: Doc = {"room_id": {"$in": [oid(r) for r in room_ids]}, "deleted": False}
        if text_index:
            filt["$text"] = {"$search": query}
        else:
            filt["text"] = {"$regex": re.escape(query), "$options": "i"}
        if before is not None:
            filt["_id"] = {"$lt": oid(before)}
        docs = await self.coll.find(filt).sort("_id", DESCENDING).limit(limit + 1).to_list()
        return docs[:limit], len(docs) > limit

    async def add_reaction(
        self, message_id: str, emoji: str, user_id: str, version: int, max_kinds: int
    ) -> Doc | None:
        """Add the user's reaction; None if it was there already, the message is deleted, or
        it would exceed `max_kinds` distinct emoji."""
        key = f"reactions.{emoji}"
        base = {"_id": oid(message_id), "deleted": False}
        for _ in range(2):  # the second round covers an emoji added by someone meanwhile
            # An emoji already on the message: join it.
            doc = await self.coll.find_one_and_update(
                {**base, key: {"$exists": True, "$ne": user_id}},
                {"$addToSet": {key: user_id}, "$set": {"version": version}},
                return_document=ReturnDocument.AFTER,
            )
            if doc is not None:
                return doc
            # A new emoji: only while under the cap (counted in reaction_kinds).
            doc = await self.coll.find_one_and_update(
                {**base, key: {"$exists": False}, "reaction_kinds": {"$lt": max_kinds}},
                {"$set": {key: [user_id], "version": version}, "$inc": {"reaction_kinds": 1}},
                return_document=ReturnDocument.AFTER,
            )
            if doc is not None:
                return doc
        return None

    async def remove_reaction(
        self, message_id: str, emoji: str, user_id: str, version: int
    ) -> Doc | None:
        """Remove the user's reaction; None if it was not there."""
        key = f"reactions.{emoji}"
        doc = await self.coll.find_one_and_update(
            {"_id": oid(message_id), "deleted": False, key: user_id},
            {"$pull": {key: user_id}, "$set": {"version": version}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is None or doc["reactions"].get(emoji):
            return doc
        # That was the last one: drop the emoji so it frees a slot.
        emptied = await self.coll.find_one_and_update(
            {"_id": oid(message_id), key: {"$size": 0}},
            {"$unset": {key: ""}, "$inc": {"reaction_kinds": -1}},
            return_document=ReturnDocument.AFTER,
        )
        return emptied or doc

    async def shares_upload(self, upload_id: str, room_ids: list[str] | None) -> bool:
        """Does a live message (in one of these rooms, if given) carry the upload?"""
        filt: Doc = {"attachments.id": upload_id, "deleted": False}
        if room_ids is not None:
            filt["room_id"] = {"$in": [oid(r) for r in room_ids]}
        return await self.coll.find_one(filt, projection={"_id": 1}) is not None
