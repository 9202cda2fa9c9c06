"""The `rooms` collection: groups and direct messages.

A direct message room carries `dm_key` (the two user ids, sorted) under a unique index, which is
what makes get-or-create idempotent even when both users start the DM at the same moment."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from fastsock.store.errors import Duplicate
from fastsock.store.ids import oid

Doc = dict[str, Any]


class Rooms:
    def __init__(self, coll: AsyncCollection) -> None:
        self.coll = coll

    async def create_indexes(self) -> None:
        await self.coll.create_index(
            [("dm_key", ASCENDING)],
            unique=True,
            partialFilterExpression={"dm_key": {"$type": "string"}},
        )
        await self.coll.create_index([("kind", ASCENDING), ("private", ASCENDING)])

    async def insert(self, doc: Doc) -> Doc:
        doc = {**doc, "created_by": oid(doc["created_by"])}
        try:
            result = await self.coll.insert_one(doc)
        except DuplicateKeyError as exc:
            raise Duplicate("dm_key") from exc
        return {**doc, "_id": result.inserted_id}

    async def get(self, room_id: str) -> Doc | None:
        return await self.coll.find_one({"_id": oid(room_id)})

    async def by_dm_key(self, dm_key: str) -> Doc | None:
        return await self.coll.find_one({"dm_key": dm_key})

    async def many(self, room_ids: Iterable[str]) -> list[Doc]:
        return await self.coll.find({"_id": {"$in": [oid(r) for r in room_ids]}}).to_list()

    async def public(self, query: str, limit: int) -> list[Doc]:
        filt: Doc = {"kind": "group", "private": False}
        if query:
            filt["name"] = {"$regex": re.escape(query), "$options": "i"}
        cursor = self.coll.find(filt).sort("last_activity_at", DESCENDING).limit(limit)
        return await cursor.to_list()

    async def update(self, room_id: str, changes: Doc) -> Doc | None:
        return await self.coll.find_one_and_update(
            {"_id": oid(room_id)}, {"$set": changes}, return_document=ReturnDocument.AFTER
        )

    async def next_version(self, room_id: str, activity_at: datetime | None = None) -> int:
        """Count one change in the room; returns the room's new version. `activity_at` (new
        messages only) also moves the room up the members' room lists."""
        update: Doc = {"$inc": {"version": 1}}
        if activity_at is not None:
            update["$set"] = {"last_activity_at": activity_at}
        doc = await self.coll.find_one_and_update(
            {"_id": oid(room_id)},
            update,
            projection={"version": 1},
            return_document=ReturnDocument.AFTER,
        )
        return int(doc["version"]) if doc else 0
