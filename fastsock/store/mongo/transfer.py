"""Bulk copy in and out of MongoDB (`Transfer` in store/base.py), for `fastsock migrate`.

Documents leave in the contract (ids as hex strings, reactions as `{emoji: [user_ids]}`, no
`_id` on memberships and deliveries) and come back in as stored: `ID_FIELDS` is the one table
of which fields hold ObjectIds here. Export walks a collection in key order on the unique key of
COLLECTIONS (an index each: `_id`, memberships' and deliveries' unique indexes); import replaces
by that key, in order, so an interrupted batch leaves a prefix of itself and resuming after
`last_key` skips nothing."""

from __future__ import annotations

from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, ReplaceOne
from pymongo.asynchronous.database import AsyncDatabase

from fastsock.store.base import COLLECTIONS, key_of
from fastsock.store.ids import oid
from fastsock.store.mongo.docs import plain
from fastsock.store.mongo.messages import message_out, stored_reactions

Doc = dict[str, Any]

# Fields stored as ObjectIds, by collection (a refresh token's `_id` is its jti, a string; an
# attachment's `id` and a user's `avatar_upload_id` are stored as strings). Memberships'
# `read_log` pairs `[message_id, at]` hold one more, converted with it.
ID_FIELDS: dict[str, tuple[str, ...]] = {
    "users": ("_id",),
    "refresh_tokens": ("user_id",),
    "rooms": ("_id", "created_by"),
    "memberships": (
        "user_id",
        "room_id",
        "last_read_message_id",
        "last_delivered_message_id",
    ),
    "messages": ("_id", "room_id", "sender_id", "reply_to_id"),
    "deliveries": ("message_id", "user_id"),
    "uploads": ("_id", "owner_id"),
    "calls": ("_id", "room_id", "caller_id", "callee_id", "worker_id"),
    "bans": ("room_id", "user_id", "banned_by"),
}
# Collections whose `_id` is only MongoDB's row id, outside the contract.
ROW_ID_ONLY = ("memberships", "deliveries", "bans")


def _check(collection: str) -> tuple[str, ...]:
    if collection not in COLLECTIONS:
        raise ValueError(f"unknown collection {collection!r}")
    return COLLECTIONS[collection]


def doc_out(collection: str, doc: Doc) -> Doc:
    """A stored document in the contract."""
    if collection == "messages":
        out = message_out(doc)
    else:
        out = plain(doc, drop_id=collection in ROW_ID_ONLY)
    assert out is not None
    return out


def doc_in(collection: str, doc: Doc) -> Doc:
    """A contract document as this backend stores it."""
    ids = ID_FIELDS[collection]
    stored = {k: oid(v) if k in ids and v is not None else v for k, v in doc.items()}
    if collection in ROW_ID_ONLY:
        stored.pop("_id", None)
    if collection == "memberships":
        stored["read_log"] = [[oid(m), at] for m, at in doc.get("read_log") or []]
    elif collection == "messages":
        reactions = {e: u for e, u in (doc.get("reactions") or {}).items() if u}
        stored["reactions"] = stored_reactions(reactions)
        # What add_reaction counts against the cap: the distinct emoji on the message.
        stored["reaction_kinds"] = len(reactions)
    return stored


def _key_value(collection: str, field: str, value: str) -> Any:
    return oid(value) if field in ID_FIELDS[collection] else value


class MongoTransfer:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.db = db

    def _after(self, collection: str, after: str) -> Doc:
        """The filter for keys above `after` (a key_of string), on the key fields in order."""
        fields = COLLECTIONS[collection]
        parts = after.split(":", len(fields) - 1) if len(fields) > 1 else [after]
        if len(parts) != len(fields):
            raise ValueError(f"not a {collection} key: {after!r}")
        values = [_key_value(collection, f, p) for f, p in zip(fields, parts, strict=True)]
        branches = []
        for i, field in enumerate(fields):
            branch: Doc = {f: v for f, v in zip(fields[:i], values[:i], strict=True)}
            branch[field] = {"$gt": values[i]}
            branches.append(branch)
        return branches[0] if len(branches) == 1 else {"$or": branches}

    async def export(self, collection: str, after: str | None, limit: int) -> list[Doc]:
        fields = _check(collection)
        filt = self._after(collection, after) if after is not None else {}
        cursor = self.db[collection].find(filt).sort([(f, ASCENDING) for f in fields])
        return [doc_out(collection, d) for d in await cursor.limit(limit).to_list()]

    async def import_many(self, collection: str, docs: list[Doc]) -> None:
        fields = _check(collection)
        if not docs:
            return
        ops = []
        for doc in docs:
            stored = doc_in(collection, doc)
            ops.append(ReplaceOne({f: stored[f] for f in fields}, stored, upsert=True))
        # In order: a batch cut short leaves a prefix, so last_key is where to resume.
        await self.db[collection].bulk_write(ops, ordered=True)

    async def last_key(self, collection: str) -> str | None:
        fields = _check(collection)
        doc = await self.db[collection].find_one(
            {}, sort=[(f, DESCENDING) for f in fields], projection=dict.fromkeys(fields, 1)
        )
        if doc is None:
            return None
        return key_of(
            collection, {k: str(v) if isinstance(v, ObjectId) else v for k, v in doc.items()}
        )

    async def finish(self) -> None:
        """Nothing to settle: MongoDB maintains its indexes as documents arrive."""

    async def count(self, collection: str) -> int:
        _check(collection)
        return await self.db[collection].count_documents({})
