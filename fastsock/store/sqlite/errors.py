"""Which SQLite failures mean "the database cannot be used right now" (503, try again), as
opposed to bugs or refused writes. `fastsock.store.errors.is_unavailable` should consult
`is_unavailable` here."""

from __future__ import annotations

import sqlite3


class Closed(Exception):
    """The store was closed (the server is shutting down) or not prepared yet."""


# Primary result codes (the low byte of an extended code) of transient or environmental
# failures: the disk, the file system or the lock, never the data or the query.
_UNAVAILABLE_CODES = frozenset(
    {
        5,  # SQLITE_BUSY: a lock held past busy_timeout (e.g. another process)
        6,  # SQLITE_LOCKED
        7,  # SQLITE_NOMEM
        8,  # SQLITE_READONLY: file or directory became read-only
        10,  # SQLITE_IOERR (all extended I/O errors)
        13,  # SQLITE_FULL: disk full
        14,  # SQLITE_CANTOPEN
        15,  # SQLITE_PROTOCOL: WAL lock protocol failure
    }
)


def is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, Closed):
        return True
    if isinstance(exc, sqlite3.OperationalError):
        code = getattr(exc, "sqlite_errorcode", None)
        return code is not None and code & 0xFF in _UNAVAILABLE_CODES
    return False
