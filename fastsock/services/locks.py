"""Locks per key, held while a block runs: what the services see, and the one-process
implementation. Cluster mode swaps in one that also excludes the other nodes
(fastsock/cluster/locks.py)."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol


class KeyedLock(Protocol):
    def hold(self, key: str) -> AbstractAsyncContextManager[None]:
        """Run the block while no one else holds `key`; waiters go in arrival order."""
        ...


class LocalLocks:
    """One asyncio lock per key, in this process. A key's lock exists only while someone
    holds or waits for it."""

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        async with lock:
            yield
