"""The hub of a node in cluster mode: the local hub, plus the bus to every other node.

An event is delivered to this node's sessions at once and published on the bus, encoded
once; every other node delivers it to its own sessions of the listed users. Events for one
session go to the node named in the session id. Presence and the session cap are decided in
Redis (registry.py), so they count every node's sockets.

Room membership: a node that removes a member tells every node (`members`) before the room
hears of it; until their caches catch up, nodes drop room events addressed to someone they
know has left (`_left`), so a removed member hears nothing more of the room on any node."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from redis.exceptions import RedisError

from fastsock.cluster.link import RETRY_S, Link, node_of
from fastsock.cluster.registry import SessionRegistry
from fastsock.errors import Unavailable
from fastsock.metrics import Metrics
from fastsock.realtime.hub import (
    SESSIONS_PER_USER,
    Hub,
    Session,
    Transport,
    encode,
    new_node_id,
)
from fastsock.services.events import Origin

log = logging.getLogger("fastsock.cluster")

# A node that learnt a member left a room drops that room's events for them this long: the
# time any node may still publish with a member list read before the change.
LEFT_S = 60.0
CLOSE_RESET = 1012  # "service restart": the client reconnects (and resyncs)
NODE_ID = re.compile(r"[0-9a-f]{8}")  # as realtime/hub.new_node_id makes them

MembersChanged = Callable[[str, list[str], list[str]], None]


def _origin(header: list[Any] | None) -> Origin | None:
    return Origin(header[0], header[1]) if header else None


def _pack(origin: Origin | None) -> list[Any] | None:
    return [origin.connection_id, origin.ref] if origin else None


class ClusterHub(Hub):
    def __init__(self, metrics: Metrics, redis_url: str) -> None:
        super().__init__(metrics)
        self.link = Link(redis_url, self.node_id)
        self.registry = SessionRegistry(self.link)
        self._online: set[str] = set()  # users online on any node (Redis' `online`, mirrored)
        self._reloading: asyncio.Task[None] | None = None  # _online, after a reset
        self._moved: set[str] = set()  # resumed on another node: dropped once detached
        self._presence_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._left: dict[str, dict[str, float]] = {}  # room -> user -> when they left
        # Told (room_id, added, removed) when another node changed a room's members.
        self.on_members_changed: list[MembersChanged] = []
        # Told when users went offline with a dead node (this node buried it): announce.
        self.on_offline: list[Callable[[str], Awaitable[None]]] = []
        self.on_reset: list[Callable[[], None]] = []  # caches built from bus messages
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
            "ex": self._on_evict,
            "mc": self._on_members,
        }.items():
            self.link.on(kind, handler)
        self.link.on_node_dead.append(self._bury)
        self.link.on_reset.append(self._reset)

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
            await self._bury(self.node_id)
        except (RedisError, OSError):
            log.warning("cluster_leave_failed")  # the others bury this node when it is late
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
            raise Unavailable("the cluster is unavailable; try again in a moment")
        session_id = self.new_session_id()
        try:
            allowed, evicted = await self.registry.open(user_id, session_id, SESSIONS_PER_USER)
        except (RedisError, OSError) as exc:
            raise Unavailable("the cluster is unavailable; try again in a moment") from exc
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
            if resumed == "unknown" and node != self.node_id and NODE_ID.fullmatch(node):
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
        if node_of(session_id) == self.node_id:
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
        if node_of(session_id) == self.node_id:
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
            flip = await self.registry.presence(user_id, self._here(user_id))
        if flip:
            self._mirror(user_id, flip > 0)
            self.link.broadcast("pr", {"u": user_id, "on": flip > 0})
        return flip == (1 if online else -1)

    def _mirror(self, user_id: str, online: bool) -> None:
        if online:
            self._online.add(user_id)
        else:
            self._online.discard(user_id)

    def _on_presence(self, sender: str, header: dict[str, Any], _payload: bytes) -> None:
        if sender != self.node_id:
            self._mirror(header["u"], header["on"])

    async def _bury(self, node_id: str) -> None:
        """This node claimed a dead node: its sockets no longer count, its users may be gone."""
        for user_id in await self.registry.bury(node_id):
            self._mirror(user_id, False)
            self.link.broadcast("pr", {"u": user_id, "on": False})
            for announce in self.on_offline:
                await announce(user_id)

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
        if sender == self.node_id:
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
        return [u for u in user_ids if u not in left]

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
        if sender != self.node_id:
            super().publish_devices(h["u"], h["t"], h["d"], h["dev"], origin=_origin(h["o"]))

    def publish_session(
        self, session_id: str, type_: str, data: dict[str, Any], *, origin: Origin | None = None
    ) -> None:
        node = node_of(session_id)
        if node == self.node_id:
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
        if sender != self.node_id:
            super().close_login(h["u"], h["f"])
            for closed in self.on_login_closed:
                closed(h["u"], h["f"])

    # --- room membership ------------------------------------------------------------------

    async def members_changed(self, room_id: str, added: list[str], removed: list[str]) -> None:
        """A room's members changed on this node: tell every node, and wait until Redis has
        it, so that whatever this node publishes next reaches them after it."""
        self._note_members(room_id, added, removed)
        self.link.broadcast("mc", {"r": room_id, "a": added, "x": removed})
        await self.link.flush()

    def _on_members(self, sender: str, h: dict[str, Any], _payload: bytes) -> None:
        if sender == self.node_id:
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
        for user_id in [u for u, at in left.items() if now - at > LEFT_S]:
            del left[user_id]
        if not left:
            del self._left[room_id]

    # --- losing the bus -------------------------------------------------------------------

    def _reset(self) -> None:
        """This node may have missed events: every client starts again (they resync), under
        a new node id, so that the others bury the old one's sessions and presence."""
        log.warning("cluster_node_reset", extra={"fields": {"node": self.node_id}})
        for session in list(self._sessions.values()):
            if (socket := session.socket) is not None:
                self.detach(session, socket)
                socket.close(CLOSE_RESET, "cluster link lost: reconnect")
            self._evict(session)
        self.node_id = self.link.node_id = new_node_id()
        self._online.clear()
        if self._reloading is not None:
            self._reloading.cancel()
        self._reloading = asyncio.ensure_future(self._reload_online())
        self._left.clear()
        for reset in self.on_reset:
            reset()

    async def _reload_online(self) -> None:
        """Mirror Redis' `online` again once the bus is back: its messages keep it from then."""
        while True:
            await asyncio.sleep(RETRY_S)
            if not self.link.connected:
                continue
            try:
                self._online = await self.registry.online()
            except (RedisError, OSError):
                continue
            return
