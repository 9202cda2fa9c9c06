"""The embedded database: SQLite through the standard library, one file, no server process."""

from fastsock.store.sqlite.errors import is_unavailable
from fastsock.store.sqlite.store import SqliteStore

__all__ = ["SqliteStore", "is_unavailable"]
