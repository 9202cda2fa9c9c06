"""The MongoDB store: the client, its indexes, and the repositories built on it."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

from pymongo import AsyncMongoClient, monitoring
from pymongo.errors import ConnectionFailure, PyMongoError

from fastsock.store.mongo.bans import Bans
from fastsock.store.mongo.calls import Calls
from fastsock.store.mongo.deliveries import Deliveries
from fastsock.store.mongo.memberships import Memberships
from fastsock.store.mongo.messages import Messages
from fastsock.store.mongo.rooms import Rooms
from fastsock.store.mongo.sfu_workers import SfuWorkers
from fastsock.store.mongo.tokens import RefreshTokens
from fastsock.store.mongo.transfer import MongoTransfer
from fastsock.store.mongo.uploads import Uploads
from fastsock.store.mongo.users import Users

log = logging.getLogger("fastsock.store")

# Requests fail fast (503) while the database is away instead of hanging for pymongo's 30 s.
SERVER_SELECTION_TIMEOUT_MS = 3000
CONNECT_TIMEOUT_MS = 2000

Observe = Callable[[str, float], None]


class _CommandTimer(monitoring.CommandListener):
    """Feeds fastsock_db_operation_seconds from pymongo's command monitoring."""

    def __init__(self, observe: Observe) -> None:
        self._observe = observe

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        pass

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self._observe(event.command_name, event.duration_micros / 1e6)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._observe(event.command_name, event.duration_micros / 1e6)


class MongoStore:
    def __init__(self, uri: str, *, observe: Observe | None = None) -> None:
        listeners = [_CommandTimer(observe)] if observe else []
        self.client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
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
        self.rooms = Rooms(db.rooms, db.memberships)
        self.memberships = Memberships(db.memberships)
        self.messages = Messages(db.messages)
        self.deliveries = Deliveries(db.deliveries)
        self.uploads = Uploads(db.uploads)
        self.calls = Calls(db.calls)
        self.sfu_workers = SfuWorkers(db.sfu_workers)
        self.bans = Bans(db.bans)
        self.transfer = MongoTransfer(db)
        # For the start-up line: never the credentials or the options.
        self.description = "MongoDB at " + re.sub(r"//[^@/]*@", "//", uri).split("?")[0]

    async def prepare(self, timeout_s: float) -> None:
        """Wait for the server, create the indexes (a no-op for ones that exist with the same
        spec) and remove what an interrupted room creation left."""
        deadline = time.monotonic() + timeout_s
        while not await self.ping():
            if time.monotonic() > deadline:
                raise ConnectionFailure("database did not answer in time")
        repos = (self.users, self.tokens, self.rooms, self.memberships, self.messages)
        more = (self.deliveries, self.uploads, self.calls, self.sfu_workers, self.bans)
        for repo in (*repos, *more):
            await repo.create_indexes()
        if removed := await self.rooms.repair():
            log.warning("orphan_memberships_removed", extra={"fields": {"count": removed}})

    async def ping(self, timeout_s: float = 2.0) -> bool:
        try:
            await self.db.command("ping", maxTimeMS=int(timeout_s * 1000))
        except PyMongoError:
            return False
        return True

    async def close(self) -> None:
        await self.client.close()
