"""`fastsock backup`: the embedded database, its local uploads and the generated JWT secret, in
one `.tar.gz` that `fastsock restore` checks before it changes anything.

The archive (mode 0600: it holds password hashes, messages and perhaps the JWT secret):

- `fastsock.db`: an online snapshot of the database (absent with MongoDB: see `mongo_guidance`),
- `jwt-secret`: the data dir's generated secret, whenever the file exists (a cron job's
  environment may set FASTSOCK_JWT_SECRET while the server uses the file); `jwt_secret` in the
  manifest says which one the backup's settings used ("env", "file" or "none"),
- `uploads/<xx>/<key>`: the local upload files the snapshot references (all of them with
  MongoDB, whose database is not in the archive; none with S3),
- `manifest.json`, last: format, versions, counts, and each member's size and sha256.

Derived state is left out (`turnserver.conf`, rendered by `fastsock turn`; temporary files).

The snapshot. SQLite's backup API copies the database in ONE step: one read transaction, which
in WAL mode never blocks the server's writer (nor waits for it), so the snapshot is the state
at one commit while the server keeps committing. Copying in small steps with pauses would not
help but hurt: each step is a new read transaction, and a commit between two steps restarts the
copy from the first page, so under steady writes it might never end. `VACUUM INTO` would also be
one read transaction, but it rebuilds every table and index (far more CPU for the same
snapshot). The price of the one step: while it runs, the WAL cannot be checkpointed past the
snapshot, so it grows by the writes made meanwhile (the server's checkpoints reuse it after,
and truncate it when it is above journal_size_limit).

Uploads are copied AFTER the snapshot. A file is written (and renamed into place) before its
row is inserted, and deleted before its row, so every upload the snapshot references is in the
archive (`missing` in the manifest counts exceptions: a file removed by hand, or by the garbage
collector between the snapshot and the copy, whose row the restored server collects again).
Files the snapshot does not reference are left out.

Where: the snapshot is staged in the data dir (its filesystem holds the database already); only
the compressed archive is written next to OUT, under a temporary name, fsynced, then renamed:
OUT is either the previous file or the complete new archive, never half of one. OUT may not be
inside the data dir or the upload dir: the rename would replace whatever file has its name.
Each staging directory is locked while in use; one left by a killed run is removed by the next.

Restoring is `fastsock restore` (restore.py). Exit statuses are below.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import sqlite3
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastsock import __version__
from fastsock.blobs.local import LocalBlobs
from fastsock.config import JWT_SECRET_FILE, Settings
from fastsock.config_values import PREFIX
from fastsock.services.uploads import thumb_key
from fastsock.store.locations import SQLITE_FILE
from fastsock.store.sqlite.engine import BUSY_TIMEOUT_S, FILE_MODE

# Exit statuses (besides 2: usage or configuration error, as for every command).
OK = 0
FAILED = 1  # nothing written at OUT / nothing changed in the data dir
DATABASE_NOT_INCLUDED = 3  # MongoDB: dump it with mongodump (the guidance is printed)

FORMAT = "fastsock-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DB_MEMBER = SQLITE_FILE
SECRET_MEMBER = JWT_SECRET_FILE
UPLOADS = "uploads"
JWT_SOURCES = ("env", "file", "none")  # the manifest's `jwt_secret`
COUNTED = ("users", "rooms", "memberships", "messages", "reactions", "uploads")
CHUNK = 1024 * 1024
ARCHIVE_STAGING = ".fastsock-backup-"  # next to OUT
SNAPSHOT_STAGING = ".backup-"  # in the data dir
# A staging directory is a leftover when unlocked and older than this: a live run locks its
# own right after creating it.
STALE_AFTER_S = 60.0


Manifest = dict[str, Any]  # as JSON: see _fill


class BackupError(Exception):
    """Backup or restore refused or failed; the message is one line for the operator."""


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int
    summary: str  # for stdout
    notes: tuple[str, ...] = ()  # warnings and guidance, for stderr


# --- backup -------------------------------------------------------------------------------------


def backup(settings: Settings, out: Path) -> Outcome:
    out = out.expanduser()
    if out.is_dir():
        raise BackupError(
            f"{out} is a directory: name the archive file, e.g. {out}/fastsock.tar.gz"
        )
    if not out.parent.is_dir():
        raise BackupError(f"{out.parent} does not exist")
    _refuse_live_place(settings, out)
    notes: list[str] = []
    db_path = settings.data_dir / SQLITE_FILE
    if settings.embedded_db and not db_path.is_file():
        raise BackupError(f"no database at {db_path} (check {PREFIX}DATA_DIR)")
    if not settings.embedded_db:
        notes.extend(mongo_guidance(settings.mongo_uri or ""))
    local_uploads = settings.blob_backend == "local"
    if not local_uploads:
        notes.append(
            f"uploads are in the S3 bucket {settings.s3_bucket} and not in this archive: "
            "protect them with the bucket's versioning or replication"
        )
    if not settings.embedded_db and not local_uploads:
        return Outcome(DATABASE_NOT_INCLUDED, "fastsock backup: nothing to archive", tuple(notes))
    with contextlib.ExitStack() as stack:
        staging = stack.enter_context(staging_dir(out.parent, ARCHIVE_STAGING))
        snapshots = (
            stack.enter_context(staging_dir(settings.data_dir, SNAPSHOT_STAGING))
            if settings.embedded_db
            else None
        )
        partial = staging / "archive.tar.gz"
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
            with os.fdopen(fd, "wb") as raw:
                # Level 6, gzip's default: on chat-like text 9 saved 0.3% for 13% more CPU.
                with tarfile.open(fileobj=raw, mode="w:gz", compresslevel=6) as tar:
                    manifest = _fill(tar, settings, snapshots, notes)
                raw.flush()
                os.fsync(raw.fileno())  # the whole gzip stream, trailer included, before the rename
        except OSError as exc:
            if exc.filename is not None:  # reading an upload, say
                raise
            raise BackupError(f"cannot write the archive in {out.parent}: {exc.strerror}") from None
        os.replace(partial, out)
    fsync_dir(out.parent)
    status = OK if settings.embedded_db else DATABASE_NOT_INCLUDED
    return Outcome(status, describe("backup", "wrote", out, manifest), tuple(notes))


def _refuse_live_place(settings: Settings, out: Path) -> None:
    """Refuse an OUT inside the data dir or the upload dir (its rename would replace the
    database, an upload...). Compared by device and inode, so symlinks and bind mounts do not
    hide it."""
    places = {_identity(p): p for p in (settings.data_dir, settings.uploads_path) if p.exists()}
    directory = out.parent.resolve()
    for parent in (directory, *directory.parents):
        if (place := places.get(_identity(parent))) is not None:
            raise BackupError(
                f"{out} is inside {place}, which holds the live data: write the archive elsewhere"
            )


def _identity(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_dev, info.st_ino


@contextlib.contextmanager
def staging_dir(parent: Path, prefix: str, stale_after: float = STALE_AFTER_S) -> Iterator[Path]:
    """A private temporary directory in `parent`, locked while in use. Unlocked ones with the
    same prefix, left by a killed run (perhaps a plaintext copy of the database), are removed
    first."""
    for leftover in parent.glob(f"{prefix}*"):
        _remove_if_stale(leftover, stale_after)
    with tempfile.TemporaryDirectory(dir=parent, prefix=prefix) as tmp:
        fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield Path(tmp)
        finally:
            os.close(fd)


def _remove_if_stale(path: Path, stale_after: float) -> None:
    try:
        if time.time() - path.lstat().st_mtime < stale_after:
            return  # just made: its owner may not hold its lock yet
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return  # gone meanwhile, or not a directory: not ours
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        shutil.rmtree(path, ignore_errors=True)
    except BlockingIOError:
        pass  # a running backup or restore's
    finally:
        os.close(fd)


def _fill(
    tar: tarfile.TarFile, settings: Settings, snapshots: Path | None, notes: list[str]
) -> Manifest:
    """Add the members: the snapshot first (staged in `snapshots`, without it: no database),
    then the secret and the uploads, the manifest last. Returns the manifest."""
    members: dict[str, Any] = {}
    manifest: Manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fastsock_version": __version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "database": {"kind": "mongodb", "included": False},
    }
    referenced: set[str] | None = None  # None: no snapshot, every stored upload
    if snapshots is not None:
        snapshot = snapshots / DB_MEMBER
        manifest["database"], referenced = _snapshot(settings.data_dir / SQLITE_FILE, snapshot)
        members[DB_MEMBER] = _add_file(tar, DB_MEMBER, snapshot)
    secret = settings.data_dir / JWT_SECRET_FILE
    if secret.is_file():
        members[SECRET_MEMBER] = _add_file(tar, SECRET_MEMBER, secret)
    if settings.jwt_secret:
        manifest["jwt_secret"] = "env"
        notes.append(
            f"tokens are signed with {PREFIX}JWT_SECRET, which is not in the archive: keep it "
            "with the backup, or users sign in again after a restore"
        )
    else:
        manifest["jwt_secret"] = "file" if SECRET_MEMBER in members else "none"
    uploads: dict[str, Any] = {"backend": settings.blob_backend, "included": False}
    if settings.blob_backend == "local":
        files = _add_uploads(tar, settings.uploads_path, referenced, members)
        missing = sorted((referenced or set()) - files)
        uploads.update(
            included=True,
            files=len(files),
            bytes=sum(members[_member(key)]["bytes"] for key in files),
            missing=missing,
        )
        if missing:
            notes.append(
                f"{_plural(len(missing), 'upload file')} the database references not found in "
                f"{settings.uploads_path}: listed as `missing` in the manifest"
            )
    manifest["uploads"] = uploads
    manifest["members"] = members
    _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=2).encode() + b"\n")
    return manifest


def _snapshot(source: Path, target: Path) -> tuple[dict[str, Any], set[str]]:
    """Copy the live database to `target` in one read transaction (see the module docstring);
    return its manifest entry and the upload keys it references."""
    try:
        src = sqlite3.connect(f"file:{source}?mode=rw", uri=True, timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open {source}: {exc}") from None
    try:
        src.execute("PRAGMA query_only = 1")
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)  # pages=-1: all of it in one step, one snapshot
            # A plain rollback-journal file: readable on its own, no -wal or -shm beside it.
            dst.execute("PRAGMA journal_mode = DELETE")
            return _describe_db(dst), _upload_keys(dst)
        finally:
            dst.close()
    except sqlite3.Error as exc:
        raise BackupError(f"cannot copy {source} into {target.parent}: {exc}") from None
    finally:
        src.close()


def _describe_db(conn: sqlite3.Connection) -> dict[str, Any]:
    check = conn.execute("PRAGMA quick_check").fetchone()[0]
    if check != "ok":
        raise BackupError(f"the database fails SQLite's quick_check: {check}")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version < 1:
        raise BackupError("the file is not a FastSock database (no schema version)")
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    counts = {
        name: conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
        for name in COUNTED
        if name in tables
    }
    return {"kind": "sqlite", "included": True, "schema_version": version, "counts": counts}


def _upload_keys(conn: sqlite3.Connection) -> set[str]:
    """The blob keys the uploads table references: each file's and its thumbnail's."""
    keys: set[str] = set()
    for upload_id, thumbnail_size in conn.execute("SELECT id, thumbnail_size FROM uploads"):
        keys.add(upload_id)
        if thumbnail_size is not None:
            keys.add(thumb_key(upload_id))
    return keys


def _member(key: str) -> str:
    return f"{UPLOADS}/{key[:2]}/{key}"


def _add_uploads(
    tar: tarfile.TarFile, root: Path, wanted: set[str] | None, members: dict[str, Any]
) -> set[str]:
    """Archive the stored files whose keys are `wanted` (None: all); returns the keys added."""
    added: set[str] = set()
    for key in LocalBlobs(root).stored_keys():
        if wanted is not None and key not in wanted:
            continue
        try:
            members[_member(key)] = _add_file(tar, _member(key), root / key[:2] / key)
        except FileNotFoundError:  # deleted since it was listed: not in the snapshot either
            continue
        added.add(key)
    return added


class _Hashing(io.RawIOBase):
    """A reader that hashes what passes through it (tarfile reads each member once)."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._f.read(len(buffer))
        buffer[: len(data)] = data
        self.digest.update(data)
        return len(data)


def _add_file(tar: tarfile.TarFile, name: str, path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        info = _info(name, os.fstat(f.fileno()).st_size)
        reader = _Hashing(f)
        tar.addfile(info, reader)
    return {"bytes": info.size, "sha256": reader.digest.hexdigest()}


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_info(name, len(data)), io.BytesIO(data))


def _info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = FILE_MODE
    info.mtime = int(datetime.now(UTC).timestamp())
    return info


# --- MongoDB ------------------------------------------------------------------------------------


def redact(uri: str) -> str:
    """The URI with its password replaced by <password>."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    user, _, host = parts.netloc.rpartition("@")
    name = user.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{name}:<password>@{host}"))


def mongo_guidance(uri: str) -> list[str]:
    """What to run instead: this command does not pretend to back MongoDB up."""
    shown = redact(uri)
    parts = urlsplit(shown)
    database = parts.path.strip("/")
    query = dict(parse_qsl(parts.query))
    # --oplog dumps a whole deployment only: no database in the path. The path also names the
    # authentication database when authSource does not, so it moves there.
    if parts.username and database and "authSource" not in query:
        query["authSource"] = database
    whole = urlunsplit(parts._replace(path="/", query=urlencode(query, safe="<>")))
    database = database or "fastsock"
    return [
        f"the database is MongoDB ({PREFIX}MONGO_URI) and is not in this archive; dump it with "
        "mongodump (replace <password>):",
        f"  replica set, consistent at one point in time: mongodump --uri='{whole}' --oplog "
        "--archive=fastsock-mongo.gz --gzip",
        f"  standalone (stop the servers first for a consistent copy): mongodump "
        f"--uri='{shown}' --archive=fastsock-mongo.gz --gzip",
        # mongorestore refuses --oplogReplay together with --nsInclude.
        "  restore a replica-set dump with: mongorestore --uri=... --archive=fastsock-mongo.gz "
        "--gzip --drop --oplogReplay",
        "  restore a standalone dump with: mongorestore --uri=... --archive=fastsock-mongo.gz "
        f"--gzip --drop --nsInclude='{database}.*'",
    ]


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def describe(command: str, verb: str, path: Path, manifest: Manifest) -> str:
    parts = []
    database = manifest.get("database", {})
    if database.get("included"):
        counts = database.get("counts", {})
        parts.append(
            f"schema {database.get('schema_version')}, {_plural(counts.get('users', 0), 'user')}, "
            f"{_plural(counts.get('messages', 0), 'message')}"
        )
    uploads = manifest.get("uploads", {})
    if uploads.get("included"):
        parts.append(_plural(uploads.get("files", 0), "upload file"))
    return f"fastsock {command}: {verb} {path} ({'; '.join(parts) or 'nothing'})"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def report(outcome: Outcome) -> int:
    print(outcome.summary, flush=True)
    for note in outcome.notes:
        print(note, file=sys.stderr)
    return outcome.status
