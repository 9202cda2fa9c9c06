"""The `bans` collection: who an admin removed from a group, kept from rejoining until an admin
lets them. One document per (room, user)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

from fastsock.store.ids import oid
from fastsock.store.mongo.docs import plain, plain_all

Doc = dict[str, Any]


class Bans:
    def __init__(self, coll: AsyncCollection[Doc]) -> None:
        self.coll = coll

    async def create_indexes(self) -> None:
        await self.coll.create_index([("room_id", ASCENDING), ("user_id", ASCENDING)], unique=True)

    async def add(self, room_id: str, user_id: str, banned_by: str, at: datetime) -> None:
        key = {"room_id": oid(room_id), "user_id": oid(user_id)}
        ban = {**key, "banned_by": oid(banned_by), "banned_at": at}
        await self.coll.replace_one(key, ban, upsert=True)

    async def remove(self, room_id: str, user_ids: list[str]) -> list[str]:
        if not user_ids:
            return []
        match = {"room_id": oid(room_id), "user_id": {"$in": [oid(u) for u in user_ids]}}
        banned = [str(u) for u in await self.coll.distinct("user_id", match)]
        await self.coll.delete_many(match)
        return [u for u in user_ids if u in banned]

    async def get(self, room_id: str, user_id: str) -> Doc | None:
        doc = await self.coll.find_one({"room_id": oid(room_id), "user_id": oid(user_id)})
        return plain(doc, drop_id=True) if doc else None

    async def of_room(self, room_id: str) -> list[Doc]:
        cursor = self.coll.find({"room_id": oid(room_id)})
        docs = await cursor.sort([("banned_at", ASCENDING), ("user_id", ASCENDING)]).to_list()
        return plain_all(docs, drop_id=True)
