"""Sessions and presence of every node, kept in Redis (cluster mode).

- `sess:<user>`: the user's sessions on every node, scored 0 while a socket is attached and
  with the time it detached otherwise. The session cap counts these; the oldest detached one
  makes room for a new one, wherever it is.
- `on:<user>`: the nodes holding an open socket of the user; `online`: the users with any.
  A user goes online or offline when `on:<user>` stops or starts being empty: one script
  decides it, so two nodes changing at once announce it once.
- `nodeusers:<node>`: users with sessions on a node, for the cleanup after it dies;
  `gone:<node>`: those of them that went offline with it, until they have been announced.

Scripts make each decision atomic; plain updates ride the node's ordered write queue. A node
that is no longer in the node set (buried: the others took it for dead) adds nothing: the
scripts refuse its id, and it starts again under a new one (`NodeBuried`)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import NamedTuple, cast

from redis.exceptions import RedisError

from fastsock.cluster.link import NODES, PREFIX, Link, node_of

ONLINE = PREFIX + "online"

# KEYS: sess:<user>, nodeusers:<node>, nodes. ARGV: session id, user id, cap, node.
# -> {1, evicted session or ""}, {0, ""} when every session of the user is attached, or
# {-1, ""} when the node is buried.
OPEN = """
if not redis.call('ZSCORE', KEYS[3], ARGV[4]) then return {-1, ''} end
local evicted = ''
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  local oldest = redis.call('ZRANGEBYSCORE', KEYS[1], '(0', '+inf', 'LIMIT', 0, 1)
  if #oldest == 0 then return {0, ''} end
  evicted = oldest[1]
  redis.call('ZREM', KEYS[1], evicted)
end
redis.call('ZADD', KEYS[1], 0, ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
return {1, evicted}
"""

# KEYS: on:<user>, online, nodes. ARGV: node, user, 1 if the node holds a socket of the user
# else 0. -> 1 came online, -1 went offline, 0 no change, 2 the node is buried.
PRESENCE = """
if not redis.call('ZSCORE', KEYS[3], ARGV[1]) then return 2 end
local before = redis.call('SCARD', KEYS[1])
if ARGV[3] == '1' then redis.call('SADD', KEYS[1], ARGV[1])
else redis.call('SREM', KEYS[1], ARGV[1]) end
local after = redis.call('SCARD', KEYS[1])
if before == 0 and after > 0 then redis.call('SADD', KEYS[2], ARGV[2]) return 1 end
if before > 0 and after == 0 then redis.call('SREM', KEYS[2], ARGV[2]) return -1 end
return 0
"""

# KEYS: on:<user>, online, sess:<user>, nodeusers:<node>, gone:<node>. ARGV: dead node,
# user, its session id prefix. Takes the user off the dead node's list, and onto its `gone`
# list if they went offline with it: each user once, however often the cleanup is tried.
BURY = """
local before = redis.call('SCARD', KEYS[1])
redis.call('SREM', KEYS[1], ARGV[1])
for _, s in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  if string.sub(s, 1, #ARGV[3]) == ARGV[3] then redis.call('ZREM', KEYS[3], s) end
end
if before > 0 and redis.call('SCARD', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[2], ARGV[2])
  redis.call('SADD', KEYS[5], ARGV[2])
end
redis.call('SREM', KEYS[4], ARGV[2])
return 1
"""

REFUSED = 2  # PRESENCE's answer for a buried node


class NodeBuried(RedisError):
    """The node's id is no longer in the node set: it must start again under a new one."""


class Burial(NamedTuple):
    offline: list[str]  # who went offline with the dead node, not announced yet
    failed: list[Exception]  # one per user whose removal failed: left for the next try


def _sessions(user_id: str) -> str:
    return f"{PREFIX}sess:{user_id}"


def _nodes_of(user_id: str) -> str:
    return f"{PREFIX}on:{user_id}"


def _users_of(node_id: str) -> str:
    return f"{PREFIX}nodeusers:{node_id}"


def _gone(node_id: str) -> str:
    return f"{PREFIX}gone:{node_id}"


class SessionRegistry:
    def __init__(self, link: Link) -> None:
        self.link = link
        redis = link.redis
        self._open = redis.register_script(OPEN)
        self._presence = redis.register_script(PRESENCE)
        self._bury = redis.register_script(BURY)

    async def open(self, user_id: str, session_id: str, cap: int) -> tuple[bool, str | None]:
        """Register a new attached session: (allowed, the session evicted to make room)."""
        node = node_of(session_id)
        keys = [_sessions(user_id), _users_of(node), NODES]
        allowed, evicted = await self._open(keys=keys, args=[session_id, user_id, cap, node])
        if allowed == -1:
            raise NodeBuried(node)
        return bool(allowed), evicted.decode() or None

    def attached(self, user_id: str, session_id: str) -> None:
        key = _sessions(user_id)
        # Not XX: a resume racing an eviction of the same session puts it back (it lives).
        self.link.enqueue(lambda p: p.zadd(key, {session_id: 0}))

    def detached(self, user_id: str, session_id: str, at_ms: int) -> None:
        key = _sessions(user_id)
        self.link.enqueue(lambda p: p.zadd(key, {session_id: max(1, at_ms)}, xx=True))

    def dropped(self, user_id: str, session_id: str, last_here: bool) -> None:
        """The session is gone; `last_here`: the user has no other session on this node."""
        key, users = _sessions(user_id), _users_of(node_of(session_id))
        self.link.enqueue(lambda p: p.zrem(key, session_id))
        if last_here:
            self.link.enqueue(lambda p: p.srem(users, user_id))

    async def is_attached(self, user_id: str, session_id: str) -> bool:
        return bool(await self.link.redis.zscore(_sessions(user_id), session_id) == 0)

    async def presence(self, node_id: str, user_id: str, here: bool) -> int:
        """`node_id` does (`here`) or does not hold a socket of the user: 1 if the user came
        online with that, -1 if they went offline, 0 if nothing changed."""
        keys = [_nodes_of(user_id), ONLINE, NODES]
        flip = int(await self._presence(keys=keys, args=[node_id, user_id, int(here)]))
        if flip == REFUSED:
            raise NodeBuried(node_id)
        return flip

    async def online(self) -> set[str]:
        return set(await self._members(ONLINE))

    async def bury(self, node_id: str) -> Burial:
        """Remove a dead node's sessions and presence, every user in one pipeline; who went
        offline with it includes those of an earlier try that did not announce them."""
        redis = self.link.redis
        users = await self._members(_users_of(node_id))
        failed: list[Exception] = []
        if users:
            pipe = redis.pipeline(transaction=False)
            for user_id in users:
                keys = [_nodes_of(user_id), ONLINE, _sessions(user_id)]
                keys += [_users_of(node_id), _gone(node_id)]
                await self._bury(keys=keys, args=[node_id, user_id, node_id + "."], client=pipe)
            results = await pipe.execute(raise_on_error=False)
            failed = [r for r in results if isinstance(r, Exception)]
        offline = await self._members(_gone(node_id))
        return Burial(offline, failed)

    async def _members(self, key: str) -> list[str]:
        # redis-py types a command `Awaitable[T] | T`, one signature for both of its clients.
        members = await cast(Awaitable[set[bytes]], self.link.redis.smembers(key))
        return [m.decode() for m in members]

    def announced(self, node_id: str, user_ids: list[str]) -> None:
        """These users' going offline with a dead node is being announced: no later try of
        its cleanup announces them again (queued after the announcement's presence news)."""
        key = _gone(node_id)
        self.link.enqueue(lambda p: p.srem(key, *user_ids))
