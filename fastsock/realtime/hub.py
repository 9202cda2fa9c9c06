"""The local hub: sessions on this process, and delivery to them.

A session is one client tab's numbered event stream. Every frame it is sent gets the next
`seq` and is kept for a while (replay.py), so a client that lost its socket can reconnect with
`resume: {session, last_seq}` and receive exactly what it missed, in order. A session
outlives its socket for RESUME_WINDOW_S; events published meanwhile are buffered for it.
When the buffer cannot cover a gap (too much missed, window passed, memory short, a restart,
or a session held by another node), the client is told to resync from the REST API instead.

An event is serialised once; each recipient session only prefixes its own `seq` (and the
`ref` of the request it answers). Writes never wait for a socket to drain, so one slow or
dead socket cannot delay the others."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import deque
from collections.abc import Coroutine, Iterable
from typing import Any, Protocol

from fastsock import tracing
from fastsock.metrics import Metrics
from fastsock.realtime.replay import ReplayBudget, ReplayBuffer
from fastsock.services.events import Origin, Ref

RESUME_WINDOW_S = 120.0
# Bytes of frames a session keeps for a replay: more than a socket may leave unsent when it is
# closed as too slow, so that close can still resume. Past this, a resume becomes a resync.
# Each frame counts with its bookkeeping (replay.cost), so this bounds their number too.
KEEP = 1024 * 1024
# Bytes all sessions of the process keep together (replay.py says what gives way first).
REPLAY_BUDGET = 256 * 1024 * 1024
# Sessions one user may hold (open tabs plus those awaiting a resume). The oldest detached
# one makes room for a new one; with every one attached, a new socket is refused.
SESSIONS_PER_USER = 12
# The close code of a socket that failed to authenticate, whose token expired, or whose login
# ended (signed out): its client tries to refresh its token, and signs out if refused.
CLOSE_AUTH = 4401
# The close code of every socket of an account just deactivated: its client signs out at once.
CLOSE_DEACTIVATED = 4403


class Transport(Protocol):
    family: str | None  # the login (refresh-token family) the socket authenticated with

    def write_frame(self, frame: bytes) -> None:
        """Queue one complete frame (UTF-8 JSON text) for the socket."""

    def close(self, code: int | None = None, reason: str | None = None) -> None: ...


def new_node_id() -> str:
    return secrets.token_hex(4)  # eight hex digits (cluster/hub.py checks the shape)


def encode(type_: str, data: dict[str, Any]) -> bytes:
    text = json.dumps({"type": type_, "data": data}, separators=(",", ":"), ensure_ascii=False)
    return text.encode()


def envelope(payload: bytes, seq: int | None, ref: Ref | None) -> bytes:
    """An encoded event (`{"type", "data"}`) with its `seq` and the `ref` it answers, if any."""
    if ref is None and seq is not None:  # most frames: one splice per recipient
        return b'{"seq":%d,' % seq + payload[1:]
    head = b"{"
    if seq is not None:
        head += b'"seq":%d,' % seq
    if ref is not None:
        head += b'"ref":%s,' % json.dumps(ref).encode()
    return head + payload[1:]


class Session:
    def __init__(self, session_id: str, user_id: str, budget: ReplayBudget) -> None:
        self.id = session_id
        self.user_id = user_id
        self.seq = 0
        self.socket: Transport | None = None
        self.expiry: asyncio.TimerHandle | None = None
        self.replay = ReplayBuffer(budget)
        # Requests waiting to be handled, in arrival order, with the socket each came on. The
        # session holds them (not the socket) so that a resumed socket's requests queue behind
        # the ones its predecessor left: one worker per session, one order.
        self.inbox: deque[tuple[Any, int, str, dict[str, Any], Ref | None]] = deque()
        self.inbox_bytes = 0
        self.working = False
        self.ended = False  # its account was deactivated: dropped when its socket closes

    def drop_requests(self) -> None:
        """Forget the requests still queued: their login ended, or the socket was closed
        for abuse."""
        self.inbox.clear()
        self.inbox_bytes = 0

    def deliver(self, payload: bytes, ref: Ref | None = None) -> None:
        """Number an encoded event, keep it, send it if attached."""
        self.seq += 1
        frame = envelope(payload, self.seq, ref)
        self.replay.keep(self.seq, frame, KEEP)
        if self.socket is not None:
            self.socket.write_frame(frame)

    def missed_since(self, last_seq: int) -> list[bytes] | None:
        """The frames after `last_seq`, or None if some of them are no longer kept."""
        return self.replay.since(last_seq, self.seq)


class Hub:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        # Session ids name their node, so a resume that reaches another node resyncs at once.
        self.node_id = new_node_id()
        self.replay_budget = ReplayBudget(REPLAY_BUDGET, metrics.replay_buffer_bytes)
        self._sessions: dict[str, Session] = {}
        self._by_user: dict[str, dict[str, Session]] = {}
        self.closing = False  # set at shutdown: no presence churn while sockets are closed
        self._tasks: set[asyncio.Task[None]] = set()

    # --- sessions -------------------------------------------------------------------------

    async def open(self, user_id: str, socket: Transport) -> tuple[Session, bool] | None:
        """A new session for the socket; (session, the user just came online), or None when
        the user already holds SESSIONS_PER_USER open sockets."""
        return self.open_session(user_id, socket, self.new_session_id())

    def new_session_id(self) -> str:
        return f"{self.node_id}.{secrets.token_urlsafe(12)}"

    def open_session(
        self, user_id: str, socket: Transport, session_id: str
    ) -> tuple[Session, bool] | None:
        held = self._by_user.get(user_id, {})
        if len(held) >= SESSIONS_PER_USER:
            detached = [s for s in held.values() if s.socket is None]
            if not detached:
                return None
            self._evict(detached[0])  # dicts keep insertion order: the first is the oldest
        session = Session(session_id, user_id, self.replay_budget)
        self._sessions[session.id] = session
        self._by_user.setdefault(user_id, {})[session.id] = session
        return session, self._attach(session, socket)

    async def resume(
        self, user_id: str, socket: Transport, session_id: str, last_seq: int
    ) -> tuple[Session, list[bytes], bool] | str:
        """Reattach a session and return (session, frames to replay, came online), or the
        reason it cannot be resumed."""
        session = self._sessions.get(session_id)
        if session is None:
            return "unknown"
        if session.user_id != user_id:
            return "wrong_user"
        missed = session.missed_since(last_seq)
        if missed is None:
            if session.socket is None:  # its client resyncs on a new one: free this one now
                self._evict(session)
            return "gap"
        if session.socket is not None:  # the old socket has not noticed it is dead yet
            old = session.socket
            self.detach(session, old)
            old.close(4000, "replaced by a newer connection")
        return session, missed, self._attach(session, socket)

    def _attach(self, session: Session, socket: Transport) -> bool:
        if session.expiry is not None:
            session.expiry.cancel()
            session.expiry = None
        came_online = not self.is_online(session.user_id)
        session.socket = socket
        self.replay_budget.back(session.replay)
        self.metrics.ws_connections.inc()
        return came_online

    def detach(self, session: Session, socket: Transport) -> bool:
        """The socket closed: keep the session for a resume; True if the user went offline."""
        if session.socket is not socket:
            return False  # already replaced by a resumed socket
        session.socket = None
        self.metrics.ws_connections.dec()
        loop = asyncio.get_running_loop()
        session.expiry = loop.call_later(RESUME_WINDOW_S, self._drop, session)
        self.replay_budget.away(session.replay, lambda: self._evict(session))
        return not self.is_online(session.user_id)

    def end(self, session: Session) -> None:
        """Drop a session of a deactivated account once detached: it stops collecting
        events for a resume that can never come."""
        self._evict(session)

    def _evict(self, session: Session) -> None:
        """Drop a detached session before its resume window ends."""
        if session.expiry is not None:
            session.expiry.cancel()
        self._drop(session)

    def _drop(self, session: Session) -> None:
        session.replay.release()
        self._sessions.pop(session.id, None)
        sessions = self._by_user.get(session.user_id, {})
        sessions.pop(session.id, None)
        if not sessions:
            self._by_user.pop(session.user_id, None)

    def is_online(self, user_id: str) -> bool:
        return any(s.socket is not None for s in self._by_user.get(user_id, {}).values())

    def attached(self, session_id: str) -> bool:
        session = self._sessions.get(session_id)
        return session is not None and session.socket is not None

    async def session_attached(self, user_id: str, session_id: str) -> bool:
        return self.attached(session_id)

    async def presence_flipped(self, user_id: str, online: bool) -> bool:
        return True  # one node: its sockets are all there are

    async def ready(self) -> bool:
        """Whether the hub can take sockets (cluster mode: Redis answers)."""
        return True

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
        self.deliver(user_ids, encode(type_, data), type_, origin)

    def deliver(
        self, user_ids: Iterable[str], payload: bytes, type_: str, origin: Origin | None
    ) -> None:
        """Deliver an encoded event to this process's sessions of the users (also the events
        other nodes publish, in cluster mode)."""
        started = time.perf_counter()
        delivered = local = 0
        for user_id in set(user_ids):
            sessions = self._by_user.get(user_id)
            if not sessions:
                continue
            local += 1
            for session in list(sessions.values()):
                ref = origin.ref if origin and origin.connection_id == session.id else None
                session.deliver(payload, ref)
                delivered += session.socket is not None
        if delivered:
            self.metrics.delivered(type_, delivered)
            self.metrics.event_delivery.observe(time.perf_counter() - started)
        # One span per event, none per recipient; none either for an event of another node's
        # (cluster mode: every node hears every event) that reached no socket here.
        if tracing.ON and (delivered or tracing.in_recording_span()):
            tracing.fanout(type_, local, delivered, time.perf_counter() - started)

    def sessions_of(self, user_id: str) -> list[str]:
        return list(self._by_user.get(user_id, {}))

    def publish_devices(
        self,
        user_id: str,
        type_: str,
        data: dict[str, Any],
        device: str | None,
        *,
        origin: Origin | None = None,
    ) -> None:
        for session_id in self.sessions_of(user_id):
            here = {**data, "here": session_id == device}
            self.publish_session(session_id, type_, here, origin=origin)

    def publish_session(
        self, session_id: str, type_: str, data: dict[str, Any], *, origin: Origin | None = None
    ) -> None:
        """Deliver to one session (one device), buffered for its resume if it is away."""
        session = self._sessions.get(session_id)
        if session is None:
            return
        ref = origin.ref if origin and origin.connection_id == session_id else None
        session.deliver(encode(type_, data), ref)
        if session.socket is not None:
            self.metrics.delivered(type_)

    def tell_everyone(self, type_: str, data: dict[str, Any]) -> None:
        """Deliver one event to every session of this process (kept for those away)."""
        payload = encode(type_, data)
        for session in list(self._sessions.values()):
            session.deliver(payload)

    def close_login(self, user_id: str, family: str) -> None:
        """Close the user's sockets signed in with one login (refresh-token family): it was
        revoked. Their clients cannot refresh a token of it, so they sign out."""
        for session in list(self._by_user.get(user_id, {}).values()):
            socket = session.socket
            if socket is not None and socket.family == family:
                session.drop_requests()
                socket.close(CLOSE_AUTH, "signed out")

    def close_user(self, user_id: str, families: list[str]) -> None:
        """The account was deactivated: close every socket of the user here, forget their
        queued requests, and drop the sessions (the detached ones now, the others when their
        socket has closed: socket.py `on_close`). `families` (its logins): for the cluster's
        other nodes, which refuse them from then on (cluster/hub.py)."""
        for session in list(self._by_user.get(user_id, {}).values()):
            session.drop_requests()
            if session.socket is None:
                self._evict(session)
            else:
                session.ended = True
                session.socket.close(CLOSE_DEACTIVATED, "account deactivated")

    # --- background work and shutdown -----------------------------------------------------

    def spawn(self, coro: Coroutine[None, None, None]) -> None:
        """Run follow-up work (e.g. presence) in the background; shutdown waits for it."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait_tasks(self, timeout: float) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    def close_all(self, code: int, reason: str) -> None:
        self.closing = True
        for session in list(self._sessions.values()):
            if session.expiry is not None:
                session.expiry.cancel()
            if session.socket is not None:
                session.socket.close(code, reason)
