"""The one schema table: every client input (REST body or query, WebSocket event) by name.

Services call `validate(name, data)` first thing, so both transports accept and refuse
exactly the same inputs with the same errors. Unknown fields are refused."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, urlsplit

from fastsock.errors import InvalidRequest
from fastsock.services import fields
from fastsock.services.emoji import is_single_emoji

Doc = dict[str, Any]

TEXT_MAX = 4000
NAME_MAX = 80
DISPLAY_NAME_MAX = 64
STATUS_MAX = 140
CLIENT_MSG_ID_MAX = 64
IDS_PER_REQUEST = 100
ATTACHMENTS_MAX = 10
USERNAME_RE = re.compile(r"[a-z0-9_.-]{3,32}")
# Names a mention of everyone could mean (`@room`, services/mentions.py): nobody may take them.
RESERVED_USERNAMES = frozenset({"room", "here", "everyone", "channel", "all"})
PASSWORD_MIN, PASSWORD_MAX = 8, 1024


@dataclass(frozen=True, slots=True)
class Field:
    check: Callable[[Any, str], Any]
    required: bool = True
    default: Any = None
    # The input's canonical form as JSON Schema (2020-12), for the OpenAPI document
    # (fastsock/openapi.py): required of every field of an entry the REST API reads (the
    # document fails to build without), none for WebSocket-only ones. `check` is more lenient
    # in places (it trims, lowercases usernames, reads numbers from strings) and refuses what
    # JSON Schema cannot say (exactly one emoji, a URL without a host): a 400, like any
    # refused input.
    schema: Doc = field(default_factory=dict)


ID_SCHEMA: Doc = {"type": "string", "pattern": "^[0-9a-fA-F]{24}$"}
# What fields.text refuses: C0 controls but tab and newline, DEL and C1, bidi overrides and
# isolates. (And lone surrogates, which no regex engine of JSON Schema validators can name:
# every JSON document is refused with one, fields.check_document.)
_BIDI = "".join(f"\\u{ord(c):04x}" for c in sorted(fields.BIDI_CONTROLS))
TEXT_PATTERN = f"^[^\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f{_BIDI}]*$"


# Names (rooms) are one line: text without line breaks or tabs either, so a name cannot pose
# as several lines (e.g. as another history line in "X renamed the group to NAME").
_LINE_BREAKS = "\t\n\u2028\u2029"
LINE_PATTERN = f"^[^\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029{_BIDI}]*$"


def text(
    min_len: int = 1,
    max_len: int = TEXT_MAX,
    *,
    strip: bool = True,
    one_line: bool = False,
    **kw: Any,
) -> Field:
    return Field(
        lambda v, n: fields.text(
            _one_line(v, n) if one_line else v, n, min_len=min_len, max_len=max_len, strip=strip
        ),
        schema={
            "type": "string",
            "minLength": min_len,
            "maxLength": max_len,
            "pattern": LINE_PATTERN if one_line else TEXT_PATTERN,
        },
        **kw,
    )


def _one_line(value: Any, name: str) -> Any:
    if isinstance(value, str) and any(c in _LINE_BREAKS for c in value):
        raise InvalidRequest(f"{name} must be one line: no line breaks or tabs", field=name)
    return value


def object_id(**kw: Any) -> Field:
    return Field(fields.object_id, schema=ID_SCHEMA, **kw)


def object_ids(max_items: int = IDS_PER_REQUEST, *, min_items: int = 0, **kw: Any) -> Field:
    def check(value: Any, name: str) -> list[str]:
        ids = fields.object_ids(value, name, max_items=max_items)
        if len(ids) < min_items:
            raise InvalidRequest(f"{name} must not be empty", field=name)
        return ids

    schema = {"type": "array", "items": ID_SCHEMA, "minItems": min_items, "maxItems": max_items}
    return Field(check, schema=schema, **kw)


def integer(low: int, high: int, **kw: Any) -> Field:
    schema = {"type": "integer", "minimum": low, "maximum": high}
    return Field(lambda v, n: fields.integer(v, n, low=low, high=high), schema=schema, **kw)


def boolean(**kw: Any) -> Field:
    return Field(fields.boolean, schema={"type": "boolean"}, **kw)


def _username(value: Any, name: str) -> str:
    if not isinstance(value, str) or not USERNAME_RE.fullmatch(value.strip().lower()):
        raise InvalidRequest(
            "username must be 3-32 characters: a-z, 0-9, '_', '.', '-'", field=name
        )
    if value.strip().lower() in RESERVED_USERNAMES:
        raise InvalidRequest(f"the username {value.strip().lower()!r} is reserved", field=name)
    return value.strip().lower()


def _password(value: Any, name: str) -> str:
    if not isinstance(value, str) or not PASSWORD_MIN <= len(value) <= PASSWORD_MAX:
        raise InvalidRequest(
            f"password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters", field=name
        )
    return value


def _password_guess(value: Any, name: str) -> str:
    """Any text registration would have taken (control characters included: a password is
    never shown); longer than PASSWORD_MAX never matches, so is not worth hashing beyond."""
    if not isinstance(value, str) or len(value) > PASSWORD_MAX * 4:
        raise InvalidRequest(f"{name} must be at most {PASSWORD_MAX * 4} characters", field=name)
    return value


def _string(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string", field=name)
    return value


def _emoji(value: Any, name: str) -> str:
    if not isinstance(value, str) or not is_single_emoji(value):
        raise InvalidRequest(f"{name} must be exactly one emoji", field=name)
    return value


def _resume(value: Any, name: str) -> tuple[str, int]:
    """`{session, last_seq}` -> (session, last_seq)."""
    if (
        not isinstance(value, dict)
        or set(value) != {"session", "last_seq"}
        or not isinstance(value["session"], str)
        or len(value["session"]) > 64
        or type(value["last_seq"]) is not int
    ):
        raise InvalidRequest(f"{name} must be {{session, last_seq}}", field=name)
    return value["session"], value["last_seq"]


SDP_MAX = 60_000  # fits a WebSocket frame (64 KiB) with the envelope
CANDIDATE_MAX = 1024
MIDS_MAX = 64


def _choice(*choices: str, **kw: Any) -> Field:
    def check(value: Any, name: str) -> str:
        if value not in choices:
            raise InvalidRequest(f"{name} must be one of {', '.join(choices)}", field=name)
        return str(value)

    return Field(check, schema={"enum": list(choices)}, **kw)


def _sdp(value: Any, name: str) -> dict[str, str]:
    """An RTCSessionDescription: `{type: offer|answer, sdp}`."""
    if (
        not isinstance(value, dict)
        or set(value) != {"type", "sdp"}
        or value["type"] not in ("offer", "answer")
        or not isinstance(value["sdp"], str)
        or not 0 < len(value["sdp"]) <= SDP_MAX
    ):
        raise InvalidRequest(
            f"{name} must be {{type: offer|answer, sdp}} with at most {SDP_MAX} characters",
            field=name,
        )
    return {"type": value["type"], "sdp": value["sdp"]}


def _candidate(value: Any, name: str) -> dict[str, Any] | None:
    """An RTCIceCandidateInit, or null for the end of candidates."""
    if value is None:
        return None
    allowed = {"candidate", "sdpMid", "sdpMLineIndex", "usernameFragment"}
    ok = (
        isinstance(value, dict)
        and "candidate" in value
        and set(value) <= allowed
        and isinstance(value["candidate"], str)
        and len(value["candidate"]) <= CANDIDATE_MAX
        and (value.get("sdpMid") is None or isinstance(value["sdpMid"], str))
        and len(value.get("sdpMid") or "") <= MIDS_MAX
        and (value.get("sdpMLineIndex") is None or type(value["sdpMLineIndex"]) is int)
        and (value.get("usernameFragment") is None or isinstance(value["usernameFragment"], str))
        and len(value.get("usernameFragment") or "") <= MIDS_MAX
    )
    if not ok:
        raise InvalidRequest(
            f"{name} must be {{candidate, sdpMid?, sdpMLineIndex?, usernameFragment?}} or null",
            field=name,
        )
    return {k: value[k] for k in allowed if k in value}


# The SFU workers' internal API (docs/calls.md, "Group calls"): bodies from workers, which are
# checked like a client's.
URL_MAX = 2048
WORKER_CAPACITY_MAX = 10_000
WORKER_CALLS_MAX = 1000
CALL_USERS_MAX = 64
WORKER_EVENTS_MAX = 256


def _url_parts(value: Any) -> SplitResult | None:
    if not (
        isinstance(value, str)
        and len(value) <= URL_MAX
        and value.isascii()
        and value.isprintable()
        and " " not in value
    ):
        return None
    try:
        parts = urlsplit(value)
        _ = parts.port  # ValueError when it is no port number
    except ValueError:  # also a bracketed host that is no IPv6 address
        return None
    return parts


def url(*schemes: str, **kw: Any) -> Field:
    def check(value: Any, name: str) -> str:
        parts = _url_parts(value)
        if parts is None or parts.scheme not in schemes or not parts.hostname:
            raise InvalidRequest(f"{name} must be a {' or '.join(schemes)} URL", field=name)
        return str(value)

    schema = {
        "type": "string",
        "format": "uri",
        "maxLength": URL_MAX,
        "pattern": f"^({'|'.join(schemes)})://[^/?#]",
    }
    return Field(check, schema=schema, **kw)


def number(low: float, high: float, **kw: Any) -> Field:
    def check(value: Any, name: str) -> float:
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isfinite(value)
            or not low <= value <= high
        ):
            raise InvalidRequest(f"{name} must be a number from {low:g} to {high:g}", field=name)
        return float(value)

    return Field(check, schema={"type": "number", "minimum": low, "maximum": high}, **kw)


def object_schema(schema: Mapping[str, Field]) -> Doc:
    """An input (or a record in one) as a JSON Schema object: unknown fields refused."""
    properties: Doc = {}
    for key, spec in schema.items():
        if not spec.schema:
            raise ValueError(f"field {key} declares no JSON Schema")
        properties[key] = dict(spec.schema)
        if not spec.required and spec.default is not None:
            default = spec.default
            properties[key]["default"] = list(default) if isinstance(default, tuple) else default
    required = [key for key, spec in schema.items() if spec.required]
    doc: Doc = {"type": "object", "properties": properties, "additionalProperties": False}
    return doc | ({"required": required} if required else {})


def records(schema: dict[str, Field], max_items: int, **kw: Any) -> Field:
    """A list of at most `max_items` objects, each cleaned like a whole input by `schema`."""

    def check(value: Any, name: str) -> list[Doc]:
        if not isinstance(value, list) or len(value) > max_items:
            raise InvalidRequest(
                f"{name} must be a list of at most {max_items} objects", field=name
            )
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise InvalidRequest(f"{name}[{i}] must be an object", field=name)
            try:
                out.append(clean(schema, item))
            except InvalidRequest as exc:
                raise InvalidRequest(f"{name}[{i}]: {exc.message}", field=name) from None
        return out

    items = object_schema(schema)
    return Field(check, schema={"type": "array", "items": items, "maxItems": max_items}, **kw)


OPTIONAL = {"required": False}

# The schemas of the checks above that take no parameters.
STRING: Doc = {"type": "string"}
# The canonical form; the check also takes upper case and surrounding spaces.
USERNAME: Doc = {"type": "string", "pattern": f"^{USERNAME_RE.pattern}$"}
PASSWORD: Doc = {"type": "string", "minLength": PASSWORD_MIN, "maxLength": PASSWORD_MAX}
PASSWORD_GUESS: Doc = {"type": "string", "maxLength": PASSWORD_MAX * 4}
EMOJI: Doc = {"type": "string", "minLength": 1, "description": "exactly one emoji grapheme"}
WORKER_CALL = {
    "call_id": object_id(),
    "room_id": object_id(),
    "user_ids": object_ids(CALL_USERS_MAX),
}
WORKER_EVENT = {
    "type": _choice("peer_joined", "peer_left"),
    "call_id": object_id(),
    "user_id": object_id(),
    "reason": _choice("leave", "disconnected", "evicted", "replaced", required=False),
}

SCHEMAS: dict[str, dict[str, Field]] = {
    # WebSocket-only events
    "auth": {
        "token": Field(_string),
        "resume": Field(_resume, required=False),
    },
    "ping": {},
    "auth.register": {
        "username": Field(_username, schema=USERNAME),
        "password": Field(_password, schema=PASSWORD),
        "display_name": text(max_len=DISPLAY_NAME_MAX, **OPTIONAL),
    },
    # Login checks only types: its answer must not say which rule a guess broke.
    "auth.login": {
        "username": text(max_len=64, strip=False),
        "password": Field(_password_guess, schema=PASSWORD_GUESS),
    },
    "auth.refresh": {"refresh_token": Field(_string, schema=STRING)},
    "user.update": {
        "display_name": text(max_len=DISPLAY_NAME_MAX, **OPTIONAL),
        "status_message": text(min_len=0, max_len=STATUS_MAX, **OPTIONAL),
        "avatar_upload_id": object_id(**OPTIONAL),
    },
    "users.search": {
        "q": text(min_len=0, max_len=64, required=False, default=""),
        "limit": integer(1, 50, required=False, default=20),
    },
    "room.create": {
        "name": text(max_len=NAME_MAX, one_line=True),
        "member_ids": object_ids(required=False, default=()),
        "private": boolean(required=False, default=True),
    },
    "room.direct": {"user_id": object_id()},
    "room.update": {
        "name": text(max_len=NAME_MAX, one_line=True, **OPTIONAL),
        "private": boolean(**OPTIONAL),
    },
    "room.members.add": {"user_ids": object_ids(min_items=1)},
    "room.member.update": {"role": _choice("admin", "member")},
    "rooms.public": {"q": text(min_len=0, max_len=NAME_MAX, required=False, default="")},
    "message.send": {
        "room_id": object_id(),
        "client_msg_id": text(max_len=CLIENT_MSG_ID_MAX, strip=False),
        # Empty text is fine when the message carries attachments (checked by the service).
        "text": text(min_len=0, required=False, default=""),
        "attachment_ids": object_ids(ATTACHMENTS_MAX, required=False, default=()),
        "reply_to_id": object_id(**OPTIONAL),
    },
    "message.edit": {"message_id": object_id(), "text": text(min_len=0)},
    "message.delete": {"message_id": object_id()},
    "message.read": {"room_id": object_id(), "message_id": object_id()},
    "message.delivered": {"message_ids": object_ids(min_items=1)},
    "typing": {"room_id": object_id(), "active": boolean()},
    "reaction.add": {"message_id": object_id(), "emoji": Field(_emoji, schema=EMOJI)},
    "reaction.remove": {"message_id": object_id(), "emoji": Field(_emoji, schema=EMOJI)},
    "call.invite": {"room_id": object_id(), "media": _choice("audio", "video")},
    "call.accept": {"call_id": object_id()},
    "call.reject": {"call_id": object_id()},
    "call.cancel": {"call_id": object_id()},
    "call.hangup": {"call_id": object_id()},
    "call.signal": {
        "call_id": object_id(),
        "sdp": Field(_sdp, required=False),
        "candidate": Field(_candidate, required=False),
    },
    "call.media_state": {"call_id": object_id(), "audio": boolean(), "video": boolean()},
    # Group calls: `media` is what the call starts with, if this join starts it.
    "call.join": {
        "room_id": object_id(),
        "media": _choice("audio", "video", required=False, default="video"),
    },
    "call.leave": {"call_id": object_id()},
    "call.sfu_lost": {"call_id": object_id()},
    # SFU workers (internal API)
    "sfu.register": {
        "url": url("ws", "wss"),
        "health_url": url("http", "https", **OPTIONAL),
        "capacity": integer(1, WORKER_CAPACITY_MAX),
        "version": text(max_len=64),
    },
    "sfu.heartbeat": {
        "peers": integer(0, WORKER_CAPACITY_MAX * 10),
        "tracks": integer(0, WORKER_CAPACITY_MAX * 100),
        "rooms": integer(0, WORKER_CAPACITY_MAX * 10),
        "cpu": number(0, 64),  # cores
        "capacity": integer(1, WORKER_CAPACITY_MAX),
        "draining": boolean(),
        "calls": records(WORKER_CALL, WORKER_CALLS_MAX),
    },
    "sfu.events": {"events": records(WORKER_EVENT, WORKER_EVENTS_MAX)},
    "calls": {
        "before": object_id(**OPTIONAL),
        "limit": integer(1, 100, required=False, default=50),
    },
    "history": {
        "before": object_id(**OPTIONAL),
        "after": object_id(**OPTIONAL),
        "limit": integer(1, 100, required=False, default=50),
        "changed_after": integer(0, 2**53, **OPTIONAL),
        "around": object_id(**OPTIONAL),
    },
    "search": {
        "q": text(max_len=200),
        "room_id": object_id(**OPTIONAL),
        "before": object_id(**OPTIONAL),
        "limit": integer(1, 50, required=False, default=20),
    },
}


# Changes: every field is optional, but one at least must be given.
CHANGES = frozenset({"user.update", "room.update"})


def validate(name: str, data: Mapping[str, Any]) -> Doc:
    """Clean `data` against schema `name`: known fields only, each checked (null is not a
    value: it is refused like any other wrong type); absent optional fields take their
    default."""
    if name in CHANGES and not data:
        raise InvalidRequest("nothing to change")
    return clean(SCHEMAS[name], data)


def json_schema(name: str) -> Doc:
    """Schema `name` as a JSON Schema object (2020-12), for the OpenAPI document."""
    return object_schema(SCHEMAS[name]) | ({"minProperties": 1} if name in CHANGES else {})


def clean(schema: Mapping[str, Field], data: Mapping[str, Any]) -> Doc:
    fields.only(data, set(schema))
    out: Doc = {}
    for key, spec in schema.items():
        if key in data:
            out[key] = spec.check(data[key], key)
        elif spec.required:
            raise InvalidRequest(f"{key} is required", field=key)
        else:
            out[key] = spec.default
    return out
