"""The MongoDB client, its indexes, and the repositories built on it."""

from __future__ import annotations

import time
from typing import Any

from pymongo import AsyncMongoClient, monitoring
from pymongo.errors import ConnectionFailure, PyMongoError

from fastsock.store.calls import Calls
from fastsock.store.deliveries import Deliveries
from fastsock.store.memberships import Memberships
from fastsock.store.messages import Messages
from fastsock.store.rooms import Rooms
from fastsock.store.tokens import RefreshTokens
from fastsock.store.uploads import Uploads
from fastsock.store.users import Users

# Requests fail fast (503) while the database is away instead of hanging for pymongo's 30 s.
SERVER_SELECTION_TIMEOUT_MS = 3000
CONNECT_TIMEOUT_MS = 2000


class _CommandTimer(monitoring.CommandListener):
    """Feeds fastsock_db_operation_seconds from pymongo's command monitoring."""

    def __init__(self, observe: Any) -> None:
        self._observe = observe

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        pass

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self._observe(event.command_name, event.duration_micros / 1e6)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._observe(event.command_name, event.duration_micros / 1e6)


class Store:
    def __init__(self, uri: str, *, observe_command: Any | None = None) -> None:
        listeners = [_CommandTimer(observe_command)] if observe_command else []
        self.client: AsyncMongoClient = AsyncMongoClient(
            uri,
            tz_aware=True,
            serverSelectionTimeoutMS=SERVER_SELECTION_TIMEOUT_MS,
            connectTimeoutMS=CONNECT_TIMEOUT_MS,
            event_listeners=listeners,
        )
        db = self.client.get_default_database("fastsock")
        self.db = db
        self.users = Users(db.users)
        self.tokens = RefreshTokens(db.refresh_tokens)
        self.rooms = Rooms(db.rooms)
        self.memberships = Memberships(db.memberships)
        self.messages = Messages(db.messages)
        self.deliveries = Deliveries(db.deliveries)
        self.uploads = Uploads(db.uploads)
        self.calls = Calls(db.calls)
        self.text_search = False  # set by create_indexes: does the server do $text?

    async def create_indexes(self) -> None:
        """Idempotent: creating an index that exists with the same spec is a no-op."""
        repos = (self.users, self.tokens, self.rooms, self.memberships, self.messages)
        for repo in (*repos, self.deliveries, self.uploads, self.calls):
            await repo.create_indexes()
        self.text_search = await self.messages.probe_text_search()

    async def ping(self, timeout_s: float = 2.0) -> bool:
        try:
            await self.db.command("ping", maxTimeMS=int(timeout_s * 1000))
        except PyMongoError:
            return False
        return True

    async def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not await self.ping():
            if time.monotonic() > deadline:
                raise ConnectionFailure("database did not answer in time")

    async def close(self) -> None:
        await self.client.close()
