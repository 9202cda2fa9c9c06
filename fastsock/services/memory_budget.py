"""A budget of bytes (and of holders) shared by concurrent tasks, granted in arrival order."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class MemoryBudget:
    """At most `total` bytes and `slots` holders at once. A request waits until it fits and
    every earlier one has been served, so a large request is never starved by small ones."""

    def __init__(self, total: int, slots: int) -> None:
        self.total = total
        self._free = total
        self._slots = slots
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def waiting(self) -> int:
        """Requests waiting for their turn."""
        return sum(not granted.done() for _, granted in self._waiting)

    @asynccontextmanager
    async def hold(self, amount: int) -> AsyncIterator[None]:
        if amount > self.total:
            raise ValueError(f"{amount} bytes is more than the whole budget ({self.total})")
        if self._waiting or not self._fits(amount):
            granted = asyncio.get_running_loop().create_future()
            self._waiting.append((amount, granted))
            try:
                await granted
            except asyncio.CancelledError:
                if granted.cancelled():
                    with contextlib.suppress(ValueError):  # _grant may have dropped it already
                        self._waiting.remove((amount, granted))
                    self._grant()  # it may have been holding up those behind it
                else:  # granted just as the cancellation came
                    self._give_back(amount)
                raise
        else:
            self._take(amount)
        try:
            yield
        finally:
            self._give_back(amount)

    def _fits(self, amount: int) -> bool:
        return self._slots > 0 and self._free >= amount

    def _take(self, amount: int) -> None:
        self._free -= amount
        self._slots -= 1

    def _give_back(self, amount: int) -> None:
        self._free += amount
        self._slots += 1
        self._grant()

    def _grant(self) -> None:
        while self._waiting:
            amount, granted = self._waiting[0]
            if granted.cancelled():  # its task is leaving
                self._waiting.popleft()
            elif self._fits(amount):
                self._waiting.popleft()
                self._take(amount)
                granted.set_result(None)
            else:
                break
