"""The `messages` collection. Messages are ordered by `_id` (ObjectId) within a room; deleted
messages stay as tombstones. `(sender_id, client_msg_id)` is unique: sends are idempotent."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

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

    async def update(self, message_id: str, expect: Doc, changes: Doc) -> Doc | None:
        """Apply `changes` if the message still matches `expect`; returns the new document."""
        return await self.coll.find_one_and_update(
            {"_id": oid(message_id), **expect},
            {"$set": changes},
            return_document=ReturnDocument.AFTER,
        )
