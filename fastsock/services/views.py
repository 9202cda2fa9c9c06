"""Stored documents -> the JSON shapes of design.md section 3."""

from __future__ import annotations

from typing import Any

from fastsock.services.clock import iso

Doc = dict[str, Any]


def _id(value: Any) -> str | None:
    return None if value is None else str(value)


def user_view(doc: Doc, *, online: bool) -> Doc:
    return {
        "id": str(doc["_id"]),
        "username": doc["username"],
        "display_name": doc["display_name"],
        "avatar_url": doc.get("avatar_url"),
        "status_message": doc.get("status_message", ""),
        "online": online,
        "created_at": iso(doc["created_at"]),
    }


def message_view(doc: Doc) -> Doc:
    view = {
        "id": str(doc["_id"]),
        "room_id": str(doc["room_id"]),
        "sender_id": str(doc["sender_id"]),
        "type": doc["type"],
        "text": doc["text"],
        "attachments": doc.get("attachments", []),
        "client_msg_id": doc["client_msg_id"],
        "created_at": iso(doc["created_at"]),
        "edited_at": iso(doc.get("edited_at")),
        "deleted": doc["deleted"],
        "reactions": doc.get("reactions", {}),
        "version": doc["version"],
    }
    if doc["type"] == "call":
        view["call"] = doc["call"]
    return view


def call_view(doc: Doc) -> Doc:
    return {
        "id": str(doc["_id"]),
        "room_id": str(doc["room_id"]),
        "media": doc["media"],
        "caller_id": str(doc["caller_id"]),
        "callee_id": str(doc["callee_id"]),
        "state": doc["state"],
        "outcome": doc.get("outcome"),
        "end_reason": doc.get("end_reason"),
        "created_at": iso(doc["created_at"]),
        "answered_at": iso(doc.get("answered_at")),
        "ended_at": iso(doc.get("ended_at")),
        "duration_s": doc.get("duration_s", 0),
    }


def room_view(doc: Doc, member_ids: list[str]) -> Doc:
    return {
        "id": str(doc["_id"]),
        "kind": doc["kind"],
        "name": doc.get("name"),
        "private": doc["private"],
        "created_by": _id(doc.get("created_by")),
        "created_at": iso(doc["created_at"]),
        "last_activity_at": iso(doc["last_activity_at"]),
        "member_ids": member_ids,
        "member_count": len(member_ids),
        "version": doc.get("version", 0),
    }


def membership_fields(membership: Doc) -> Doc:
    return {
        "role": membership["role"],
        "last_read_message_id": _id(membership.get("last_read_message_id")),
        "last_read_at": iso(membership.get("last_read_at")),
    }
