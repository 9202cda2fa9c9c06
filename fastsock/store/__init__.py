"""Everything that talks to the database. Services call the repositories of store/base.py;
`open_store` picks the backend: SQLite (embedded, the default) or MongoDB (FASTSOCK_MONGO_URI)."""

from __future__ import annotations

from collections.abc import Callable

from fastsock.config import Settings
from fastsock.store.base import Store
from fastsock.store.errors import Duplicate, is_unavailable
from fastsock.store.locations import SQLITE_FILE, open_at

__all__ = ["SQLITE_FILE", "Duplicate", "Store", "is_unavailable", "open_store"]


def open_store(settings: Settings, observe: Callable[[str, float], None] | None = None) -> Store:
    location = settings.mongo_uri or settings.data_dir / SQLITE_FILE
    return open_at(location, synchronous=settings.sqlite_synchronous, observe=observe)
