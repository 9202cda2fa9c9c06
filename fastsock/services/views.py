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
    """A 1:1 call, or a group call (`kind: "group"`, `callee_id: null`, with who took part and
    who is in it now). Never the SFU worker hosting it."""
    kind = doc.get("kind", "direct")
    view = {
        "id": str(doc["_id"]),
        "room_id": str(doc["room_id"]),
        "kind": kind,
        "media": doc["media"],
        "caller_id": str(doc["caller_id"]),
        "callee_id": _id(doc.get("callee_id")),
        "state": doc["state"],
        "outcome": doc.get("outcome"),
        "end_reason": doc.get("end_reason"),
        "created_at": iso(doc["created_at"]),
        "answered_at": iso(doc.get("answered_at")),
        "ended_at": iso(doc.get("ended_at")),
        "duration_s": doc.get("duration_s", 0),
    }
    if kind == "group":
        view["participant_ids"] = list(doc.get("participant_ids", []))
        view["present_ids"] = list(doc.get("present_ids", []))
    return view


def active_call_view(doc: Doc | None) -> Doc | None:
    """A room's live group call as its room view shows it ("call in progress · Join")."""
    if doc is None:
        return None
    return {
        "id": str(doc["_id"]),
        "media": doc["media"],
        "caller_id": str(doc["caller_id"]),
        "created_at": iso(doc["created_at"]),
        "present_ids": list(doc.get("present_ids", [])),
    }


def room_view(doc: Doc, member_ids: list[str], active_call: Doc | None = None) -> Doc:
    """`active_call`: the room's live group call document, if any."""
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
        "active_call": active_call_view(active_call),
    }


def membership_fields(membership: Doc) -> Doc:
    return {
        "role": membership["role"],
        "last_read_message_id": _id(membership.get("last_read_message_id")),
        "last_read_at": iso(membership.get("last_read_at")),
    }
