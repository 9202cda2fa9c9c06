"""The `memberships` collection: who is in which room, their role, their read pointer and
their delivered pointer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection

from fastsock.store.base import READ_LOG_MAX
from fastsock.store.ids import oid
from fastsock.store.mongo.docs import plain, plain_all

Doc = dict[str, Any]
# Oldest member first; the user id breaks ties the same way on every backend.
JOINING_ORDER = [("joined_at", ASCENDING), ("user_id", ASCENDING)]


def new_membership(room_id: str, user_id: str, role: str, at: datetime) -> Doc:
    return {
        "user_id": oid(user_id),
        "room_id": oid(room_id),
        "role": role,
        "joined_at": at,
        "last_read_message_id": None,
        "last_read_at": None,
        "read_log": [],
        "last_delivered_message_id": None,
        "last_delivered_at": None,
    }


class Memberships:
    def __init__(self, coll: AsyncCollection[Doc]) -> None:
        self.coll = coll

    async def create_indexes(self) -> None:
        await self.coll.create_index([("user_id", ASCENDING), ("room_id", ASCENDING)], unique=True)
        await self.coll.create_index(
            [("room_id", ASCENDING), ("joined_at", ASCENDING), ("user_id", ASCENDING)]
        )

    async def add(
        self, room_id: str, user_id: str, role: str, at: datetime, read_up_to: str | None = None
    ) -> bool:
        """Idempotent; True when the user was not a member before."""
        doc = new_membership(room_id, user_id, role, at)
        if read_up_to is not None:  # caught up: read up to that message
            doc |= {"last_read_message_id": oid(read_up_to), "last_read_at": at}
        key = {"user_id": doc.pop("user_id"), "room_id": doc.pop("room_id")}
        result = await self.coll.update_one(key, {"$setOnInsert": doc}, upsert=True)
        return result.upserted_id is not None

    async def remove(self, room_id: str, user_id: str) -> bool:
        result = await self.coll.delete_one({"user_id": oid(user_id), "room_id": oid(room_id)})
        return result.deleted_count == 1

    async def get(self, room_id: str, user_id: str) -> Doc | None:
        doc = await self.coll.find_one({"user_id": oid(user_id), "room_id": oid(room_id)})
        return plain(doc, drop_id=True)

    async def for_user(self, user_id: str) -> list[Doc]:
        return plain_all(await self.coll.find({"user_id": oid(user_id)}).to_list(), drop_id=True)

    async def of_room(self, room_id: str) -> list[Doc]:
        cursor = self.coll.find({"room_id": oid(room_id)}).sort(JOINING_ORDER)
        return plain_all(await cursor.to_list(), drop_id=True)

    async def member_ids(self, room_id: str) -> list[str]:
        cursor = self.coll.find({"room_id": oid(room_id)}, {"user_id": 1, "_id": 0})
        cursor = cursor.sort(JOINING_ORDER)
        return [str(doc["user_id"]) async for doc in cursor]

    async def member_ids_of(self, room_ids: list[str]) -> dict[str, list[str]]:
        """One query for all the rooms, in (room, joining order): the order of the
        (room_id, joined_at, user_id) index."""
        out: dict[str, list[str]] = {str(r): [] for r in room_ids}
        if not out:
            return out
        cursor = self.coll.find(
            {"room_id": {"$in": [oid(r) for r in out]}}, {"room_id": 1, "user_id": 1, "_id": 0}
        )
        cursor = cursor.sort([("room_id", ASCENDING), *JOINING_ORDER])
        async for doc in cursor:
            out[str(doc["room_id"])].append(str(doc["user_id"]))
        return out

    async def co_members(self, user_id: str) -> set[str]:
        """One aggregation: the user's memberships (the (user_id, room_id) index), each
        room's members (the room_id index), their distinct user ids."""
        me = oid(user_id)
        pipeline: list[Doc] = [
            {"$match": {"user_id": me}},
            {
                "$lookup": {
                    "from": self.coll.name,
                    "localField": "room_id",
                    "foreignField": "room_id",
                    "pipeline": [{"$project": {"_id": 0, "user_id": 1}}],
                    "as": "members",
                }
            },
            {"$unwind": "$members"},
            {"$group": {"_id": "$members.user_id"}},
            {"$match": {"_id": {"$ne": me}}},
        ]
        cursor = await self.coll.aggregate(pipeline)
        return {str(doc["_id"]) async for doc in cursor}

    async def count(self, room_id: str) -> int:
        return await self.coll.count_documents({"room_id": oid(room_id)})

    async def set_role(self, room_id: str, user_id: str, role: str) -> None:
        await self.coll.update_one(
            {"user_id": oid(user_id), "room_id": oid(room_id)}, {"$set": {"role": role}}
        )

    async def advance_read(self, room_id: str, user_id: str, message_id: str, at: datetime) -> bool:
        """Move the read pointer forward to `message_id`; never backwards. True if it moved."""
        mid = oid(message_id)
        result = await self.coll.update_one(
            {
                "user_id": oid(user_id),
                "room_id": oid(room_id),
                "$or": [{"last_read_message_id": None}, {"last_read_message_id": {"$lt": mid}}],
            },
            {
                "$set": {"last_read_message_id": mid, "last_read_at": at},
                # Recent pointer moves, so receipts can tell when a message was first read.
                "$push": {"read_log": {"$each": [[mid, at]], "$slice": -READ_LOG_MAX}},
            },
        )
        return result.modified_count == 1

    async def advance_delivered(self, user_id: str, newest: dict[str, str], at: datetime) -> None:
        """Move the user's delivered pointer in each room forward to the given message; never
        backwards. One round trip for all the rooms."""
        if not newest:
            return
        ops = []
        for room_id, message_id in newest.items():
            mid = oid(message_id)
            behind = [
                {"last_delivered_message_id": None},
                {"last_delivered_message_id": {"$lt": mid}},
            ]
            ops.append(
                UpdateOne(
                    {"user_id": oid(user_id), "room_id": oid(room_id), "$or": behind},
                    {"$set": {"last_delivered_message_id": mid, "last_delivered_at": at}},
                )
            )
        await self.coll.bulk_write(ops, ordered=False)
