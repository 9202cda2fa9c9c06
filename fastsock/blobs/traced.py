"""A blob store whose puts, reads and deletes make spans (fastsock/tracing.py); used in place
of the backend when tracing is on at start-up."""

from __future__ import annotations

import contextlib
from pathlib import Path

from opentelemetry.util.types import AttributeValue

from fastsock import tracing
from fastsock.blobs.base import BlobStore, Chunks


class TracedBlobs:
    def __init__(self, inner: BlobStore) -> None:
        self.inner = inner
        self.name = inner.name

    def _attributes(self, operation: str) -> dict[str, AttributeValue]:
        return {"fastsock.blob.store": self.name, "fastsock.blob.operation": operation}

    def close(self) -> None:
        self.inner.close()

    async def check(self) -> None:
        await self.inner.check()

    async def put(self, key: str, path: Path, content_type: str) -> None:
        with tracing.span("blob put", self._attributes("put")):
            await self.inner.put(key, path, content_type)

    async def read(self, key: str, start: int, end: int) -> Chunks:
        with tracing.span("blob get", self._attributes("get")):  # until the last chunk
            # A download stopped early closes this reader: the backend's closes with it, at
            # once (its file or S3 stream), not whenever the garbage collector gets to it.
            async with contextlib.aclosing(self.inner.read(key, start, end)) as chunks:
                async for chunk in chunks:
                    yield chunk

    async def delete(self, key: str) -> None:
        with tracing.span("blob delete", self._attributes("delete")):
            await self.inner.delete(key)
