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
        "deactivated": doc.get("deactivated_at") is not None,
    }


REPLY_SNIPPET = 200  # characters of the replied-to text a reply carries


def reply_view(original: Doc) -> Doc:
    """What a reply shows of the message it answers, as that message is now."""
    return {
        "id": str(original["_id"]),
        "sender_id": str(original["sender_id"]),
        "type": original["type"],
        "text": "" if original["deleted"] else original["text"][:REPLY_SNIPPET],
        "deleted": original["deleted"],
        "created_at": iso(original["created_at"]),
    }


def message_view(doc: Doc, original: Doc | None = None) -> Doc:
    """`original`: the message `doc` replies to (services/replies.py reads it), if any."""
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
        "mentions": list(doc.get("mentions") or []),
        "mention_room": bool(doc.get("mention_room")),
        "reply_to": reply_view(original) if original and doc.get("reply_to_id") else None,
        "system": doc.get("system"),  # a room history line's event (system lines only)
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


def delivered_pointer(membership: Doc) -> tuple[Any, Any]:
    """`(message id, at)`: the newest message the member's client confirmed, or the read
    pointer where that is further (reading implies delivery); `(None, None)` for neither."""
    delivered = membership.get("last_delivered_message_id")
    read = membership.get("last_read_message_id")
    if read is not None and (delivered is None or read > delivered):
        return read, membership.get("last_read_at")
    return delivered, membership.get("last_delivered_at")


def member_view(membership: Doc) -> Doc:
    """A room member as the room view lists them: role, since when, read and delivered
    pointers (a member's pointers say nothing of messages sent before `joined_at`)."""
    delivered, delivered_at = delivered_pointer(membership)
    return {
        "user_id": str(membership["user_id"]),
        "joined_at": iso(membership["joined_at"]),
        **membership_fields(membership),
        "last_delivered_message_id": _id(delivered),
        "last_delivered_at": iso(delivered_at),
    }
