"""The `deliveries` collection: the first time each recipient's client confirmed a message."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from fastsock.store.ids import oid

Doc = dict[str, Any]
DUPLICATE_KEY = 11000


class Deliveries:
    def __init__(self, coll: AsyncCollection[Doc]) -> None:
        self.coll = coll

    async def create_indexes(self) -> None:
        await self.coll.create_index(
            [("message_id", ASCENDING), ("user_id", ASCENDING)], unique=True
        )

    async def record(self, user_id: str, message_ids: list[str], at: datetime) -> set[str]:
        """Record first deliveries; returns the ids that had not been recorded before."""
        if not message_ids:
            return set()  # insert_many refuses an empty batch
        docs = [
            {"message_id": oid(m), "user_id": oid(user_id), "delivered_at": at} for m in message_ids
        ]
        try:
            await self.coll.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
            seen = {e["index"] for e in errors}
            return {m for i, m in enumerate(message_ids) if i not in seen}
        return set(message_ids)

    async def for_message(self, message_id: str) -> dict[str, datetime]:
        cursor = self.coll.find({"message_id": oid(message_id)})
        return {str(d["user_id"]): d["delivered_at"] async for d in cursor}
