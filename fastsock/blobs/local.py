"""Local disk: blobs are files under the upload directory, sharded by key prefix."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from pathlib import Path

from fastsock.blobs.base import CHUNK, Chunks
from fastsock.config import PREFIX, ConfigError
from fastsock.paths import private_dir


class LocalBlobs:
    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / key

    async def check(self) -> None:
        """Create the upload directory and prove it is writable."""
        try:
            private_dir(self.root)
            probe = self.root / ".write-probe"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(
                f"{PREFIX}UPLOAD_DIR {self.root} is not usable: {exc.strerror or exc}"
            ) from exc

    async def put(self, key: str, path: Path, content_type: str) -> None:
        target = self._path(key)
        await asyncio.to_thread(_copy_atomically, path, target)

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


def _copy_atomically(source: Path, target: Path) -> None:
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
