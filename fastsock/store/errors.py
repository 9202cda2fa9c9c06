"""Store-level errors, so services never import a database driver."""

from __future__ import annotations

from pymongo.errors import ConnectionFailure

from fastsock.store.base import Duplicate
from fastsock.store.sqlite import errors as sqlite_errors

__all__ = ["Duplicate", "is_unavailable"]


def is_unavailable(exc: BaseException) -> bool:
    """True for errors that mean "the database cannot be used right now" (503, try again)."""
    return isinstance(exc, ConnectionFailure) or sqlite_errors.is_unavailable(exc)
