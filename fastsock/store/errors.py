"""Store-level errors, so services never import pymongo."""

from __future__ import annotations

from pymongo.errors import ConnectionFailure


class Duplicate(Exception):
    """A unique index refused a write."""


def is_unavailable(exc: BaseException) -> bool:
    """True for errors that mean "the database cannot be reached right now"."""
    return isinstance(exc, ConnectionFailure)
