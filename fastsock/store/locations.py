"""Where a store lives: a MongoDB URI or a SQLite file path, as `fastsock migrate` names them
and as the settings imply; and opening the store there."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from fastsock import tracing
from fastsock.store.base import Store

MONGO_SCHEMES = ("mongodb://", "mongodb+srv://")
SQLITE_HEADER = b"SQLite format 3\x00"
SQLITE_FILE = "fastsock.db"  # the embedded database, in the data dir

Location = str | Path  # a MongoDB URI, or the path of a SQLite file


class UsageError(Exception):
    """A location that cannot name a store; the message is one line for the user."""


def parse(option: str, value: str, *, must_exist: bool) -> Location:
    """A MongoDB URI (checked, not connected to) or a SQLite file path."""
    if value.startswith(MONGO_SCHEMES):
        from pymongo.errors import ConfigurationError
        from pymongo.uri_parser import parse_uri

        if value.startswith("mongodb://"):  # SRV URIs are resolved by DNS: not checked here
            try:
                parse_uri(value)
            except (ConfigurationError, ValueError) as exc:
                raise UsageError(f"{option}: bad MongoDB URI: {exc}") from None
        return value
    if "://" in value or not value.strip():
        raise UsageError(
            f"{option} must be a mongodb:// or mongodb+srv:// URI or a SQLite file path, "
            f"got {value!r}"
        )
    path = Path(value).expanduser()
    if path.is_dir():
        raise UsageError(f"{option}: {path} is a directory, not a SQLite file")
    if must_exist and not path.is_file():
        raise UsageError(f"{option}: no database at {path}")
    if path.is_file() and path.stat().st_size > 0:
        try:
            with path.open("rb") as f:
                header = f.read(len(SQLITE_HEADER))
        except OSError as exc:
            raise UsageError(f"{option}: cannot read {path}: {exc.strerror}") from None
        if header != SQLITE_HEADER:
            raise UsageError(f"{option}: {path} is not a SQLite database")
    if must_exist and not _has_schema(path):  # a source: copied from, never set up
        raise UsageError(f"{option}: {path} is not a FastSock database")
    return path


def _has_schema(path: Path) -> bool:
    """Does the file carry FastSock's schema (a version set by its migrations)? Read-only:
    looking must not change a file that turns out to be someone else's."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return int(conn.execute("PRAGMA user_version").fetchone()[0]) > 0
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return False


def identity(location: Location) -> tuple[object, ...]:
    """What tells two locations apart: a file, or a MongoDB deployment and database."""
    if isinstance(location, Path):
        try:  # the file itself, whatever the name (symlinks, hard links)
            info = location.stat()
        except FileNotFoundError:
            return ("sqlite", os.path.realpath(location))
        return ("sqlite", info.st_dev, info.st_ino)
    from pymongo.uri_parser import parse_uri

    if location.startswith("mongodb://"):
        parsed = parse_uri(location)
        hosts: frozenset[object] = frozenset((str(h).lower(), p) for h, p in parsed["nodelist"])
        database = parsed["database"]
    else:  # SRV: the DNS name stands for the deployment (resolving it needs the network)
        split = urlsplit(location)
        hosts = frozenset([(split.hostname or "").lower()])
        database = split.path.lstrip("/")
    return ("mongo", hosts, database or "fastsock")


def open_at(
    location: Location,
    *,
    synchronous: str = "full",
    observe: Callable[[str, float], None] | None = None,
) -> Store:
    """The store at `location`, not yet prepared (a SQLite file's missing directory is created
    0700 when it is opened; an existing one is left as it is)."""
    # Both backends feed `observe` once per database call: tracing's spans hook in there.
    if isinstance(location, Path):
        from fastsock.store.sqlite import SqliteStore

        traced = tracing.observed_db("sqlite", observe)
        return SqliteStore(location, synchronous=synchronous, observe=traced)
    from fastsock.store.mongo import MongoStore

    return MongoStore(location, observe=tracing.observed_db("mongodb", observe))
