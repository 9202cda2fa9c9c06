"""The `calls` collection: one document per call. A 1:1 call's document is written when it
starts and when it changes state (the live state machine is in services/direct_calls.py); a
group call's document is its live state, changed only by the conditional updates below
(services/group_calls.py), so any node may change it and of two racing exactly one wins.

`participant_ids` and `present_ids` hold id strings (like attachment ids), not ObjectIds."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from fastsock.store.base import Duplicate
from fastsock.store.ids import oid
from fastsock.store.mongo.docs import plain, plain_all
from fastsock.store.mongo.transfer import ID_FIELDS

Doc = dict[str, Any]
GROUP_LIVE: Doc = {"kind": "group", "state": "active"}  # the partial indexes' filter


def _stored(doc: Doc) -> Doc:
    ids = ID_FIELDS["calls"]
    return {k: oid(v) if k in ids and v is not None else v for k, v in doc.items()}


class Calls:
    def __init__(self, coll: AsyncCollection[Doc]) -> None:
        self.coll = coll

    async def create_indexes(self) -> None:
        await self.coll.create_index([("room_id", DESCENDING), ("_id", DESCENDING)])
        # start_group (one live group call per room: Duplicate("room_id")), live_group(s)(_in).
        await self.coll.create_index(
            [("room_id", ASCENDING)],
            name="live_group_room",
            unique=True,
            partialFilterExpression=GROUP_LIVE,
        )
        await self.coll.create_index(  # live_on_worker
            [("worker_id", ASCENDING), ("_id", ASCENDING)],
            name="live_group_worker",
            partialFilterExpression=GROUP_LIVE,
        )

    async def insert(self, doc: Doc) -> Doc:
        await self.coll.insert_one(_stored(doc))
        return doc

    async def update(self, call_id: str, changes: Doc) -> None:
        await self.coll.update_one({"_id": oid(call_id)}, {"$set": _stored(changes)})

    async def page(self, room_id: str, *, before: str | None, limit: int) -> tuple[list[Doc], bool]:
        """Newest first; one extra document tells whether there are more."""
        query: Doc = {"room_id": oid(room_id)}
        if before is not None:
            query["_id"] = {"$lt": oid(before)}
        docs = await self.coll.find(query).sort("_id", DESCENDING).limit(limit + 1).to_list()
        return plain_all(docs[:limit]), len(docs) > limit

    # --- group calls ---------------------------------------------------------------------------

    async def start_group(self, doc: Doc) -> Doc:
        try:
            await self.coll.insert_one(_stored(doc))
        except DuplicateKeyError as exc:
            key = (exc.details or {}).get("keyPattern") or {}
            raise Duplicate("room_id" if "room_id" in key else "_id") from exc
        return doc

    async def live_group(self, room_id: str) -> Doc | None:
        return plain(await self.coll.find_one({"room_id": oid(room_id), **GROUP_LIVE}))

    async def live_groups_in(self, room_ids: list[str]) -> dict[str, Doc]:
        if not room_ids:
            return {}
        query = {"room_id": {"$in": [oid(r) for r in room_ids]}, **GROUP_LIVE}
        return {d["room_id"]: d for d in plain_all(await self.coll.find(query).to_list())}

    async def live_on_worker(self, worker_id: str) -> list[Doc]:
        cursor = self.coll.find({"worker_id": oid(worker_id), **GROUP_LIVE}).sort("_id", ASCENDING)
        return plain_all(await cursor.to_list())

    async def live_groups(self) -> list[Doc]:
        return plain_all(await self.coll.find(GROUP_LIVE).sort("_id", ASCENDING).to_list())

    async def _change_live(self, call_id: str, condition: Doc, update: Doc) -> Doc | None:
        """Apply `update` if the call is live and matches `condition`; the new document."""
        return plain(
            await self.coll.find_one_and_update(
                {"_id": oid(call_id), **GROUP_LIVE, **condition},
                update,
                return_document=ReturnDocument.AFTER,
            )
        )

    async def add_participant(self, call_id: str, user_id: str) -> tuple[Doc | None, bool]:
        user = str(user_id)
        added = await self._change_live(
            call_id,
            {"present_ids": {"$ne": user}},
            {"$addToSet": {"participant_ids": user, "present_ids": user}},
        )
        if added is not None:
            return added, True
        return await self._live(call_id), False  # present already, or not live

    async def remove_participant(self, call_id: str, user_id: str) -> tuple[Doc | None, bool]:
        user = str(user_id)
        removed = await self._change_live(
            call_id, {"present_ids": user}, {"$pull": {"present_ids": user}}
        )
        if removed is not None:
            return removed, True
        return await self._live(call_id), False  # not present, or not live

    async def _live(self, call_id: str) -> Doc | None:
        return plain(await self.coll.find_one({"_id": oid(call_id), **GROUP_LIVE}))

    async def move(self, call_id: str, from_worker: str, to_worker: str, at: datetime) -> bool:
        result = await self.coll.update_one(
            {"_id": oid(call_id), "worker_id": oid(from_worker), **GROUP_LIVE},
            {"$set": {"worker_id": oid(to_worker), "moved_at": at}},
        )
        return result.modified_count == 1

    async def end_group(
        self, call_id: str, ended_at: datetime, duration_s: int, reason: str
    ) -> Doc | None:
        changes = {
            "state": "ended",
            "outcome": "completed",
            "end_reason": reason,
            "ended_at": ended_at,
            "duration_s": duration_s,
            "present_ids": [],
        }
        return await self._change_live(call_id, {}, {"$set": changes})
