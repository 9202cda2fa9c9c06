"""The `uploads` collection: one document per stored file."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from fastsock.store.ids import oid
from fastsock.store.mongo.docs import plain, plain_all

Doc = dict[str, Any]


class Uploads:
    def __init__(self, coll: AsyncCollection[Doc]) -> None:
        self.coll = coll

    async def create_indexes(self) -> None:
        await self.coll.create_index([("owner_id", ASCENDING)])
        await self.coll.create_index([("attached", ASCENDING), ("created_at", ASCENDING)])

    async def insert(self, upload_id: str, doc: Doc) -> Doc:
        await self.coll.insert_one({**doc, "_id": oid(upload_id), "owner_id": oid(doc["owner_id"])})
        return {**doc, "_id": upload_id}

    async def get(self, upload_id: str) -> Doc | None:
        return plain(await self.coll.find_one({"_id": oid(upload_id)}))

    async def owned(self, owner_id: str, upload_ids: list[str]) -> list[Doc]:
        cursor = self.coll.find(
            {"_id": {"$in": [oid(u) for u in upload_ids]}, "owner_id": oid(owner_id)}
        )
        return plain_all(await cursor.to_list())

    async def mark(self, upload_ids: list[str], changes: Doc) -> None:
        await self.coll.update_many(
            {"_id": {"$in": [oid(u) for u in upload_ids]}}, {"$set": changes}
        )

    async def unattached_before(self, cutoff: datetime, limit: int) -> list[Doc]:
        cursor = self.coll.find({"attached": False, "created_at": {"$lt": cutoff}})
        return plain_all(await cursor.limit(limit).to_list())

    async def delete_if_unattached(self, upload_id: str) -> bool:
        doc = await self.coll.find_one_and_delete({"_id": oid(upload_id), "attached": False})
        return doc is not None

    async def update(self, upload_id: str, changes: Doc) -> Doc | None:
        return plain(
            await self.coll.find_one_and_update(
                {"_id": oid(upload_id)}, {"$set": changes}, return_document=ReturnDocument.AFTER
            )
        )
