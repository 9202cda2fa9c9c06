"""Local disk: blobs are files under the upload directory, sharded by key prefix."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import shutil
import weakref
from collections.abc import Iterator
from pathlib import Path

from fastsock.blobs.base import CHUNK, Chunks
from fastsock.config import PREFIX, ConfigError
from fastsock.paths import private_dir

# A stored file is <root>/<key[:2]>/<key>; anything else under root (dot-named temporary files,
# lost+found, an operator's notes) is not a blob.
KEY = re.compile(r"[0-9A-Za-z]{2}[0-9A-Za-z._-]*")
LOCK_FILE = ".lock"


class LocalBlobs:
    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root
        self._unlock: weakref.finalize[[int], LocalBlobs] | None = None

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / key

    async def check(self) -> None:
        """Create the upload directory, prove it is writable and hold its lock, shared: several
        servers may use one directory, but `fastsock restore` (exclusive) refuses meanwhile."""
        try:
            private_dir(self.root)
            probe = self.root / ".write-probe"
            probe.write_bytes(b"ok")
            probe.unlink()
            if self._unlock is None or not self._unlock.alive:  # not held, or closed
                self._unlock = weakref.finalize(self, os.close, lock_dir(self.root, shared=True))
        except BlockingIOError:
            raise ConfigError(
                f"{PREFIX}UPLOAD_DIR {self.root} is locked by `fastsock restore`: wait for it"
            ) from None
        except OSError as exc:
            raise ConfigError(
                f"{PREFIX}UPLOAD_DIR {self.root} is not usable: {exc.strerror or exc}"
            ) from exc

    def close(self) -> None:
        """Release the directory's lock (also released when this object or the process ends)."""
        if self._unlock is not None:
            self._unlock()

    def stored_keys(self) -> Iterator[str]:
        """The stored keys, in name order. Only shard directories are listed: another directory
        (a root-owned lost+found) may not even be readable."""
        for shard in _sorted_entries(self.root):
            if len(shard.name) != 2 or not KEY.fullmatch(shard.name):
                continue
            if shard.is_dir(follow_symlinks=False):
                for entry in _sorted_entries(Path(shard.path)):
                    name = entry.name
                    is_key = name.startswith(shard.name) and KEY.fullmatch(name)
                    if is_key and entry.is_file(follow_symlinks=False):
                        yield name

    async def put(self, key: str, path: Path, content_type: str) -> None:
        target = self._path(key)
        await asyncio.to_thread(copy_atomically, path, target)

    async def read(self, key: str, start: int, end: int) -> Chunks:
        with open(self._path(key), "rb") as f:  # noqa: ASYNC230 - local page-cache reads
            f.seek(start)
            remaining = end - start + 1
            while remaining > 0:
                chunk = f.read(min(CHUNK, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                yield chunk

    async def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()


def lock_dir(root: Path, *, shared: bool) -> int:
    """flock root/.lock (created if missing); raises BlockingIOError when it is held the other
    way. The returned descriptor holds the lock until it is closed."""
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _sorted_entries(directory: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as entries:
            return sorted(entries, key=lambda entry: entry.name)
    except FileNotFoundError:
        return []


def copy_atomically(source: Path, target: Path) -> None:
    """Write under a temporary name, then rename: readers never see a partial file."""
    target.parent.mkdir(mode=0o700, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        try:
            os.link(source, tmp)  # same filesystem: no copy at all
        except OSError:
            shutil.copyfile(source, tmp)
        os.chmod(tmp, 0o600)  # private like the directories (the spool file follows the umask)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
