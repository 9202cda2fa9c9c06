"""The REST API's response bodies as JSON Schema (2020-12): the OpenAPI document's components.

Declared once, here, next to nothing else: services/views.py builds these shapes, and
tests/handlers/test_schemathesis.py checks every response the live server gives against them
(schemathesis's response_schema_conformance), so a view that drifts from its shape fails."""

from __future__ import annotations

from fastsock.services.schemas import ID_SCHEMA, Doc

ID: Doc = ID_SCHEMA
TIME: Doc = {"type": "string", "format": "date-time"}
TEXT: Doc = {"type": "string"}
INT: Doc = {"type": "integer", "minimum": 0}


def nullable(schema: Doc) -> Doc:
    """OpenAPI 3.1: null is a type like any other (no `nullable`)."""
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    return {**schema, "type": [schema["type"], "null"]}


def ref(name: str) -> Doc:
    return {"$ref": f"#/components/schemas/{name}"}


def array(items: Doc) -> Doc:
    return {"type": "array", "items": items}


def obj(properties: Doc, optional: tuple[str, ...] = ()) -> Doc:
    """An object with these properties, all required but `optional`; unknown ones refused,
    so a view growing a field must be declared here."""
    return {
        "type": "object",
        "properties": properties,
        "required": [k for k in properties if k not in optional],
        "additionalProperties": False,
    }


def page(key: str, item: str) -> Doc:
    return obj({key: array(ref(item)), "has_more": {"type": "boolean"}})


USER = obj(
    {
        "id": ID,
        "username": TEXT,
        "display_name": TEXT,
        "avatar_url": nullable(TEXT),
        "status_message": TEXT,
        "online": {"type": "boolean"},
        "created_at": TIME,
        "deactivated": {"type": "boolean"},
    }
)

UPLOAD = obj(
    {
        "id": ID,
        "url": TEXT,
        "content_type": TEXT,
        "size": INT,
        "name": TEXT,
        "width": INT,
        "height": INT,
        "thumbnail_url": TEXT,
    },
    optional=("width", "height", "thumbnail_url"),
)

CALL = obj(
    {
        "id": ID,
        "room_id": ID,
        "kind": {"enum": ["direct", "group"]},
        "media": {"enum": ["audio", "video"]},
        "caller_id": ID,
        "callee_id": nullable(ID),
        "state": TEXT,
        "outcome": nullable(TEXT),
        "end_reason": nullable(TEXT),
        "created_at": TIME,
        "answered_at": nullable(TIME),
        "ended_at": nullable(TIME),
        "duration_s": INT,
        "participant_ids": array(ID),
        "present_ids": array(ID),
    },
    optional=("participant_ids", "present_ids"),
)

# `{emoji: [user_id, ...]}`, emoji in the order they were first added.
REACTIONS: Doc = {"type": "object", "additionalProperties": array(ID)}

# What a reply shows of the message it answers, as that message is now.
REPLY_TO = obj(
    {
        "id": ID,
        "sender_id": ID,
        "type": {"enum": ["text", "image", "file", "call"]},
        "text": {**TEXT, "description": "The first 200 characters; empty when deleted"},
        "deleted": {"type": "boolean"},
        "created_at": TIME,
    }
)

# A history line's event (`type: "system"` messages; docs/api.md, "System lines").
SYSTEM_LINE = obj(
    {
        "event": {
            "enum": [
                "member_added",
                "member_joined",
                "member_left",
                "member_removed",
                "room_renamed",
                "privacy_changed",
                "role_changed",
                "member_unbanned",
            ]
        },
        "actor_id": ID,
        "user_ids": array(ID),
        "name": TEXT,
        "old_name": TEXT,
        "private": {"type": "boolean"},
        "banned": {"type": "boolean"},
        "role": {"enum": ["admin", "member"]},
    },
    optional=("name", "old_name", "private", "banned", "role"),
)

MESSAGE = obj(
    {
        "id": ID,
        "room_id": ID,
        "sender_id": ID,
        "type": {"enum": ["text", "image", "file", "call", "system"]},
        "text": TEXT,
        "attachments": array(ref("Upload")),
        "client_msg_id": TEXT,
        "created_at": TIME,
        "edited_at": nullable(TIME),
        "deleted": {"type": "boolean"},
        "reactions": REACTIONS,
        "version": INT,
        "mentions": {**array(ID), "description": "Users mentioned, in text order"},
        "mention_room": {"type": "boolean"},
        "reply_to": nullable(ref("ReplyTo")),
        "system": nullable(ref("SystemLine")),
        "call": ref("Call"),
    },
    optional=("call",),
)

ACTIVE_CALL = obj(
    {
        "id": ID,
        "media": {"enum": ["audio", "video"]},
        "caller_id": ID,
        "created_at": TIME,
        "present_ids": array(ID),
    }
)

_ROOM_FIELDS: Doc = {
    "id": ID,
    "kind": {"enum": ["group", "direct"]},
    "name": nullable(TEXT),
    "private": {"type": "boolean"},
    "created_by": nullable(ID),
    "created_at": TIME,
    "last_activity_at": TIME,
    "member_ids": array(ID),
    "member_count": INT,
    "version": INT,
    "active_call": nullable(ref("ActiveCall")),
}
_READ_FIELDS: Doc = {"last_read_message_id": nullable(ID), "last_read_at": nullable(TIME)}
_MEMBERSHIP_FIELDS: Doc = {"role": {"enum": ["admin", "member"]}, **_READ_FIELDS}
# A member's delivered pointer (reading implies delivery: never behind the read pointer).
_DELIVERED_FIELDS: Doc = {
    "last_delivered_message_id": nullable(ID),
    "last_delivered_at": nullable(TIME),
}

ROOM = obj(_ROOM_FIELDS)
ROOM_DETAIL = obj(
    {
        **_ROOM_FIELDS,
        **_MEMBERSHIP_FIELDS,
        "members": array(
            obj({"user_id": ID, "joined_at": TIME, **_MEMBERSHIP_FIELDS, **_DELIVERED_FIELDS})
        ),
    }
)
ROOM_SUMMARY = obj(
    {
        **_ROOM_FIELDS,
        **_MEMBERSHIP_FIELDS,
        "unread_count": INT,
        "mention_count": INT,
        "last_message": nullable(ref("Message")),
    }
)

SCHEMAS: dict[str, Doc] = {
    "Error": obj(
        {
            "error": obj(
                {
                    "code": TEXT,
                    "message": TEXT,
                    "field": {**TEXT, "description": "The input refused (400)"},
                    "retry_after": {
                        "type": "number",
                        "exclusiveMinimum": 0,
                        "description": "Seconds to wait (429; also the Retry-After header)",
                    },
                },
                optional=("field", "retry_after"),
            )
        }
    ),
    "User": USER,
    # The user's own view: the public one, and whether they are a server admin.
    "Me": obj({**USER["properties"], "server_admin": {"type": "boolean"}}),
    "Session": obj({"user": ref("Me"), "access_token": TEXT, "refresh_token": TEXT}),
    "UserList": obj({"users": array(ref("User"))}),
    "Config": obj(
        {
            "max_upload_bytes": INT,
            "upload_types": array(TEXT),
            "upload_type_aliases": {"type": "object", "additionalProperties": TEXT},
            "max_message_chars": INT,
            "max_attachments": INT,
        }
    ),
    "ActiveCall": ACTIVE_CALL,
    "Room": ROOM,
    "RoomDetail": ROOM_DETAIL,
    "RoomSummary": ROOM_SUMMARY,
    "RoomList": obj({"rooms": array(ref("RoomSummary"))}),
    "PublicRoomList": obj(
        {"rooms": array(obj({"id": ID, "name": nullable(TEXT), "member_count": INT}))}
    ),
    "Bans": obj({"bans": array(obj({"user_id": ID, "banned_by": ID, "banned_at": TIME}))}),
    "ReadState": obj({"room_id": ID, **_READ_FIELDS, "unread_count": INT, "mention_count": INT}),
    "Upload": UPLOAD,
    "Call": CALL,
    "Message": MESSAGE,
    "SystemLine": SYSTEM_LINE,
    "ReplyTo": REPLY_TO,
    # `has_newer` with `around` only.
    "MessagePage": obj(
        {**page("messages", "Message")["properties"], "has_newer": {"type": "boolean"}},
        optional=("has_newer",),
    ),
    "CallPage": page("calls", "Call"),
    "Receipts": obj(
        {
            "receipts": array(
                obj({"user_id": ID, "delivered_at": nullable(TIME), "read_at": nullable(TIME)})
            )
        }
    ),
    "Reactions": obj({"message_id": ID, "room_id": ID, "reactions": REACTIONS, "version": INT}),
    "IceServers": obj(
        {
            "ice_servers": array(
                obj(
                    {"urls": array(TEXT), "username": TEXT, "credential": TEXT},
                    optional=("username", "credential"),
                )
            ),
            "ttl": INT,
            "ice_transport_policy": {"enum": ["all", "relay"]},
        }
    ),
    "Health": obj({"status": {"const": "ok"}}),
    "Ready": obj({"status": {"const": "ready"}, "database": {"const": "ok"}}),
    "WorkerSettings": obj(
        {"heartbeat_s": {"type": "number"}, "missed_heartbeats": INT, "token_ttl_s": INT}
    ),
    "WorkerCommands": obj({"evict": array(obj({"call_id": ID, "user_id": ID})), "end": array(ID)}),
}
