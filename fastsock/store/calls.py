"""The `calls` collection: one document per call, written when it starts and when it changes
state; the live state machine is in services/calls.py."""

from __future__ import annotations

from typing import Any

from pymongo import DESCENDING
from pymongo.asynchronous.collection import AsyncCollection

from fastsock.store.ids import oid

Doc = dict[str, Any]


class Calls:
    def __init__(self, coll: AsyncCollection) -> None:
        self.coll = coll

    async def create_indexes(self) -> None:
        await self.coll.create_index([("room_id", DESCENDING), ("_id", DESCENDING)])

    async def insert(self, doc: Doc) -> Doc:
        result = await self.coll.insert_one(doc)
        return {**doc, "_id": result.inserted_id}

    async def update(self, call_id: Any, changes: Doc) -> None:
        await self.coll.update_one({"_id": call_id}, {"$set": changes})

    async def page(self, room_id: str, *, before: str | None, limit: int) -> tuple[list[Doc], bool]:
        """Newest first; one extra document tells whether there are more."""
        query: Doc = {"room_id": oid(room_id)}
        if before is not None:
            query["_id"] = {"$lt": oid(before)}
        docs = await self.coll.find(query).sort("_id", DESCENDING).limit(limit + 1).to_list()
        return docs[:limit], len(docs) > limit
