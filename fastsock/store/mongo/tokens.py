"""The `refresh_tokens` collection: one document per issued refresh token (by jti).

Tokens of one login share a `family`; a refresh marks the presented token used and issues the
next one in the family. A TTL index removes expired tokens; until it runs, `get` hides them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

from fastsock.store.ids import oid
from fastsock.store.mongo.docs import plain

Doc = dict[str, Any]


class RefreshTokens:
    def __init__(self, coll: AsyncCollection[Doc]) -> None:
        self.coll = coll

    async def create_indexes(self) -> None:
        await self.coll.create_index([("expires_at", ASCENDING)], expireAfterSeconds=0)
        await self.coll.create_index([("family", ASCENDING)])
        await self.coll.create_index([("user_id", ASCENDING)])  # revoke_user

    async def insert(
        self, jti: str, user_id: str, family: str, issued_at: datetime, expires_at: datetime
    ) -> None:
        await self.coll.insert_one(
            {
                "_id": jti,
                "user_id": oid(user_id),
                "family": family,
                "issued_at": issued_at,
                "expires_at": expires_at,
                "used_at": None,
                "revoked": False,
            }
        )

    async def get(self, jti: str) -> Doc | None:
        doc = await self.coll.find_one({"_id": jti, "expires_at": {"$gt": datetime.now(UTC)}})
        return plain(doc)

    async def mark_used(self, jti: str, at: datetime) -> bool:
        """Atomically consume a live token; False if it was already used or revoked."""
        result = await self.coll.update_one(
            {"_id": jti, "used_at": None, "revoked": False}, {"$set": {"used_at": at}}
        )
        return result.modified_count == 1

    async def family_revoked(self, family: str) -> bool:
        return await self.coll.find_one({"family": family, "revoked": True}) is not None

    async def revoke_family(self, family: str) -> None:
        await self.coll.update_many({"family": family}, {"$set": {"revoked": True}})

    async def revoke_user(self, user_id: str) -> list[str]:
        live = {"user_id": oid(user_id), "revoked": False}
        families = await self.coll.distinct("family", live)
        # Then every token of those families (a login's rotated ones too), as revoke_family.
        await self.coll.update_many({"family": {"$in": families}}, {"$set": {"revoked": True}})
        return [str(f) for f in families]
