"""Input validation shared by the REST API and the WebSocket: services call these on every
client-supplied value, so both transports refuse the same things with the same errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastsock.errors import InvalidRequest
from fastsock.store.ids import is_object_id

# Explicit bidirectional overrides and isolates: they let text display as something else.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def object_id(value: Any, field: str) -> str:
    if not is_object_id(value):
        raise InvalidRequest(f"{field} must be an id", field=field)
    return value.lower()


def object_ids(value: Any, field: str, *, max_items: int) -> list[str]:
    if not isinstance(value, list) or len(value) > max_items:
        raise InvalidRequest(f"{field} must be a list of at most {max_items} ids", field=field)
    return list(dict.fromkeys(object_id(v, field) for v in value))


def text(value: Any, field: str, *, min_len: int = 1, max_len: int, strip: bool = True) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(f"{field} must be a string", field=field)
    if strip:
        value = value.strip()
    if not min_len <= len(value) <= max_len:
        raise InvalidRequest(f"{field} must be {min_len} to {max_len} characters long", field=field)
    if any(_refused(c) for c in value):
        raise InvalidRequest(f"{field} contains control characters", field=field)
    return value


def _refused(c: str) -> bool:
    """C0 (but newline and tab), DEL and C1 controls, bidi overrides, and lone UTF-16
    surrogates (valid in JSON escapes, but not text: no database can store them)."""
    code = ord(c)
    return (
        (code < 32 and c not in "\n\t")
        or 0x7F <= code <= 0x9F
        or 0xD800 <= code <= 0xDFFF
        or c in BIDI_CONTROLS
    )


def boolean(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidRequest(f"{field} must be true or false", field=field)
    return value


def integer(value: Any, field: str, *, low: int, high: int) -> int:
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise InvalidRequest(f"{field} must be a number", field=field) from None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidRequest(f"{field} must be a number from {low} to {high}", field=field)
    return value


def only(data: Mapping[str, Any], allowed: set[str]) -> None:
    """Refuse unknown fields so typos are reported instead of silently ignored."""
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise InvalidRequest(f"unknown field {unknown[0]}", field=unknown[0])
