"""What access-token checks remember about logins, each entry for a fixed time.

A login is a refresh-token family, and its access tokens carry the family (`fam`). Ending a
login (logout, a reused refresh token) records its family as revoked for as long as an access
token issued before that moment can live, so this process refuses them without the database.
The store's answer that a login was *not* ended is remembered briefly too (accounts.CONFIRM_S),
so a request costs at most one read per login per period. In cluster mode every node records
the revocations the others announce on the bus (cluster.join_cluster) as its own, at once; a
node that missed one (its bus was down, and it had closed its sockets then) refuses the login
at most CONFIRM_S after it ended, once the store's word it remembered runs out."""

from __future__ import annotations

import time
from collections.abc import Callable


class ExpiringSet:
    """Families, each kept for `keep_s` after it was (last) added."""

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
