"""Token buckets: per-key rate limits.

On one node the buckets are held in this process (RateLimiter). In cluster mode Throttles
takes them from Redis instead (`share`, fastsock/cluster/limits.py): one budget per user and
per address across all nodes. If Redis fails, the node's own buckets answer meanwhile, so a
limit is per node during an outage. Password hashes in progress (`concurrent`) are always
counted per node: that limit protects this node's hashing queue."""

from __future__ import annotations

import contextlib
import ipaddress
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from fastsock.config import Limits
from fastsock.errors import RateLimited

PRUNE_AT = 10_000  # keys; past this (and each doubling since), idle full buckets are dropped
IPV6_CLIENT_PREFIX = 64  # an ISP hands each subscriber at least a /64


def client_key(address: str) -> str:
    """What every per-address limit counts a client address under: an IPv4 address as it is,
    an IPv6 address by its /64 (one subscriber has the whole /64, so keying the /128 would give
    each of its 2**64 addresses budgets of their own), an IPv4-mapped IPv6 address (a
    dual-stack listener) as its IPv4 address. Anything else (no address) is its own key."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_CLIENT_PREFIX), strict=False))
    return str(ip)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(
        self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate_per_s
        self.burst = burst
        self.clock = clock
        self._buckets: dict[object, _Bucket] = {}
        self._prune_at = PRUNE_AT

    def retry_after(self, key: object, cost: int = 1) -> float:
        """Take `cost` tokens for `key`: 0.0 if allowed, else seconds until they are there."""
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._prune_at:
                self._prune(now)
                # Amortised: the next sweep waits until the table has doubled again.
                self._prune_at = max(PRUNE_AT, 2 * len(self._buckets))
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return 0.0
        if cost > self.burst:
            return float("inf")  # can never be granted at once
        return (cost - bucket.tokens) / self.rate

    def _prune(self, now: float) -> None:
        full_after = self.burst / self.rate
        for key in [k for k, b in self._buckets.items() if now - b.updated >= full_after]:
            del self._buckets[key]


class Buckets(Protocol):
    """Token buckets kept outside this process (shared by the nodes of a cluster)."""

    async def retry_after(
        self, kind: str, key: object, rate: float, burst: int, cost: int
    ) -> float | None:
        """Like RateLimiter.retry_after for `kind`'s rate and burst; None when they cannot
        answer now (the local limiter answers instead)."""
        ...


def wait_words(seconds: float) -> str:
    """A wait as people say it, rounded up: "1 second", "40 seconds", "12 minutes", "2 hours"."""
    for unit, size in (("hour", 3600), ("minute", 60)):
        if seconds > size:
            n = math.ceil(seconds / size)
            return f"{n} {unit}{'s' if n != 1 else ''}"
    n = max(1, math.ceil(seconds))
    return f"{n} second{'s' if n != 1 else ''}"


def _wordings(limits: Limits) -> dict[str, str]:
    """What each limit tells the person it stops (the refusal adds when to try again)."""
    return {
        "send": "You are sending or changing messages too quickly",
        "typing": "Too many typing notices",
        "reaction": "You are reacting too quickly",
        "invite": f"You can add {limits.invites_per_min} people to rooms a minute",
        "login": "Too many sign-in attempts for this account",
        "auth": "Too many sign-in attempts from your network",
        "upload": f"You can upload {limits.uploads_per_min} files a minute",
        "profile": f"You can change your profile {limits.profile_updates_per_min} times a minute",
        "room_mention": f"You can mention @room {limits.room_mentions_per_hour} times an hour",
        "register": "Too many accounts were created from your network",
        "receipt": "Too many read confirmations, edits or deletions",
        "call": f"You can start {limits.call_invites_per_min} calls a minute",
        "call_join": f"You can join calls {limits.call_joins_per_min} times a minute",
        "call_signal": "Too many call signals",
        "ice": "Too many requests for call servers",
    }


class Throttles:
    """Every per-user limit the services enforce, and the refusal counter."""

    def __init__(self, limits: Limits, on_refused: Callable[[str], None]) -> None:
        self._wordings = _wordings(limits)
        self._limiters = {
            "send": RateLimiter(limits.send_per_s, limits.send_burst),
            "typing": RateLimiter(limits.typing_per_s, limits.typing_burst),
            "reaction": RateLimiter(limits.reactions_per_s, limits.reactions_burst),
            "invite": RateLimiter(limits.invites_per_min / 60, limits.invites_per_min),
            "login": RateLimiter(limits.logins_per_min / 60, limits.logins_per_min),
            # Per client IP, whatever the username: logins and registrations together (each
            # costs a password hash), so one address cannot spray passwords over many accounts.
            "auth": RateLimiter(limits.auth_per_ip_per_min / 60, limits.auth_per_ip_per_min),
            "upload": RateLimiter(limits.uploads_per_min / 60, limits.uploads_per_min),
            # Each profile change fans `user.updated` out to every co-member.
            "profile": RateLimiter(
                limits.profile_updates_per_min / 60, limits.profile_updates_per_min
            ),
            # Each `@room` notifies every member of the room, muted or not.
            "room_mention": RateLimiter(
                limits.room_mentions_per_hour / 3600, limits.room_mentions_per_hour
            ),
            # Per client IP: accounts are cheap to make, each costs a password hash.
            "register": RateLimiter(
                limits.registrations_per_min / 60, limits.registrations_per_min
            ),
            "receipt": RateLimiter(limits.receipts_per_s, limits.receipts_burst),
            "call": RateLimiter(limits.call_invites_per_min / 60, limits.call_invites_per_min),
            "call_join": RateLimiter(limits.call_joins_per_min / 60, limits.call_joins_per_min),
            "call_signal": RateLimiter(limits.call_signals_per_s, limits.call_signals_burst),
            "ice": RateLimiter(limits.ice_servers_per_min / 60, limits.ice_servers_per_min),
        }
        # Per client IP: password checks in progress (waiting for or in hashing), so that one
        # address cannot fill the hashing queue ahead of everyone else.
        self._concurrent = {"auth": limits.auth_concurrent_per_ip}
        self._running: dict[str, Counter[object]] = {k: Counter() for k in self._concurrent}
        self._on_refused = on_refused
        self._shared: Buckets | None = None

    def share(self, buckets: Buckets) -> None:
        """Take the rate limits from `buckets` from now on (cluster mode)."""
        self._shared = buckets

    async def check(self, kind: str, key: object, cost: int = 1) -> None:
        """Raise 429 `rate_limited` (with retry_after) if `key` is over its `kind` limit."""
        limiter = self._limiters[kind]
        wait = None
        if self._shared is not None:
            wait = await self._shared.retry_after(kind, key, limiter.rate, limiter.burst, cost)
        if wait is None:
            wait = limiter.retry_after(key, cost)
        if wait == float("inf"):
            self._on_refused(kind)
            raise RateLimited(f"{self._wordings[kind]}: that is too many at once", retry_after=60.0)
        if wait > 0:
            self._on_refused(kind)
            message = f"{self._wordings[kind]}; try again in {wait_words(wait)}"
            raise RateLimited(message, retry_after=wait)

    @contextlib.contextmanager
    def concurrent(self, kind: str, key: object) -> Iterator[None]:
        """Hold one of `key`'s places for `kind` while the block runs; 429 `rate_limited` when
        they are all taken. Counted in this process, also in cluster mode."""
        running = self._running[kind]
        if running[key] >= self._concurrent[kind]:
            self._on_refused(kind)
            raise RateLimited(f"{self._wordings[kind]}; try again in a moment", retry_after=1.0)
        running[key] += 1
        try:
            yield
        finally:
            running[key] -= 1
            if not running[key]:
                del running[key]
