"""Values between documents and columns: times as INTEGER milliseconds since the epoch, flags
as 0/1, small nested values as JSON text, ids as their 24-hex strings."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

Doc = dict[str, Any]
Encoder = Callable[[Any], Any]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


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


def assignments(
    changes: Mapping[str, Any], encoders: Mapping[str, Encoder]
) -> tuple[list[str], list[Any]]:
    """`col = ?` terms for an UPDATE. Only whitelisted field names reach the SQL text."""
    terms, params = [], []
    for field, value in changes.items():
        encode = encoders.get(field)
        if encode is None:
            raise ValueError(f"cannot set field {field!r}")
        terms.append(f"{field} = ?")
        params.append(encode(value))
    return terms, params


def conditions(
    expect: Mapping[str, Any], encoders: Mapping[str, Encoder]
) -> tuple[list[str], list[Any]]:
    """Plain equality terms for a WHERE (None matches NULL)."""
    terms, params = [], []
    for field, value in expect.items():
        encode = encoders.get(field)
        if encode is None:
            raise ValueError(f"cannot match on field {field!r}")
        if value is None:
            terms.append(f"{field} IS NULL")
        else:
            terms.append(f"{field} = ?")
            params.append(encode(value))
    return terms, params


def unique_columns(exc: sqlite3.IntegrityError) -> tuple[str, ...]:
    """The columns of the unique key that refused a write ("UNIQUE constraint failed: t.a,
    t.b" -> ("a", "b")); empty for any other integrity error."""
    if getattr(exc, "sqlite_errorname", "") not in (
        "SQLITE_CONSTRAINT_UNIQUE",
        "SQLITE_CONSTRAINT_PRIMARYKEY",
    ):
        return ()
    _, _, cols = str(exc).partition(":")
    return tuple(c.strip().rpartition(".")[2] for c in cols.split(","))


def insert_sql(table: str, columns: tuple[str, ...]) -> str:
    marks = ", ".join("?" * len(columns))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"


def upsert_sql(table: str, columns: tuple[str, ...], key: tuple[str, ...]) -> str:
    """Insert, or replace every other column of the row with the same key (keeping its rowid,
    so update triggers run instead of delete-and-insert)."""
    sets = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
    return f"{insert_sql(table, columns)} ON CONFLICT ({', '.join(key)}) DO UPDATE SET {sets}"
