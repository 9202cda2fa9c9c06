"""The `calls` collection: one document per call, written when it starts and when it changes
state; the live state machine is in services/calls.py."""

from __future__ import annotations

from typing import Any

from pymongo import DESCENDING
from pymongo.asynchronous.collection import AsyncCollection

from fastsock.store.ids import oid
from fastsock.store.mongo.docs import plain_all

Doc = dict[str, Any]
ID_FIELDS = ("_id", "room_id", "caller_id", "callee_id")


def _stored(doc: Doc) -> Doc:
    return {k: oid(v) if k in ID_FIELDS else v for k, v in doc.items()}


class Calls:
    def __init__(self, coll: AsyncCollection) -> None:
        self.coll = coll

    async def create_indexes(self) -> None:
        await self.coll.create_index([("room_id", DESCENDING), ("_id", DESCENDING)])

    async def insert(self, doc: Doc) -> Doc:
        await self.coll.insert_one(_stored(doc))
        return doc

    async def update(self, call_id: str, changes: Doc) -> None:
        await self.coll.update_one({"_id": oid(call_id)}, {"$set": _stored(changes)})

    async def page(self, room_id: str, *, before: str | None, limit: int) -> tuple[list[Doc], bool]:
        """Newest first; one extra document tells whether there are more."""
        query: Doc = {"room_id": oid(room_id)}
        if before is not None:
            query["_id"] = {"$lt": oid(before)}
        docs = await self.coll.find(query).sort("_id", DESCENDING).limit(limit + 1).to_list()
        return plain_all(docs[:limit]), len(docs) > limit
