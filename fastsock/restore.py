"""`fastsock restore`: put a `fastsock backup` archive's files in place (see backup.py for the
archive).

Locks first. The database file's (the one a running server holds, engine.open_private) and,
with local uploads, the upload directory's (servers hold it shared from start-up,
LocalBlobs.check): a server using either refuses to start meanwhile, and a restore refuses while
one runs, even a test restore into a scratch data dir sharing a live server's upload dir.

Nothing is changed before the whole archive is read into a staging directory in the data dir
and checked: member names (only the archive's own: nothing lands outside the data dir), sizes
and sha256 against the manifest, the manifest's shape and format, free space (before each
member is written), the secret's length, the database's schema version (newer than this
FastSock: refused) and SQLite's quick_check.

Then the uploads are placed, the database (its rename is the point where the restore takes
effect; the new file is locked before it, so no server starts on it while the rest is placed),
the secret, and last the files only the replaced database used are removed. An interrupted
restore leaves the old database with a superset of its files, or the new database (run it
again with --force). Before the rename the old database's WAL is folded into it and removed:
left beside the new file, it would be replayed into it. The server's start-up then migrates an
older schema as usual.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import sqlite3
import tarfile
import zlib
from pathlib import Path
from typing import IO, Any

from fastsock.backup import (
    CHUNK,
    DB_MEMBER,
    FORMAT,
    FORMAT_VERSION,
    JWT_SOURCES,
    MANIFEST,
    OK,
    SECRET_MEMBER,
    UPLOADS,
    BackupError,
    Manifest,
    Outcome,
    describe,
    fsync_dir,
    mongo_guidance,
    staging_dir,
)
from fastsock.blobs.local import KEY, LOCK_FILE, LocalBlobs, copy_atomically, lock_dir
from fastsock.config import JWT_SECRET_FILE, JWT_SECRET_MIN, Settings
from fastsock.config_values import PREFIX
from fastsock.paths import private_dir
from fastsock.store.locations import SQLITE_FILE
from fastsock.store.sqlite import schema
from fastsock.store.sqlite.engine import BUSY_TIMEOUT_S, FILE_MODE, InUse, open_private

STAGING = ".restore-"
# The manifest is read whole, so its size is bounded: a few hundred bytes per member it lists
# (all read before it: it is the last member), plus room for the rest.
MANIFEST_BASE_BYTES = 64 * 1024
MANIFEST_BYTES_PER_MEMBER = 1024


def restore(settings: Settings, archive: Path, force: bool) -> Outcome:
    archive = archive.expanduser()
    if not archive.is_file():
        raise BackupError(f"no archive file at {archive} (restore reads a file, not a pipe)")
    data_dir, db_path = settings.data_dir, settings.data_dir / SQLITE_FILE
    existed, had_dir = db_path.exists(), data_dir.exists()
    uploads = settings.uploads_path if settings.blob_backend == "local" else None
    had_uploads = uploads is not None and uploads.exists()
    lock = _lock_database(db_path)
    changed = False
    try:
        with contextlib.ExitStack() as locks:
            if uploads is not None:
                locks.callback(os.close, _lock_uploads(uploads))
            # Under the database's lock no other restore runs: any staging dir is a leftover.
            with staging_dir(data_dir, STAGING, stale_after=0) as staging:
                manifest = _unpack(archive, staging)
                has_db = manifest["database"]["included"]
                _check_target(settings, manifest, force)
                if has_db:
                    locks.callback(os.close, open_private(staging / DB_MEMBER))
                changed = True
                notes = _place(settings, staging, manifest)
    finally:
        if uploads is not None and not had_uploads and not changed:
            with contextlib.suppress(OSError):  # made for the lock: remove it again
                (uploads / LOCK_FILE).unlink()
                uploads.rmdir()
        os.close(lock)
        if not existed and _is_empty(db_path):  # the file open_private created for the lock
            db_path.unlink()
            if not had_dir:
                with contextlib.suppress(OSError):  # still empty: it was made for the lock too
                    data_dir.rmdir()
    return Outcome(OK, describe("restore", "restored", archive, manifest), tuple(notes))


def _lock_database(db_path: Path) -> int:
    try:
        return open_private(db_path)  # the lock a running server holds: refuse while it runs
    except InUse:
        raise BackupError(f"a FastSock server is running on {db_path}: stop it first") from None
    except OSError as exc:
        raise BackupError(f"cannot open {db_path}: {exc.strerror}") from None


def _lock_uploads(root: Path) -> int:
    try:
        private_dir(root)
        return lock_dir(root, shared=False)
    except BlockingIOError:
        raise BackupError(
            f"a FastSock server is using the upload dir {root}: stop it first (a test restore "
            f"needs its own {PREFIX}UPLOAD_DIR)"
        ) from None
    except OSError as exc:
        raise BackupError(f"cannot lock {root}: {exc.strerror}") from None


def _is_empty(path: Path) -> bool:
    try:
        return path.stat().st_size == 0
    except FileNotFoundError:
        return False


def _unpack(archive: Path, staging: Path) -> Manifest:
    """Extract every member into `staging` and check it against the manifest; changes nothing
    outside `staging`. Member names and free space are checked before anything is written."""
    found: dict[str, dict[str, Any]] = {}
    manifest: Manifest | None = None
    free, needed = shutil.disk_usage(staging).free, 0
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            for info in tar:
                name = info.name
                if not info.isfile() or not _allowed(name) or name in found or manifest:
                    raise BackupError(
                        f"{archive}: unexpected member {name!r}: not a FastSock backup"
                    )
                source = tar.extractfile(info)
                assert source is not None  # a regular file
                if name == MANIFEST:
                    if info.size > MANIFEST_BASE_BYTES + MANIFEST_BYTES_PER_MEMBER * len(found):
                        raise BackupError(
                            f"{archive}: its {MANIFEST} is too large ({info.size} bytes) for "
                            f"{len(found)} members: damaged or not a FastSock backup"
                        )
                    manifest = _parse_manifest(archive, source.read())
                    continue
                needed += info.size
                if needed > free:
                    raise BackupError(
                        f"restoring {archive} needs at least {needed} bytes in {staging.parent}, "
                        f"{free} are free"
                    )
                found[name] = _extract(source, staging / name)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise BackupError(
                f"cannot unpack {archive}: no space left in {staging.parent}"
            ) from None
        raise BackupError(f"{archive} is damaged or not a FastSock backup: {exc}") from None
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise BackupError(f"{archive} is damaged or not a FastSock backup: {exc}") from None
    if manifest is None:
        raise BackupError(f"{archive} has no {MANIFEST}: damaged or not a FastSock backup")
    if manifest["members"] != found:
        if manifest["members"].keys() != found.keys():
            raise BackupError(f"{archive}: its members do not match its manifest")
        raise BackupError(f"{archive}: its members do not match their checksums: damaged")
    if SECRET_MEMBER in found:
        secret = (staging / SECRET_MEMBER).read_text(errors="replace").strip()
        if len(secret) < JWT_SECRET_MIN:
            raise BackupError(f"{archive}: its {SECRET_MEMBER} is too short: damaged")
    if manifest["database"]["included"]:
        _check_database(archive, staging / DB_MEMBER, manifest)
    return manifest


def _extract(source: IO[bytes], target: Path) -> dict[str, Any]:
    """Write one member, durably (before the renames that publish it); its manifest entry."""
    target.parent.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    with os.fdopen(fd, "wb") as out:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return {"bytes": size, "sha256": digest.hexdigest()}


def _allowed(name: str) -> bool:
    if name in (MANIFEST, DB_MEMBER, SECRET_MEMBER):
        return True
    parts = name.split("/")  # uploads/<shard>/<key>, as LocalBlobs stores them
    return (
        len(parts) == 3
        and parts[0] == UPLOADS
        and KEY.fullmatch(parts[2]) is not None
        and parts[1] == parts[2][:2]
    )


class _Malformed(Exception):
    """The manifest lacks a field or has one of the wrong type; the message names it."""


def _field(parent: dict[str, Any], key: str, kind: type) -> Any:
    value = parent.get(key)
    if type(value) is not kind:  # exact: a bool is not a count
        raise _Malformed(key)
    return value


def _parse_manifest(archive: Path, data: bytes) -> Manifest:
    try:
        manifest = json.loads(data)
    except (ValueError, RecursionError):
        raise BackupError(f"{archive}: {MANIFEST} is not valid JSON: damaged") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{archive} is not a FastSock backup")
    version = manifest.get("format_version")
    if type(version) is not int or not 1 <= version <= FORMAT_VERSION:
        raise BackupError(
            f"{archive} has backup format {version!r}; this FastSock reads up to "
            f"{FORMAT_VERSION}: restore it with the FastSock that wrote it "
            f"({manifest.get('fastsock_version')})"
        )
    try:
        _check_shape(manifest)
    except _Malformed as exc:
        raise BackupError(
            f"{archive}: {MANIFEST} is malformed (at {exc}): damaged or not a FastSock backup"
        ) from None
    return manifest


def _check_shape(manifest: Manifest) -> None:
    """Every field restore reads, with its type, and consistent with the member list."""
    members = _field(manifest, "members", dict)
    for name, entry in members.items():
        if type(entry) is not dict or entry.keys() != {"bytes", "sha256"}:
            raise _Malformed(f"members.{name}")
        _field(entry, "bytes", int)
        _field(entry, "sha256", str)
    database = _field(manifest, "database", dict)
    if _field(database, "included", bool) != (DB_MEMBER in members):
        raise _Malformed("database.included")
    if database["included"]:
        _field(database, "schema_version", int)
        _field(database, "counts", dict)
    uploads = _field(manifest, "uploads", dict)
    if _field(uploads, "backend", str) not in ("local", "s3"):
        raise _Malformed("uploads.backend")
    if _field(uploads, "included", bool):
        _field(uploads, "files", int)
    elif any(name.startswith(UPLOADS + "/") for name in members):
        raise _Malformed("uploads.included")
    source = _field(manifest, "jwt_secret", str)
    archived = SECRET_MEMBER in members  # with "env" too, when the data dir had the file
    if (
        source not in JWT_SOURCES
        or (source == "file" and not archived)
        or (source == "none" and archived)
    ):
        raise _Malformed("jwt_secret")


def _check_database(archive: Path, path: Path, manifest: Manifest) -> None:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise BackupError(f"{archive}: its database cannot be read: {exc}") from None
    if check != "ok" or version != manifest["database"]["schema_version"]:
        raise BackupError(f"{archive}: its database fails its checks: damaged")
    if version > schema.VERSION:
        raise BackupError(
            f"{archive} has schema version {version}, newer than this FastSock's "
            f"({schema.VERSION}): restore it with FastSock {manifest.get('fastsock_version')} "
            "or later"
        )


def _check_target(settings: Settings, manifest: Manifest, force: bool) -> None:
    has_db = manifest["database"]["included"]
    if has_db and not settings.embedded_db:
        raise BackupError(
            f"the archive holds an embedded database but {PREFIX}MONGO_URI is set: restore it "
            f"with {PREFIX}MONGO_URI unset, then copy it with `fastsock migrate`"
        )
    has_uploads = manifest["uploads"]["included"]
    if has_uploads and settings.blob_backend != "local":
        raise BackupError(
            f"the archive holds uploads but {PREFIX}BLOB_BACKEND={settings.blob_backend}: "
            "restore with the local backend, then copy the files to the bucket"
        )
    if force:
        return
    present = []
    db_path = settings.data_dir / SQLITE_FILE
    if has_db and db_path.stat().st_size > 0:
        present.append(str(db_path))
    if SECRET_MEMBER in manifest["members"] and (settings.data_dir / JWT_SECRET_FILE).exists():
        present.append(str(settings.data_dir / JWT_SECRET_FILE))
    if has_uploads and any(LocalBlobs(settings.uploads_path).stored_keys()):
        present.append(f"uploads in {settings.uploads_path}")
    if present:
        raise BackupError(
            f"{', '.join(present)} already exist: restore replaces them only with --force"
        )


def _place(settings: Settings, staging: Path, manifest: Manifest) -> list[str]:
    """Move the checked files into place: uploads, the database, the secret, then remove the
    uploads only the replaced database referenced."""
    notes: list[str] = []
    root = settings.uploads_path
    keep: set[str] = set()
    for name in manifest["members"]:
        if name.startswith(UPLOADS + "/"):
            key = name.rpartition("/")[2]
            keep.add(key)
            _place_file(staging / name, root / key[:2] / key)
    if keep:  # the renames durable before the database that references them
        for shard in {key[:2] for key in keep}:
            fsync_dir(root / shard)
        fsync_dir(root)
    has_db = manifest["database"]["included"]
    if has_db:
        db_path = settings.data_dir / SQLITE_FILE
        _retire(db_path)
        os.replace(staging / DB_MEMBER, db_path)
        fsync_dir(settings.data_dir)
    if SECRET_MEMBER in manifest["members"]:
        _place_file(staging / SECRET_MEMBER, settings.data_dir / JWT_SECRET_FILE)
        fsync_dir(settings.data_dir)
    notes.extend(_secret_notes(settings, manifest["jwt_secret"]))
    if manifest["uploads"]["backend"] == "s3":
        notes.append(
            "the uploads were in an S3 bucket, not in the archive: point "
            f"{PREFIX}BLOB_BACKEND and {PREFIX}S3_BUCKET at it"
        )
    if has_db and manifest["uploads"]["included"]:
        _remove_unreferenced(root, keep)
    if not has_db:
        notes.extend(
            [
                "the archive holds no database (it was MongoDB): restore that with mongorestore",
                *mongo_guidance(settings.mongo_uri or "mongodb://localhost/fastsock")[-1:],
            ]
        )
    return notes


def _place_file(source: Path, target: Path) -> None:
    copy_atomically(source, target)  # a hard link on the data dir's filesystem
    if not os.path.samefile(source, target):  # copied to another filesystem: make it durable
        fd = os.open(target, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove_unreferenced(root: Path, keep: set[str]) -> None:
    """The stored files only the replaced database referenced (the new one's are in `keep`)."""
    for key in list(LocalBlobs(root).stored_keys()):
        if key not in keep:
            (root / key[:2] / key).unlink(missing_ok=True)


def _secret_notes(settings: Settings, source: str) -> list[str]:
    """What the operator must do for tokens from before the backup to stay valid."""
    if source == "env" and not settings.jwt_secret:
        return [
            f"the backup was made with {PREFIX}JWT_SECRET set: set it to the same secret, or "
            "users sign in again"
        ]
    if source == "file" and settings.jwt_secret:
        return [
            f"{PREFIX}JWT_SECRET is set and wins over the restored jwt-secret file: tokens "
            "from before the backup are valid only if it is the secret they were signed with"
        ]
    return []


def _retire(db_path: Path) -> None:
    """Fold the old database's WAL into it and remove -wal/-shm: a WAL left beside the new file
    would be replayed into it."""
    if db_path.stat().st_size > 0:
        conn = sqlite3.connect(db_path, timeout=BUSY_TIMEOUT_S)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.DatabaseError:
            pass  # not a database we can read: it is being replaced anyway
        finally:
            conn.close()
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{db_path}{suffix}")
