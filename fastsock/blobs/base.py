"""The storage interface. Keys are opaque strings made by the uploads service."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Protocol

Chunks = AsyncGenerator[bytes]
CHUNK = 256 * 1024


class BlobStore(Protocol):
    name: str

    async def check(self) -> None:
        """Start-up check; raises ConfigError (local) or logs (remote) when unusable."""

    async def put(self, key: str, path: Path, content_type: str) -> None:
        """Store the finished file at `path` under `key`; the caller deletes `path` after."""

    def read(self, key: str, start: int, end: int) -> Chunks:
        """Bytes start..end (inclusive) of the blob, in chunks (an async generator: iterated,
        not awaited)."""

    async def delete(self, key: str) -> None:
        """Remove the blob; missing blobs are fine."""

    def close(self) -> None:
        """Release what the store holds for the server's lifetime (the upload dir's lock)."""
