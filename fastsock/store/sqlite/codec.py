"""Values between documents and columns: times as INTEGER milliseconds since the epoch, flags
as 0/1, small nested values as JSON text, ids as their 24-hex strings."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, overload

Doc = dict[str, Any]
Encoder = Callable[[Any], Any]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


@overload
def ms(t: datetime) -> int: ...
@overload
def ms(t: None) -> None: ...
@overload
def ms(t: datetime | None) -> int | None: ...
def ms(t: datetime | None) -> int | None:
    """Milliseconds since the epoch, truncated (what BSON dates keep); naive times are UTC."""
    if t is None:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return (t - EPOCH) // _MS  # integer arithmetic: no float rounding


def now_ms() -> int:
    return (datetime.now(UTC) - EPOCH) // _MS


def when(value: int | None) -> datetime | None:
    return None if value is None else EPOCH + timedelta(milliseconds=value)


def flag(value: Any) -> int:
    return 1 if value else 0


def ident(value: Any) -> str | None:
    """An id as its hex string (str() also accepts an ObjectId from older callers)."""
    return None if value is None else str(value)


def same(value: Any) -> Any:
    return value


def fold(value: Any) -> str | None:
    """Casefolded, for case-insensitive search and ordering."""
    return None if value is None else str(value).casefold()


def to_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def opt_json(value: Any) -> str | None:
    return None if value is None else to_json(value)


def from_json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def id_array(ids: Iterable[Any]) -> str:
    """One bound parameter for `IN (SELECT value FROM json_each(?))`: any number of ids
    without a new statement text (and cache entry) per list length."""
    return to_json([str(i) for i in ids])
