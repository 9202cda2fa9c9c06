"""Refresh tokens by jti. Tokens of one login share a `family`. Expired tokens read as absent
and are deleted at start-up and a few at a time as new ones are issued (Mongo's TTL index)."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from fastsock.store.sqlite.codec import Doc, flag, ident, ms, now_ms, when
from fastsock.store.sqlite.columns import ID, Column, Table
from fastsock.store.sqlite.engine import Database
from fastsock.store.sqlite.schema import purge_expired_tokens

TABLE = Table(
    "refresh_tokens",
    ID,  # the jti
    Column("user_id", ident),
    Column("family"),
    Column("issued_at", ms, when),
    Column("expires_at", ms, when),
    Column("used_at", ms, when, default=None),
    Column("revoked", flag, bool, default=False),
)


def _insert(conn: sqlite3.Connection, doc: Doc, now_ms: int) -> None:
    TABLE.insert(conn, doc)
    purge_expired_tokens(conn, now_ms)  # usually none or a few: the index finds them


def _get(conn: sqlite3.Connection, jti: str, now_ms: int) -> Doc | None:
    return TABLE.one(conn, "WHERE id = ? AND expires_at > ?", (jti, now_ms))


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


def _revoke_user(conn: sqlite3.Connection, user_id: str) -> list[str]:
    rows = conn.execute(
        "UPDATE refresh_tokens SET revoked = 1 WHERE user_id = ? AND revoked = 0 RETURNING family",
        (user_id,),
    )
    return list(dict.fromkeys(family for (family,) in rows))


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
        await self.db.write("tokens.insert", _insert, doc, now_ms())

    async def get(self, jti: str) -> Doc | None:
        return await self.db.read("tokens.get", _get, jti, now_ms())

    async def mark_used(self, jti: str, at: datetime) -> bool:
        return await self.db.write("tokens.mark_used", _mark_used, jti, ms(at), now_ms())

    async def family_revoked(self, family: str) -> bool:
        return await self.db.read("tokens.family_revoked", _family_revoked, family)

    async def revoke_family(self, family: str) -> None:
        await self.db.write("tokens.revoke_family", _revoke_family, family)

    async def revoke_user(self, user_id: str) -> list[str]:
        return await self.db.write("tokens.revoke_user", _revoke_user, str(user_id))
