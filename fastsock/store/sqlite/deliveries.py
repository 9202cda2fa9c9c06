"""Deliveries: the first time each recipient's client confirmed a message."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta

from fastsock.store.sqlite.codec import EPOCH, ms, when
from fastsock.store.sqlite.columns import Column, Table
from fastsock.store.sqlite.engine import Database

# Read and written whole only by transfer.py; record() inserts the rows itself.
TABLE = Table(
    "deliveries",
    Column("message_id", str),
    Column("user_id", str),
    Column("delivered_at", ms, when),
)


def _record(conn: sqlite3.Connection, user_id: str, message_ids: list[str], at: int) -> set[str]:
    new = set()
    for message_id in dict.fromkeys(message_ids):
        cursor = conn.execute(
            "INSERT INTO deliveries (message_id, user_id, delivered_at) VALUES (?, ?, ?)"
            " ON CONFLICT (message_id, user_id) DO NOTHING",
            (message_id, user_id, at),
        )
        if cursor.rowcount == 1:
            new.add(message_id)
    return new


def _for_message(conn: sqlite3.Connection, message_id: str) -> dict[str, datetime]:
    rows = conn.execute(
        "SELECT user_id, delivered_at FROM deliveries WHERE message_id = ?", (message_id,)
    )
    return {user_id: EPOCH + timedelta(milliseconds=at) for user_id, at in rows}


class Deliveries:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(self, user_id: str, message_ids: list[str], at: datetime) -> set[str]:
        if not message_ids:
            return set()
        ids = [str(m) for m in message_ids]
        return await self.db.write("deliveries.record", _record, str(user_id), ids, ms(at))

    async def for_message(self, message_id: str) -> dict[str, datetime]:
        return await self.db.read("deliveries.for_message", _for_message, str(message_id))
