"""Redis failing, as one of its users on a node sees it (rate limits, room locks): logged once
per outage, and not asked again for a while after each failure, so that requests meanwhile
are answered at once rather than each waiting for a Redis that does not answer."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("fastsock.cluster")


class Outage:
    def __init__(self, back: str) -> None:
        self._back = back  # logged when Redis answers again, with how long it failed
        self._since: float | None = None  # monotonic; set while Redis is failing
        self._retry_at = 0.0

    def failing(self) -> bool:
        """Redis failed, and is not to be asked again yet."""
        return self._since is not None and time.monotonic() < self._retry_at

    def failed(self, event: str, exc: BaseException, retry_s: float, **fields: str) -> None:
        """A call to Redis failed: `event` is logged if it starts an outage; Redis is not
        asked again for `retry_s`."""
        now = time.monotonic()
        if self._since is None:
            self._since = now
            log.warning(event, extra={"fields": {**fields, "error": repr(exc)}})
        self._retry_at = now + retry_s

    def answered(self) -> None:
        """A call to Redis succeeded: the outage, if any, is over."""
        if self._since is not None:
            down_s = round(time.monotonic() - self._since, 1)
            log.info(self._back, extra={"fields": {"after_s": down_s}})
            self._since = None
