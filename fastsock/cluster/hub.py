"""The hub of a node in cluster mode: the local hub, plus the bus to every other node.

An event is delivered to this node's sessions at once and published on the bus, encoded
once; every other node delivers it to its own sessions of the listed users. Events for one
session go to the node named in the session id. Presence and the session cap are decided in
Redis (registry.py), so they count every node's sockets.

Room membership: a node that removes a member tells every node (`mc`) before the room hears
of it; until their caches catch up, nodes drop room events addressed to someone they know has
left (`_left`), so a removed member hears nothing more of the room on any node.

Starting again (link.py): when the link resets, every socket closes (1012: its client
reconnects and resyncs) and everything built from bus messages goes: the member cache and the
other `bus_caches`, `_left`, the mirror of who is online. They go again once the node is back
on the bus, and the mirror is read afresh: what the node learnt in between (from the database,
while Redis was away) may rest on news it never heard."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from redis.exceptions import RedisError

from fastsock.cluster.link import RETRY_S, Link, node_of
from fastsock.cluster.outbox import WriteFailed
from fastsock.cluster.registry import NodeBuried, SessionRegistry
from fastsock.errors import Unavailable
from fastsock.metrics import Metrics
from fastsock.realtime.hub import (
    SESSIONS_PER_USER,
    Hub,
    Session,
    Transport,
    encode,
)
from fastsock.services.events import Origin

log = logging.getLogger("fastsock.cluster")

# A node that learnt a member left a room drops that room's events for them this long: the
# time any node may still publish with a member list read before the change.
LEFT_S = 60.0
CLOSE_RESET = 1012  # "service restart": the client reconnects (and resyncs)
NODE_ID = re.compile(r"[0-9a-f]{8}")  # as realtime/hub.new_node_id makes them
UNAVAILABLE = "the cluster is unavailable; try again in a moment"

MembersChanged = Callable[[str, list[str], list[str]], None]


def _origin(header: list[Any] | None) -> Origin | None:
    return Origin(header[0], header[1]) if header else None


def _pack(origin: Origin | None) -> list[Any] | None:
    return [origin.connection_id, origin.ref] if origin else None


class ClusterHub(Hub):
    def __init__(self, metrics: Metrics, redis_url: str) -> None:
        super().__init__(metrics)
        self.link = Link(redis_url, self._first_id)
        self.registry = SessionRegistry(self.link)
        self._online: set[str] = set()  # users online on any node (Redis' `online`, mirrored)
        self._reloading: asyncio.Task[None] | None = None  # _online, once back on the bus
        self._news: list[tuple[str, bool]] | None = None  # presence heard while it reloads
        self._moved: set[str] = set()  # resumed on another node: dropped once detached
        self._presence_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._left: dict[str, dict[str, float]] = {}  # room -> user -> when they left
        self._swept_at = time.monotonic()  # when `_left` was last rid of what is too old
        # Told (room_id, added, removed) when another node changed a room's members.
        self.on_members_changed: list[MembersChanged] = []
        # Told when users went offline with a dead node (this node buried it): announce.
        self.on_offline: list[Callable[[str], Awaitable[None]]] = []
        self.on_reset: list[Callable[[], None]] = []  # told when the link resets
        # Caches built from bus messages: dropped at a reset, and again once back on the bus.
        self.bus_caches: list[Callable[[], None]] = []
        # Told (sender node, event data) of the events of these types other nodes publish.
        self.watchers: dict[str, Callable[[str, dict[str, Any]], None]] = {}
        # Told (user, login) when another node ended a login (its revocation).
        self.on_login_closed: list[Callable[[str, str], None]] = []
        for kind, handler in {
            "ev": self._on_event,
            "dv": self._on_devices,
            "ss": self._on_session,
            "pr": self._on_presence,
            "cl": self._on_close_login,
            "cu": self._on_close_user,
            "ex": self._on_evict,
            "mc": self._on_members,
        }.items():
            self.link.on(kind, handler)
        self.link.on_node_dead.append(self._bury)
        self.link.on_reset.append(self._reset)
        self.link.on_back.append(self._back)

    @property
    def node_id(self) -> str:
        """The link's: a reset gives the node a new one (link.py)."""
        return self.link.node_id

    @node_id.setter
    def node_id(self, node_id: str) -> None:
        self._first_id = node_id  # Hub.__init__ names the node before the link exists

    async def start(self) -> None:
        await self.link.start()
        self._online = await self.registry.online()

    async def stop(self) -> None:
        """After the sockets closed (shutdown announces no presence while it closes them):
        take this node's sessions out of the registry, and tell the contacts of the users
        who went offline with it, as the others would after its death, only sooner."""
        if self._reloading is not None:
            self._reloading.cancel()
        try:
            await self.link.leave()
        except (RedisError, OSError):
            log.warning("cluster_leave_failed")  # the others bury this node when it is late
        await self.wait_tasks(timeout=5)  # the announcements of who went offline
        await self.link.stop()

    async def ready(self) -> bool:
        if not self.link.connected:
            return False
        try:
            return bool(await self.link.redis.ping())
        except (RedisError, OSError):
            return False

    # --- sessions -------------------------------------------------------------------------

    async def open(self, user_id: str, socket: Transport) -> tuple[Session, bool] | None:
        if not self.link.connected:  # off the bus, its sessions would miss events unawares
            raise Unavailable(UNAVAILABLE)
        epoch = self.link.epoch
        session_id = self.new_session_id()
        try:
            allowed, evicted = await self.registry.open(user_id, session_id, SESSIONS_PER_USER)
        except NodeBuried as exc:
            self._buried(epoch)
            raise Unavailable(UNAVAILABLE) from exc
        except (RedisError, OSError) as exc:
            raise Unavailable(UNAVAILABLE) from exc
        if self.link.epoch != epoch:  # the node started again meanwhile: a stale session id
            raise Unavailable(UNAVAILABLE)
        if not allowed:
            return None
        if evicted is not None:
            self._evict_anywhere(evicted, user_id)
        return self.open_session(user_id, socket, session_id)

    async def resume(
        self, user_id: str, socket: Transport, session_id: str, last_seq: int
    ) -> tuple[Session, list[bytes], bool] | str:
        self._moved.discard(session_id)  # its client wants it here after all
        resumed = await super().resume(user_id, socket, session_id, last_seq)
        if isinstance(resumed, str):
            node = node_of(session_id)  # client text: only a node id's shape makes a channel
            if resumed == "unknown" and not self.link.is_self(node) and NODE_ID.fullmatch(node):
                # Held by another node: this client resyncs here, so that one can go now,
                # with its socket if that node has not noticed yet that it is dead.
                header = {"s": session_id, "u": user_id, "moved": True}
                self.link.send(node, "ex", header)
        else:
            self.registry.attached(user_id, session_id)
        return resumed

    # Presence is decided per node, and Redis adds the nodes up (presence_flipped): a socket
    # brings its user online, or takes them offline, when it is this node's first or last.

    def _attach(self, session: Session, socket: Transport) -> bool:
        first_here = not self._here(session.user_id)
        super()._attach(session, socket)
        return first_here

    def detach(self, session: Session, socket: Transport) -> bool:
        if session.socket is not socket:
            return False  # already replaced by a resumed socket
        super().detach(session, socket)
        self.registry.detached(session.user_id, session.id, int(time.time() * 1000))
        if session.id in self._moved:
            self._evict(session)
        return not self._here(session.user_id)

    def _drop(self, session: Session) -> None:
        known = session.id in self._sessions
        self._moved.discard(session.id)
        super()._drop(session)
        if known:
            self.registry.dropped(
                session.user_id, session.id, not self.sessions_of(session.user_id)
            )

    def _evict_anywhere(self, session_id: str, user_id: str) -> None:
        if self.link.is_self(node_of(session_id)):
            self._on_evict(self.node_id, {"s": session_id, "u": user_id}, b"")
        else:
            self.link.send(node_of(session_id), "ex", {"s": session_id, "u": user_id})

    def _on_evict(self, _sender: str, header: dict[str, Any], _payload: bytes) -> None:
        session = self._sessions.get(header["s"])
        if session is None or session.user_id != header["u"]:
            return
        if session.socket is None:
            self._evict(session)
        elif header.get("moved"):  # resumed elsewhere: as on one node, the old socket goes
            self._moved.add(session.id)  # and the session with it (detach)
            session.socket.close(4000, "replaced by a newer connection")

    async def session_attached(self, user_id: str, session_id: str) -> bool:
        if self.link.is_self(node_of(session_id)):
            return self.attached(session_id)
        return await self.registry.is_attached(user_id, session_id)

    # --- presence -------------------------------------------------------------------------

    def is_online(self, user_id: str) -> bool:
        return user_id in self._online or self._here(user_id)

    def _here(self, user_id: str) -> bool:
        """Whether this node holds a socket of the user."""
        return super().is_online(user_id)

    async def presence_flipped(self, user_id: str, online: bool) -> bool:
        # One at a time per user on this node, each reporting the state as it is by then: a
        # close and a reopen racing cannot leave Redis with the older of the two.
        lock = self._presence_locks.get(user_id)
        if lock is None:
            lock = self._presence_locks[user_id] = asyncio.Lock()
        async with lock:
            epoch = self.link.epoch
            try:
                flip = await self.registry.presence(self.node_id, user_id, self._here(user_id))
            except NodeBuried:
                self._buried(epoch)
                return False
        if flip:
            self._mirror(user_id, flip > 0)
            self.link.broadcast("pr", {"u": user_id, "on": flip > 0})
        return flip == (1 if online else -1)

    def _mirror(self, user_id: str, online: bool) -> None:
        if online:
            self._online.add(user_id)
        else:
            self._online.discard(user_id)
        if self._news is not None:
            self._news.append((user_id, online))

    def _on_presence(self, sender: str, header: dict[str, Any], _payload: bytes) -> None:
        if not self.link.is_self(sender):
            self._mirror(header["u"], header["on"])

    def _buried(self, epoch: int) -> None:
        """A script refused this node's id: the others buried it (it stalled, or was cut off).
        Unless it has started again since (or is starting: its new id is not stamped yet)."""
        if self.link.epoch == epoch and self.link.connected:
            self.link.reset("buried")

    async def _bury(self, node_id: str) -> None:
        """This node leased a dead node's cleanup (link.py): its sockets no longer count, its
        users may have gone offline with it. Raises when Redis failed, for some user or all:
        tried again later (each user who went offline is announced by one try only)."""
        offline, failed = await self.registry.bury(node_id)
        if offline:
            for user_id in offline:
                self._mirror(user_id, False)
                self.link.broadcast("pr", {"u": user_id, "on": False})
            self.registry.announced(node_id, offline)
            self.spawn(self._announce_offline(offline))
        if failed:
            raise RedisError(f"{len(failed)} users left to bury: {failed[0]!r}")

    async def _announce_offline(self, user_ids: list[str]) -> None:
        """Each on their own: one that fails (the database away) holds up none of the others."""
        failed: list[Exception] = []
        for user_id in user_ids:
            for announce in self.on_offline:
                try:
                    await announce(user_id)
                except Exception as exc:
                    failed.append(exc)
        if failed:
            fields = {"failed": len(failed), "error": repr(failed[0])}
            log.warning("cluster_offline_announce_failed", extra={"fields": fields})

    # --- delivery -------------------------------------------------------------------------

    async def publish(
        self,
        user_ids: Iterable[str],
        type_: str,
        data: dict[str, Any],
        *,
        origin: Origin | None = None,
        room_id: str | None = None,
    ) -> None:
        users = self._still_members(room_id, user_ids)
        if not users:
            return
        payload = encode(type_, data)
        self.deliver(users, payload, type_, origin)
        header = {"u": users, "t": type_, "o": _pack(origin), "r": room_id}
        self.link.broadcast("ev", header, payload)

    def _on_event(self, sender: str, header: dict[str, Any], payload: bytes) -> None:
        if self.link.is_self(sender):
            return
        users = self._still_members(header["r"], header["u"])
        self.deliver(users, payload, header["t"], _origin(header["o"]))
        watcher = self.watchers.get(header["t"])
        if watcher is not None:
            watcher(sender, json.loads(payload)["data"])

    def _still_members(self, room_id: str | None, user_ids: Iterable[str]) -> list[str]:
        left = self._left.get(room_id) if room_id is not None else None
        if not left:
            return list(user_ids)
        since = time.monotonic() - LEFT_S  # who left before then is no longer filtered
        return [u for u in user_ids if left.get(u, since) <= since]

    def publish_devices(
        self,
        user_id: str,
        type_: str,
        data: dict[str, Any],
        device: str | None,
        *,
        origin: Origin | None = None,
    ) -> None:
        super().publish_devices(user_id, type_, data, device, origin=origin)
        header = {"u": user_id, "t": type_, "d": data, "dev": device, "o": _pack(origin)}
        self.link.broadcast("dv", header)

    def _on_devices(self, sender: str, h: dict[str, Any], _payload: bytes) -> None:
        if not self.link.is_self(sender):
            super().publish_devices(h["u"], h["t"], h["d"], h["dev"], origin=_origin(h["o"]))

    def publish_session(
        self, session_id: str, type_: str, data: dict[str, Any], *, origin: Origin | None = None
    ) -> None:
        node = node_of(session_id)
        if self.link.is_self(node):
            super().publish_session(session_id, type_, data, origin=origin)
        else:
            header = {"s": session_id, "t": type_, "d": data, "o": _pack(origin)}
            self.link.send(node, "ss", header)

    def _on_session(self, _sender: str, h: dict[str, Any], _payload: bytes) -> None:
        super().publish_session(h["s"], h["t"], h["d"], origin=_origin(h["o"]))

    def close_login(self, user_id: str, family: str) -> None:
        super().close_login(user_id, family)
        self.link.broadcast("cl", {"u": user_id, "f": family})

    def _on_close_login(self, sender: str, h: dict[str, str], _payload: bytes) -> None:
        if not self.link.is_self(sender):
            super().close_login(h["u"], h["f"])
            for closed in self.on_login_closed:
                closed(h["u"], h["f"])

    def close_user(self, user_id: str, families: list[str]) -> None:
        super().close_user(user_id, families)
        self.link.broadcast("cu", {"u": user_id, "f": families})

    def _on_close_user(self, sender: str, h: dict[str, Any], _payload: bytes) -> None:
        if not self.link.is_self(sender):
            super().close_user(h["u"], h["f"])
            for family in h["f"]:  # refused here at once, as a logout's
                for closed in self.on_login_closed:
                    closed(h["u"], family)

    # --- room membership ------------------------------------------------------------------

    async def members_changed(self, room_id: str, added: list[str], removed: list[str]) -> None:
        """A room's members changed on this node: tell every node, and wait until Redis has
        it, so that whatever this node publishes next reaches them after it. Should the
        write fail, every node that may have missed it starts again (link.py), before it
        hears anything this node publishes next: nothing is left to do here."""
        self._note_members(room_id, added, removed)
        self.link.broadcast("mc", {"r": room_id, "a": added, "x": removed})
        with contextlib.suppress(WriteFailed):
            await self.link.flush()

    def _on_members(self, sender: str, h: dict[str, Any], _payload: bytes) -> None:
        if self.link.is_self(sender):
            return
        self._note_members(h["r"], h["a"], h["x"])
        for changed in self.on_members_changed:
            changed(h["r"], h["a"], h["x"])

    def _note_members(self, room_id: str, added: list[str], removed: list[str]) -> None:
        now = time.monotonic()
        left = self._left.setdefault(room_id, {})
        for user_id in added:
            left.pop(user_id, None)
        for user_id in removed:
            left[user_id] = now
        if not left:
            del self._left[room_id]
        # Only a change adds to `_left`, so sweeping at a change (once per LEFT_S at most)
        # keeps it to the rooms changed within the last two LEFT_S.
        if now - self._swept_at > LEFT_S:
            self._swept_at = now
            since = now - LEFT_S
            for room, users in list(self._left.items()):
                kept = {u: at for u, at in users.items() if at > since}
                if kept:
                    self._left[room] = kept
                else:
                    del self._left[room]

    # --- starting again ------------------------------------------------------------------

    def _reset(self) -> None:
        """The link starts again (it may have missed events, or lost writes): every client
        starts again too (they resync); the link buries this node's old id."""
        for session in list(self._sessions.values()):
            if (socket := session.socket) is not None:
                self.detach(session, socket)
                socket.close(CLOSE_RESET, "cluster link lost: reconnect")
            self._evict(session)
        self._online.clear()
        if self._reloading is not None:
            self._reloading.cancel()
        self._forget()
        for reset in self.on_reset:
            reset()

    def _back(self) -> None:
        """On the bus again, under a new id."""
        self._forget()
        self._reloading = asyncio.ensure_future(self._reload_online())

    def _forget(self) -> None:
        self._left.clear()
        for forget in self.bus_caches:
            forget()

    async def _reload_online(self) -> None:
        """Mirror Redis' `online` again; the presence news heard meanwhile goes on top (the
        read may have been answered before some of it, or after)."""
        news: list[tuple[str, bool]] = []
        self._news = news
        try:
            while True:
                try:
                    online = await self.registry.online()
                    break
                except (RedisError, OSError):
                    await asyncio.sleep(RETRY_S)
            for user_id, on in news:
                if on:
                    online.add(user_id)
                else:
                    online.discard(user_id)
            self._online = online
        finally:
            self._news = None
