"""The `users` collection."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from fastsock.store.base import Duplicate
from fastsock.store.ids import oid
from fastsock.store.mongo.docs import plain, plain_all

Doc = dict[str, Any]


class Users:
    def __init__(self, coll: AsyncCollection[Doc]) -> None:
        self.coll = coll

    async def create_indexes(self) -> None:
        await self.coll.create_index([("username", ASCENDING)], unique=True)

    async def insert(self, doc: Doc) -> Doc:
        try:
            result = await self.coll.insert_one(dict(doc))
        except DuplicateKeyError as exc:
            raise Duplicate("username") from exc
        return {**doc, "_id": str(result.inserted_id)}

    async def get(self, user_id: str) -> Doc | None:
        return plain(await self.coll.find_one({"_id": oid(user_id)}))

    async def by_username(self, username: str) -> Doc | None:
        return plain(await self.coll.find_one({"username": username}))

    async def by_usernames(self, usernames: list[str]) -> list[Doc]:
        if not usernames:
            return []
        return plain_all(await self.coll.find({"username": {"$in": usernames}}).to_list())

    async def many(self, user_ids: Iterable[str]) -> list[Doc]:
        return plain_all(
            await self.coll.find({"_id": {"$in": [oid(u) for u in user_ids]}}).to_list()
        )

    async def search(self, query: str, limit: int) -> list[Doc]:
        """Case-insensitive prefix match on username or display name; active accounts."""
        pattern = {"$regex": "^" + re.escape(query), "$options": "i"}
        match = {"$or": [{"username": pattern}, {"display_name": pattern}]}
        cursor = self.coll.find({**match, "deactivated_at": None})  # None: also never set
        return plain_all(await cursor.sort("username", ASCENDING).limit(limit).to_list())

    async def update(self, user_id: str, changes: Doc) -> Doc | None:
        return plain(
            await self.coll.find_one_and_update(
                {"_id": oid(user_id)}, {"$set": changes}, return_document=ReturnDocument.AFTER
            )
        )

    async def oldest(self) -> Doc | None:
        return plain(await self.coll.find_one({}, sort=[("_id", ASCENDING)]))
