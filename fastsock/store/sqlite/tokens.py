"""Refresh tokens by jti. Tokens of one login share a `family`. Expired tokens read as absent
and are deleted at start-up and a few at a time as new ones are issued (Mongo's TTL index)."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

from fastsock.store.sqlite.codec import Doc, flag, ident, insert_sql, ms, now_ms, when
from fastsock.store.sqlite.engine import Database
from fastsock.store.sqlite.schema import purge_expired_tokens

COLUMNS = "id, user_id, family, issued_at, expires_at, used_at, revoked"
STORED = ("id", "user_id", "family", "issued_at", "expires_at", "used_at", "revoked")
_INSERT = insert_sql("refresh_tokens", STORED)


def to_doc(row: tuple[Any, ...]) -> Doc:
    return {
        "_id": row[0],
        "user_id": row[1],
        "family": row[2],
        "issued_at": when(row[3]),
        "expires_at": when(row[4]),
        "used_at": when(row[5]),
        "revoked": bool(row[6]),
    }


def encode(doc: Doc) -> tuple[Any, ...]:
    return (
        str(doc["_id"]),
        ident(doc["user_id"]),
        doc["family"],
        ms(doc["issued_at"]),
        ms(doc["expires_at"]),
        ms(doc.get("used_at")),
        flag(doc.get("revoked", False)),
    )


def _insert(conn: sqlite3.Connection, row: tuple[Any, ...], now_ms: int) -> None:
    conn.execute(_INSERT, row)
    purge_expired_tokens(conn, now_ms)  # usually none or a few: the index finds them


def _get(conn: sqlite3.Connection, jti: str, now_ms: int) -> Doc | None:
    row = conn.execute(
        f"SELECT {COLUMNS} FROM refresh_tokens WHERE id = ? AND expires_at > ?", (jti, now_ms)
    ).fetchone()
    return to_doc(row) if row else None


def _mark_used(conn: sqlite3.Connection, jti: str, at: int, now_ms: int) -> bool:
    cursor = conn.execute(
        "UPDATE refresh_tokens SET used_at = ?"
        " WHERE id = ? AND used_at IS NULL AND revoked = 0 AND expires_at > ?",
        (at, jti, now_ms),
    )
    return cursor.rowcount == 1


def _family_revoked(conn: sqlite3.Connection, family: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM refresh_tokens WHERE family = ? AND revoked = 1 LIMIT 1", (family,)
    ).fetchone()
    return row is not None


def _revoke_family(conn: sqlite3.Connection, family: str) -> None:
    conn.execute(
        "UPDATE refresh_tokens SET revoked = 1 WHERE family = ? AND revoked = 0", (family,)
    )


class RefreshTokens:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert(
        self, jti: str, user_id: str, family: str, issued_at: datetime, expires_at: datetime
    ) -> None:
        doc = {
            "_id": jti,
            "user_id": user_id,
            "family": family,
            "issued_at": issued_at,
            "expires_at": expires_at,
        }
        await self.db.write("tokens.insert", _insert, encode(doc), now_ms())

    async def get(self, jti: str) -> Doc | None:
        return await self.db.read("tokens.get", _get, jti, now_ms())

    async def mark_used(self, jti: str, at: datetime) -> bool:
        return await self.db.write("tokens.mark_used", _mark_used, jti, ms(at), now_ms())

    async def family_revoked(self, family: str) -> bool:
        return await self.db.read("tokens.family_revoked", _family_revoked, family)

    async def revoke_family(self, family: str) -> None:
        await self.db.write("tokens.revoke_family", _revoke_family, family)
