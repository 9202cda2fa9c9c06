"""Join tokens at the worker: checked with fastsock.calls.sfu_tokens, each `jti` used once.

A refused join closes the worker socket with one of the close codes below (docs/calls.md,
"Client <-> worker"); the reason text is for people and never holds the token."""

from __future__ import annotations

import heapq
import math
import time
from collections import OrderedDict
from collections.abc import Callable

from fastsock.calls.sfu_tokens import JoinClaims, TokenRefused, verify_join

CLOSE_EVICTED = 4000  # FastSock removed the participant (left elsewhere, no longer a member)
CLOSE_INVALID = 4401  # forged, malformed or expired token; no join frame in time
CLOSE_FORBIDDEN = 4403  # token for another worker, or for a call this worker was told to end
CLOSE_REPLAYED = 4409  # the token's jti was already used
CLOSE_REPLACED = 4410  # the same user joined the same call again (another tab or device)
CLOSE_FULL = 4413  # the worker is at capacity
CLOSE_DRAINING = 4503  # the worker is shutting down: ask FastSock for another one

MAX_JTIS = 100_000  # tokens live <= 60 s: that is over 1600 joins per second
MAX_ENDED = 10_000


class JoinRefused(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class JtiCache:
    """The jtis seen, each kept until its token expires. Full (an abnormal join rate): every
    further token is refused rather than forgetting one that could then be replayed."""

    def __init__(self, max_entries: int = MAX_JTIS) -> None:
        self.max_entries = max_entries
        self._exp: dict[str, int] = {}
        self._by_exp: list[tuple[int, str]] = []

    def __len__(self) -> int:
        return len(self._exp)

    def claim(self, jti: str, exp: int, now: float) -> bool:
        """True the first time `jti` is seen; False if it was (JoinRefused when full)."""
        while self._by_exp and self._by_exp[0][0] <= now:
            _, old = heapq.heappop(self._by_exp)
            del self._exp[old]
        if jti in self._exp:
            return False
        if len(self._exp) >= self.max_entries:
            raise JoinRefused(CLOSE_FULL, "too many joins: try again shortly")
        self._exp[jti] = exp
        heapq.heappush(self._by_exp, (exp, jti))
        return True


class JoinGate:
    """Admits a join token for this worker: valid, unexpired, unused, and not for a call that
    FastSock told this worker to end."""

    def __init__(
        self,
        secret: str,
        worker_id: str,
        *,
        max_jtis: int = MAX_JTIS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.secret = secret
        self.worker_id = worker_id
        self.clock = clock
        self.jtis = JtiCache(max_jtis)
        self._ended: OrderedDict[str, float] = OrderedDict()  # call id -> refused up to this exp

    def end_call(self, call_id: str, *, ttl_s: float) -> None:
        """Refuse the tokens for `call_id` issued before now (FastSock ended the call or moved
        it away); those issued later (the call came back) are let in. Join tokens live at
        most `ttl_s`, so expiry tells them apart, and the entry is kept only that long."""
        self._ended[call_id] = math.floor(self.clock()) + ttl_s
        self._ended.move_to_end(call_id)
        while len(self._ended) > MAX_ENDED:
            self._ended.popitem(last=False)

    def admit(self, token: object) -> JoinClaims:
        now = self.clock()
        try:
            claims = verify_join(self.secret, token, worker_id=self.worker_id, now=now)
        except TokenRefused as exc:
            if exc.code == "other_worker":
                raise JoinRefused(CLOSE_FORBIDDEN, "token for another worker") from None
            raise JoinRefused(CLOSE_INVALID, f"token {exc.code}") from None
        while self._ended and next(iter(self._ended.values())) < now:
            self._ended.popitem(last=False)
        if claims.exp <= self._ended.get(claims.call_id, 0):
            raise JoinRefused(CLOSE_FORBIDDEN, "call ended")
        if not self.jtis.claim(claims.jti, claims.exp, now):
            raise JoinRefused(CLOSE_REPLAYED, "token already used")
        return claims
