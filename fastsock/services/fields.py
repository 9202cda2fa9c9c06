"""Input validation shared by the REST API and the WebSocket: both transports read every
client document with `parse_json` and `check_document`, and services call the rest on every
client-supplied value, so both refuse the same things with the same errors."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from fastsock.errors import InvalidRequest

# Explicit bidirectional overrides and isolates: they let text display as something else.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# A lone UTF-16 surrogate: JSON escapes can spell one ("\\ud800"), but it is not text. It can be
# neither stored nor sent on as UTF-8, so relaying one would break the recipient's event stream.
SURROGATE = re.compile("[\ud800-\udfff]")
# Client documents nest three levels at most; deeper ones are refused as soon as the parsed
# document is checked, before any service sees it (Python's own parser gives up with
# RecursionError somewhere past a thousand levels, which is refused the same way).
MAX_DEPTH = 16
# Ids are MongoDB ObjectIds in hex. Either case is accepted; the server uses lower case only.
_ID = re.compile(r"[0-9a-fA-F]{24}")


def canonical_id(value: Any) -> str | None:
    """The one form of an id the server uses (24 lower-case hex digits), or None if `value`
    is no id. Every id a client sends goes through here (path, body, query, event)."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        return None
    return value.lower()


def object_id(value: Any, field: str) -> str:
    canonical = canonical_id(value)
    if canonical is None:
        raise InvalidRequest(f"{field} must be an id", field=field)
    return canonical


def object_ids(value: Any, field: str, *, max_items: int) -> list[str]:
    if not isinstance(value, list) or len(value) > max_items:
        raise InvalidRequest(f"{field} must be a list of at most {max_items} ids", field=field)
    return list(dict.fromkeys(object_id(v, field) for v in value))


def text(value: Any, field: str, *, min_len: int = 1, max_len: int, strip: bool = True) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(f"{field} must be a string", field=field)
    # Before trimming: strip() takes some controls (\x1c-\x1f, \x85...) for spaces.
    if any(_refused(c) for c in value):
        raise InvalidRequest(f"{field} contains control characters", field=field)
    checked = value.strip() if strip else value
    if not min_len <= len(checked) <= max_len:
        raise InvalidRequest(f"{field} must be {min_len} to {max_len} characters long", field=field)
    return checked


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


def parse_json(raw: str | bytes, what: str) -> Any:
    """A client's JSON document (a REST body, a WebSocket frame), or invalid_request."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise InvalidRequest(f"{what} is nested more than {MAX_DEPTH} levels deep") from None
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest(f"{what} must be JSON") from None


def check_document(document: dict[str, Any], what: str) -> None:
    """Refuse a parsed client document (a JSON object) whose objects and arrays nest deeper
    than MAX_DEPTH, or that holds a lone surrogate in any key or string. The error names the
    top-level key the fault is under."""
    stack: list[tuple[dict[str, Any] | list[Any], int, str | None]] = [(document, 1, None)]
    while stack:
        node, depth, top = stack.pop()
        if depth > MAX_DEPTH:
            raise InvalidRequest(f"{what} is nested more than {MAX_DEPTH} levels deep", field=top)
        entries: Iterator[tuple[str | None, Any]]
        if isinstance(node, dict):
            if any(SURROGATE.search(key) for key in node):
                raise InvalidRequest(f"{top or what} has a key with a lone surrogate", field=top)
            entries = ((key if top is None else top, value) for key, value in node.items())
        else:
            entries = ((top, value) for value in node)
        for field, value in entries:
            if isinstance(value, str):
                if SURROGATE.search(value):
                    raise InvalidRequest(f"{field} holds a lone UTF-16 surrogate", field=field)
            elif isinstance(value, dict | list):
                stack.append((value, depth + 1, field))


def only(data: Mapping[str, Any], allowed: set[str]) -> None:
    """Refuse unknown fields so typos are reported instead of silently ignored."""
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise InvalidRequest(f"unknown field {unknown[0]}", field=unknown[0])
