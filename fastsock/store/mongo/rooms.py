"""The `rooms` collection: groups and direct messages.

A direct message room carries `dm_key` (the two user ids, sorted) under a unique index, which is
what makes get-or-create idempotent even when both users start the DM at the same moment.

A room and its memberships are written in order, memberships first: the room document is the
commit point, so no reader ever finds a room without its members. A failure in between leaves
memberships of a room that does not exist; nobody can see them (room lists skip them and no
client knows the id), and `repair` removes them at start-up."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from fastsock.store.base import Duplicate
from fastsock.store.ids import new_id, oid
from fastsock.store.mongo.docs import plain, plain_all
from fastsock.store.mongo.memberships import new_membership

Doc = dict[str, Any]


class Rooms:
    def __init__(self, coll: AsyncCollection[Doc], memberships: AsyncCollection[Doc]) -> None:
        self.coll = coll
        self.memberships = memberships

    async def create_indexes(self) -> None:
        await self.coll.create_index(
            [("dm_key", ASCENDING)],
            unique=True,
            partialFilterExpression={"dm_key": {"$type": "string"}},
        )
        await self.coll.create_index([("kind", ASCENDING), ("private", ASCENDING)])

    async def repair(self) -> int:
        """Remove memberships whose room was never written; returns how many."""
        room_ids = await self.memberships.distinct("room_id")
        found = await self.coll.distinct("_id", {"_id": {"$in": room_ids}})
        orphans = set(room_ids) - set(found)
        if not orphans:
            return 0
        result = await self.memberships.delete_many({"room_id": {"$in": list(orphans)}})
        return result.deleted_count

    async def create(self, doc: Doc, members: list[tuple[str, str]], at: datetime) -> Doc:
        room_id = new_id()
        await self.memberships.insert_many(
            [new_membership(room_id, user_id, role, at) for user_id, role in members]
        )
        stored = {**doc, "_id": oid(room_id), "created_by": oid(doc["created_by"])}
        try:
            await self.coll.insert_one(stored)
        except DuplicateKeyError as exc:
            await self.memberships.delete_many({"room_id": oid(room_id)})
            raise Duplicate("dm_key") from exc
        return {**doc, "_id": room_id}

    async def get(self, room_id: str) -> Doc | None:
        return plain(await self.coll.find_one({"_id": oid(room_id)}))

    async def by_dm_key(self, dm_key: str) -> Doc | None:
        return plain(await self.coll.find_one({"dm_key": dm_key}))

    async def many(self, room_ids: Iterable[str]) -> list[Doc]:
        return plain_all(
            await self.coll.find({"_id": {"$in": [oid(r) for r in room_ids]}}).to_list()
        )

    async def public(self, query: str, limit: int) -> list[Doc]:
        filt: Doc = {"kind": "group", "private": False}
        if query:
            filt["name"] = {"$regex": re.escape(query), "$options": "i"}
        cursor = self.coll.find(filt).sort("last_activity_at", DESCENDING).limit(limit)
        return plain_all(await cursor.to_list())

    async def update(self, room_id: str, changes: Doc) -> Doc | None:
        return plain(
            await self.coll.find_one_and_update(
                {"_id": oid(room_id)}, {"$set": changes}, return_document=ReturnDocument.AFTER
            )
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
