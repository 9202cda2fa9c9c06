"""The `sfu_workers` collection: the SFU worker registry, one document per registered worker
(`_id` is the worker's id as a string). Ephemeral (not in COLLECTIONS, so `fastsock migrate`
leaves it out): workers register again. Lost entries are deleted by `prune`, which the
sweeper calls, as on SQLite (no TTL index: one rule on both backends)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from fastsock.store.base import worker_load
from fastsock.store.mongo.docs import plain, plain_all

Doc = dict[str, Any]
UP, LOST = "up", "lost"


class SfuWorkers:
    def __init__(self, coll: AsyncCollection[Doc]) -> None:
        self.coll = coll

    async def create_indexes(self) -> None:
        await self.coll.create_index([("state", ASCENDING), ("heartbeat_at", ASCENDING)])

    async def upsert(self, doc: Doc) -> Doc:
        stored = {**doc, "_id": str(doc["_id"])}
        await self.coll.replace_one({"_id": stored["_id"]}, stored, upsert=True)
        return stored

    async def get(self, worker_id: str) -> Doc | None:
        return plain(await self.coll.find_one({"_id": str(worker_id)}))

    async def heartbeat(self, worker_id: str, fields: Doc, at: datetime) -> Doc | None:
        changes = {**worker_load(fields), "heartbeat_at": at, "pending": 0}
        return plain(
            await self.coll.find_one_and_update(
                {"_id": str(worker_id), "state": UP},
                {"$set": changes},
                return_document=ReturnDocument.AFTER,
            )
        )

    async def live(self) -> list[Doc]:
        return plain_all(await self.coll.find({"state": UP}).sort("_id", ASCENDING).to_list())

    async def reserve(self, worker_id: str) -> None:
        await self.coll.update_one({"_id": str(worker_id), "state": UP}, {"$inc": {"pending": 1}})

    async def mark_lost(self, worker_id: str, heartbeat_before: datetime) -> bool:
        result = await self.coll.update_one(
            {"_id": str(worker_id), "state": UP, "heartbeat_at": {"$lt": heartbeat_before}},
            {"$set": {"state": LOST}},
        )
        return result.modified_count == 1

    async def remove(self, worker_id: str) -> bool:
        return (await self.coll.delete_one({"_id": str(worker_id)})).deleted_count == 1

    async def prune(self, before: datetime) -> int:
        result = await self.coll.delete_many({"state": LOST, "heartbeat_at": {"$lt": before}})
        return result.deleted_count
