"""Logins revoked while access tokens issued to them may still be unexpired.

A login is a refresh-token family, and its access tokens carry the family (`fam`). Access
tokens are checked without the database on every request, so ending a login (logout, a
reused refresh token) records its family here, for as long as an access token issued before
that moment can live. In cluster mode (issue 12) the bus adds the revocations of the other
nodes to this list."""

from __future__ import annotations

import time
from collections.abc import Callable


class RevokedLogins:
    def __init__(self, keep_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.keep_s = keep_s
        self.clock = clock
        # family -> until when it is kept; insertion order is expiry order (keep_s is fixed)
        self._until: dict[str, float] = {}

    def add(self, family: str) -> None:
        now = self.clock()
        self._until.pop(family, None)  # re-added: moves to the end, with the later expiry
        self._until[family] = now + self.keep_s
        while self._until:  # forget the expired ones, oldest first
            oldest, until = next(iter(self._until.items()))
            if until > now:
                break
            del self._until[oldest]

    def __contains__(self, family: str) -> bool:
        until = self._until.get(family)
        return until is not None and until > self.clock()
