"""Documents and seeding helpers shared by the store tests (both backends): users, groups and
messages shaped as the services write them, straight through the repositories."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from fastsock.store.base import Doc, Store
from fastsock.store.sqlite import SqliteStore

T0 = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)


async def new_user(store: Store, username: str, display_name: str | None = None) -> str:
    doc = await store.users.insert(
        {
            "username": username,
            "display_name": display_name or username,
            "password_hash": "hash",
            "status_message": "",
            "avatar_url": None,
            "created_at": T0,
        }
    )
    return doc["_id"]


async def new_group(
    store: Store,
    owner: str,
    *members: str,
    name: str = "general",
    private: bool = False,
    at: datetime = T0,
) -> str:
    doc = {
        "kind": "group",
        "name": name,
        "private": private,
        "created_by": owner,
        "created_at": at,
        "last_activity_at": at,
        "version": 0,
    }
    room = await store.rooms.create(doc, [(owner, "admin"), *((m, "member") for m in members)], at)
    return room["_id"]


def message_doc(room_id: str, sender_id: str, text: str, client_msg_id: str, **extra: Any) -> Doc:
    return {
        "room_id": room_id,
        "sender_id": sender_id,
        "type": "text",
        "text": text,
        "attachments": [],
        "client_msg_id": client_msg_id,
        "created_at": T0,
        "edited_at": None,
        "deleted": False,
        "reactions": {},
        "reaction_kinds": 0,
        "version": 0,
        "announced": False,
        **extra,
    }


_counter = iter(range(10**9))


async def send(
    store: Store, room_id: str, sender_id: str, text: str = "hi", *, cid: str | None = None
) -> Doc:
    """A message with the room's next version, as services/messages.py stores one; every one
    in the same millisecond (T0), so ids break ties."""
    version = await store.rooms.next_version(room_id, T0)
    doc = message_doc(room_id, sender_id, text, cid or f"c{next(_counter)}", version=version)
    return await store.messages.insert(doc)


def tombstone(version: int) -> Doc:
    """What services/messages.py writes when a message is deleted."""
    return {
        "text": "",
        "attachments": [],
        "reactions": {},
        "reaction_kinds": 0,
        "deleted": True,
        "deleted_at": T0,
        "version": version,
    }


def direct_call_doc(call_id: str, room_id: str, caller: str, callee: str, **extra: Any) -> Doc:
    """A 1:1 call record as services/call.py writes it."""
    return {
        "_id": call_id,
        "room_id": room_id,
        "kind": "direct",
        "media": "audio",
        "caller_id": caller,
        "callee_id": callee,
        "state": "ringing",
        "outcome": None,
        "end_reason": None,
        "created_at": T0,
        "answered_at": None,
        "ended_at": None,
        "duration_s": 0,
        **extra,
    }


def group_call_doc(call_id: str, room_id: str, starter: str, worker_id: str, **extra: Any) -> Doc:
    """A live group call as services/group_calls.py starts one (nobody present yet)."""
    return {
        "_id": call_id,
        "room_id": room_id,
        "kind": "group",
        "media": "video",
        "caller_id": starter,
        "callee_id": None,
        "state": "active",
        "outcome": None,
        "end_reason": None,
        "created_at": T0,
        "answered_at": T0,
        "ended_at": None,
        "duration_s": 0,
        "worker_id": worker_id,
        "participant_ids": [],
        "present_ids": [],
        "moved_at": None,
        **extra,
    }


def worker_doc(worker_id: str, *, at: datetime = T0, **extra: Any) -> Doc:
    """An SFU worker as it registers (store/base.py SfuWorkersRepo)."""
    return {
        "_id": worker_id,
        "url": f"ws://127.0.0.1:8890/ws?{worker_id}",
        "health_url": "http://127.0.0.1:8890/healthz",
        "version": "1",
        "capacity": 48,
        "state": "up",
        "peers": 0,
        "tracks": 0,
        "rooms": 0,
        "cpu": 0.0,
        "draining": False,
        "pending": 0,
        "registered_at": at,
        "heartbeat_at": at,
        **extra,
    }


def count_reads(store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the reader jobs the embedded store runs from now on, in order."""
    jobs: list[str] = []
    read = store.db.read

    async def counted(name: str, *args: object) -> object:
        jobs.append(name)
        return await read(name, *args)

    monkeypatch.setattr(store.db, "read", counted)
    return jobs
