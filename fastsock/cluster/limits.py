"""Rate limits across nodes: token buckets in Redis, one budget per user and per address
whichever nodes their requests reach (services/limits.py has the rules; the arithmetic is
the same as its RateLimiter).

One Lua script takes from a bucket atomically, refilled by the time elapsed on Redis' own
clock (the nodes' clocks never matter). A bucket idle long enough to be full again expires:
no bucket and a full one are the same thing.

When Redis fails, a check is answered by the node's own limiter instead (logged once per
outage, the request is not failed); Redis is tried again after RETRY_S (outage.py)."""

from __future__ import annotations

import asyncio
import json

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from fastsock.cluster.link import PREFIX
from fastsock.cluster.outage import Outage

RETRY_S = 1.0
CALL_TIMEOUT_S = 0.5  # a hung Redis must not hold requests up

# KEYS: the bucket (hash: tokens, at = microseconds on Redis' clock).
# ARGV: rate per second, burst, cost. Returns the wait in seconds: "0", a number or "inf".
TAKE = """
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local held = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = burst
if held[1] then
  local elapsed = math.max(0, now - tonumber(held[2])) / 1000000
  tokens = math.min(burst, tonumber(held[1]) + elapsed * rate)
end
local wait = '0'
if tokens >= cost then
  tokens = tokens - cost
elseif cost > burst then
  wait = 'inf'
else
  wait = string.format('%.17g', (cost - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'at',
  string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil(burst / rate * 1000)))
return wait
"""


def bucket_key(kind: str, key: object) -> str:
    """`key` is a string or a tuple of them (e.g. (address, username)): as JSON, it cannot
    collide with another key however the parts are spelt."""
    return f"{PREFIX}rl:{kind}:" + json.dumps(key, separators=(",", ":"), ensure_ascii=False)


class SharedBuckets:
    """`Buckets` (services/limits.py) in Redis."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._take = redis.register_script(TAKE)
        self._outage = Outage(back="cluster_limits_shared")

    async def retry_after(
        self, kind: str, key: object, rate: float, burst: int, cost: int
    ) -> float | None:
        """Take `cost` tokens: 0.0 if allowed, else seconds until they are there (inf: never
        at once); None when Redis cannot answer."""
        if self._outage.failing():
            return None
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                wait = await self._take([bucket_key(kind, key)], [repr(rate), burst, cost])
        except (RedisError, OSError, TimeoutError) as exc:
            self._outage.failed("cluster_limits_local", exc, RETRY_S)
            return None
        self._outage.answered()
        return float(wait)
