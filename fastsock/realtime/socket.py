"""The WebSocket endpoint `/ws` (design.md section 4).

The first frame must be `auth {token, resume?}` within AUTH_TIMEOUT_S, else close 4401. The
reply is `ready {user, session, resume}` (without a `seq`), followed, on a successful resume,
by every frame the client missed. Every later frame is `{"type", "data", "ref"?}`; a malformed
or unknown one gets `error invalid_request` (with its ref, when it has a usable one) and the
socket stays open. Frames are handled in order, one at a time per socket; `ping` is answered
at once, and its answer is neither numbered nor kept for a replay: it only tells this socket
that it is alive."""

from __future__ import annotations

import json
import logging
import secrets
import time
from asyncio import Future
from collections import deque
from typing import Any

from tornado.ioloop import IOLoop
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketHandler

from fastsock import logs, tracing
from fastsock.connections import unsent_bytes
from fastsock.context import AppContext
from fastsock.errors import (
    ApiError,
    InvalidRequest,
    RateLimited,
    TooLarge,
    Unauthenticated,
    Unavailable,
)
from fastsock.handlers.base import error_code
from fastsock.realtime.hub import CLOSE_AUTH, Session, encode, envelope
from fastsock.realtime.routes import ROUTES
from fastsock.services import fields
from fastsock.services.accounts import Login
from fastsock.services.events import Origin, Ref
from fastsock.services.limits import RateLimiter
from fastsock.services.schemas import validate
from fastsock.store import is_unavailable

log = logging.getLogger("fastsock.ws")

AUTH_TIMEOUT_S = 10.0
MAX_FRAME_BYTES = 64 * 1024
# Tornado's own hard cap: frames beyond this are dropped with close 1009 before we see them.
HARD_FRAME_BYTES = 1024 * 1024
# Bytes a socket may leave waiting in the server's own buffer (those the kernel would not
# take yet) before it is judged too slow and closed: half what its session keeps (hub.KEEP),
# so that, with the largest frame on top, what it left unsent is still kept for its resume
# (unless that is thousands of tiny frames, each counted with its bookkeeping in KEEP: then
# the resume resyncs, which loses nothing). A resume's replay is not counted: it is written
# at once, and KEEP bounds it already.
MAX_PENDING_BYTES = 512 * 1024
REF_MAX = 64
# Frames are handled one at a time, in order, while the socket keeps reading (so keepalive
# pongs never wait behind a slow request). Beyond this many bytes of frames waiting to be
# handled, further requests are refused.
MAX_QUEUED_BYTES = 1024 * 1024
ABUSE_WINDOW_S = 10.0

# Close codes besides hub.CLOSE_AUTH (4401), which the hub's sign-out uses too.
CLOSE_ABUSE = 4429
CLOSE_TOO_BIG = 1009
CLOSE_SLOW = 1013
TEXT_FRAME = 0x1  # the WebSocket opcode of a text frame


class BadFrame(Exception):
    """A client frame refused before it is handled, with its ref if that was usable."""

    def __init__(self, error: InvalidRequest, ref: Ref | None) -> None:
        super().__init__(error.message)
        self.error = error
        self.ref = ref


class ChatSocket(WebSocketHandler):
    def initialize(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.session: Session | None = None
        self.request_id = secrets.token_hex(8)  # names this connection in the logs
        # What may still be unsent of the replay written on a resume (see write_frame).
        self.replay_unsent = 0
        self._expiry_timer: object | None = None
        self.oversize_frames = 0
        self.refusals: deque[float] = deque()
        self._auth_timer: object | None = None
        limits = ctx.settings.limits
        self.pings = RateLimiter(limits.pings_per_s, limits.pings_burst)  # one bucket: this socket
        self.login: Login | None = None  # who authenticated: each request checks it lives
        self.family: str | None = None  # the login (refresh-token family), for its logout

    @property
    def user_id(self) -> str:
        return self.session.user_id if self.session else ""

    def check_origin(self, origin: str) -> bool:
        # Authentication is the first frame's token, never a cookie, so a foreign page cannot
        # ride on a user's session; allow clients served from other origins.
        return True

    def open(self) -> None:
        # Chat frames are small and latency-bound: send each at once rather than let Nagle
        # hold the last one of a burst (a replay's tail) for the peer's delayed ACK.
        self.set_nodelay(True)
        self._auth_timer = IOLoop.current().call_later(AUTH_TIMEOUT_S, self._auth_timeout)

    def _auth_timeout(self) -> None:
        if self.session is None:
            self.close(CLOSE_AUTH, "authentication timeout")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """A request refused before any upgrade (a method other than GET, a failure): the
        API's error shape (finish), not tornado's HTML page."""
        self.finish()

    def finish(self, chunk: str | bytes | dict[str, Any] | None = None) -> Future[None]:
        """Only for a request that is not upgraded: tornado says why in plain text (no
        `Upgrade` or `Connection` header, bad WebSocket headers) or by its status alone
        (write_error); say it in the API's error shape instead."""
        status = self.get_status()
        if status >= 400:
            message = chunk.decode() if isinstance(chunk, bytes) else str(chunk or self._reason)
            error = {"code": error_code(status), "message": message}
            self.set_header("Content-Type", "application/json; charset=utf-8")
            chunk = json.dumps({"error": error})
        return super().finish(chunk)

    # --- outgoing -------------------------------------------------------------------------

    def write_frame(self, frame: bytes) -> None:
        """Queue one complete frame; close the socket if it has fallen too far behind."""
        if self.replay_unsent:
            # The replay went out first, so no more of it can be unsent than is unsent at all.
            self.replay_unsent = min(self.replay_unsent, unsent_bytes(self))
        if self._write(frame) and unsent_bytes(self) - self.replay_unsent > MAX_PENDING_BYTES:
            self.ctx.metrics.ws_dropped.inc()
            log.warning("ws_slow_consumer_closed", extra={"fields": {"session": self.request_id}})
            self.close(CLOSE_SLOW, "too slow: reconnect and resume")

    def _replay(self, frames: list[bytes]) -> None:
        """Write a resume's missed frames in one go. The kernel may take little of them at
        once (a new connection's send buffer is small); the rest waits without counting
        toward MAX_PENDING_BYTES, or a replay beyond it would close a healthy socket."""
        for frame in frames:
            if not self._write(frame):
                return
        self.replay_unsent = unsent_bytes(self)

    def _write(self, frame: bytes) -> bool:
        """Hand one frame (UTF-8 JSON, sent as a text frame) to tornado; False if closed.

        Straight to the protocol's framing: `write_message` wraps every write in a coroutine
        and a task (to translate an error that nobody here waits for), which cost more than
        the write itself when one event goes to hundreds of sockets. Nothing is compressed
        (no compression is offered: get_compression_options is not overridden), and the
        stream's own future already swallows a write that fails as the socket closes."""
        connection = self.ws_connection
        if connection is None or connection.is_closing():
            return False
        try:
            connection._write_frame(True, TEXT_FRAME, frame)  # type: ignore[attr-defined]
        except StreamClosedError:
            return False
        return True

    def send_event(self, type_: str, data: dict[str, Any], ref: Ref | None = None) -> None:
        assert self.session is not None
        self.session.deliver(encode(type_, data), ref)

    def refuse(self, exc: ApiError, ref: Ref | None, *, kept: bool = True) -> None:
        """Answer with `error` (`kept`: numbered and kept for a replay, like every event but
        the answers to `ping`); a socket refused too often in a short time is closed."""
        if kept:
            self.send_event("error", exc.to_dict(), ref)
        else:
            self.write_frame(envelope(encode("error", exc.to_dict()), None, ref))
        now = time.monotonic()
        self.refusals.append(now)
        while self.refusals and self.refusals[0] < now - ABUSE_WINDOW_S:
            self.refusals.popleft()
        if len(self.refusals) > self.ctx.settings.limits.abuse_refusals:
            log.warning("ws_abuse_closed", extra={"fields": {"session": self.request_id}})
            self.close(CLOSE_ABUSE, "too many refused requests")
            if self.session is not None:  # an abuser's queued requests are not handled
                self.session.drop_requests()

    # --- incoming -------------------------------------------------------------------------

    async def on_message(self, message: str | bytes) -> None:
        # Closing (signed out, expired, too slow...): tornado keeps delivering frames until the
        # client answers the close or a timeout ends it; none of them may act any more.
        if self.ws_connection is None or self.ws_connection.is_closing():
            return
        logs.request_id.set(self.request_id)
        logs.user_id.set(self.user_id or None)
        size = len(message) if isinstance(message, bytes) else len(message.encode())
        if size > MAX_FRAME_BYTES:
            self.oversize_frames += 1
            if self.session is None or self.oversize_frames > 1:
                self.close(CLOSE_TOO_BIG, "frame too large")
            else:
                self.refuse(TooLarge(f"frames are limited to {MAX_FRAME_BYTES} bytes"), None)
            return
        try:
            type_, data, ref = self._parse(message)
        except BadFrame as bad:
            if self.session is None:
                self.close(CLOSE_AUTH, "the first frame must be auth")
            else:
                self.refuse(bad.error, bad.ref)
            return
        if self.session is None:
            with tracing.ws_span("auth", None) as span:
                await self._authenticate(type_, data)
                if span is not None:  # never the token
                    span.set_attribute("fastsock.ws.authenticated", self.session is not None)
                    if self.session is not None:
                        span.set_attribute("user.id", self.user_id)
            return
        if type_ == "ping":  # a liveness probe: answered at once, not behind slow requests
            self._pong(data, ref)
            return
        session = self.session
        if session.inbox_bytes + size > MAX_QUEUED_BYTES:
            self.refuse(RateLimited("too many requests waiting for replies", retry_after=1.0), ref)
            return
        session.inbox.append((self, size, type_, data, ref))
        session.inbox_bytes += size
        if not session.working:
            session.working = True
            self.ctx.hub.spawn(self._work(session))

    @staticmethod
    async def _work(session: Session) -> None:
        """Handle the session's queued requests in arrival order, each by the socket it came
        on; also after that socket closed, so that every request that arrived is answered
        (into the session, for a resume)."""
        try:
            while session.inbox:
                socket, size, type_, data, ref = session.inbox.popleft()
                session.inbox_bytes -= size
                await socket._dispatch(type_, data, ref)
        finally:
            session.working = False

    @staticmethod
    def _parse(message: str | bytes) -> tuple[str, dict[str, Any], Ref | None]:
        """(type, data, ref) of a client frame, or BadFrame: with the frame's ref whenever it
        has a usable one, so that the client can tell which request was refused."""
        try:
            frame = fields.parse_json(message, "frames")
        except InvalidRequest as exc:
            raise BadFrame(exc, None) from None
        if not isinstance(frame, dict):
            raise BadFrame(InvalidRequest("frames must be objects with a type", field="type"), None)
        ref = frame.get("ref")
        valid_ref = (
            isinstance(ref, str) and len(ref) <= REF_MAX and not fields.SURROGATE.search(ref)
        ) or (type(ref) is int and abs(ref) < 2**53)  # exact in JavaScript
        if ref is not None and not valid_ref:
            error = f"ref must be an integer or a string of at most {REF_MAX} chars"
            raise BadFrame(InvalidRequest(error, field="ref"), None)
        try:
            if not isinstance(frame.get("type"), str):
                raise InvalidRequest("frames must be objects with a type", field="type")
            data = frame.get("data", {})
            if not isinstance(data, dict):
                raise InvalidRequest("data must be an object", field="data")
            unknown = set(frame) - {"type", "data", "ref"}
            if unknown:  # repr: a key is client text, and may hold a lone surrogate
                raise InvalidRequest(f"unknown frame field {sorted(unknown)[0]!r}")
            fields.check_document(data, "data")
        except InvalidRequest as exc:
            raise BadFrame(exc, ref) from None
        return frame["type"], data, ref

    async def _authenticate(self, type_: str, data: dict[str, Any]) -> None:
        services = self.ctx.services
        try:
            if type_ != "auth":
                raise Unauthenticated("the first frame must be auth")
            auth = validate("auth", data)
            resume = auth["resume"]
            login = self.login = await services.accounts.authenticate(auth["token"])
            user_id, expires_at, self.family = login.user_id, login.expires_at, login.family
            user = await services.accounts.me(user_id)
            services.accounts.check_access(auth["token"])  # the login may have ended meanwhile
        except ApiError as exc:
            self.close(CLOSE_AUTH, exc.message[:120])
            return
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            self.close(1011, "database unavailable")
            return
        if self.ws_connection is None:  # closed while we looked the user up
            return
        hub = self.ctx.hub
        if hub.closing:  # the server began shutting down meanwhile: close_all has passed us
            self.close(1001, "server shutting down")
            return
        outcome: str | None = None
        missed: list[bytes] = []
        try:
            if resume is not None:
                resumed = await hub.resume(user_id, self, *resume)
                if isinstance(resumed, str):
                    outcome = "resync"
                    self.ctx.metrics.resume.labels(resumed).inc()
                else:
                    self.session, missed, came_online = resumed
                    services.calls.device_back(self.session.id, user_id)
                    outcome = "ok"
                    self.ctx.metrics.resume.labels("ok").inc()
            if self.session is None:
                opened = await hub.open(user_id, self)
                if opened is None:
                    self.close(CLOSE_ABUSE, "too many open connections")
                    return
                self.session, came_online = opened
        except Unavailable:  # cluster mode without Redis: the client retries with backoff
            self.close(1011, "cluster unavailable")
            return
        if self.ws_connection is None:  # closed while the hub asked the cluster (Redis)
            self.on_close()
            return
        try:  # a logout or deactivation while the hub registered the socket missed it
            services.accounts.require_live(login)
        except ApiError as exc:
            self.close(CLOSE_AUTH, exc.message)
            return
        # The socket lives as long as its token: the client re-authenticates and resumes.
        self._expiry_timer = IOLoop.current().call_at(
            IOLoop.current().time() + max(0.0, expires_at - time.time()), self._token_expired
        )
        logs.user_id.set(user_id)
        ready = {"user": user, "session": self.session.id, "resume": outcome}
        self.write_frame(encode("ready", ready))
        self._replay(missed)
        if outcome != "ok":
            services.calls.device_joined(self.session.id, user_id)
        if came_online:
            await self._presence(True)

    def _token_expired(self) -> None:
        self.close(CLOSE_AUTH, "token expired: authenticate again and resume")

    def _pong(self, data: dict[str, Any], ref: Ref | None) -> None:
        """Answer a `ping` on this socket only, without a seq: a resumed client has no use
        for an old pong, so none takes room in the session's replay buffer."""
        try:
            if wait := self.pings.retry_after(None):
                self.ctx.metrics.rate_limited.labels("ping").inc()
                raise RateLimited("too many pings; slow down", retry_after=wait)
            validate("ping", data)
        except ApiError as exc:
            self.refuse(exc, ref, kept=False)
        else:
            self.write_frame(envelope(encode("pong", {}), None, ref))

    async def _dispatch(self, type_: str, data: dict[str, Any], ref: Ref | None) -> None:
        route = ROUTES.get(type_)
        if route is None:
            self.refuse(InvalidRequest(f"unknown event type {type_[:40]!r}", field="type"), ref)
            return
        assert self.session is not None and self.login is not None
        origin = Origin(self.session.id, ref)
        with tracing.ws_span(type_, self.user_id) as span:  # the store calls, the fan-out: in it
            try:
                # A request queued before the login ended (logout, deactivation) does not run
                # after it: a set lookup, no I/O.
                self.ctx.services.accounts.require_live(self.login)
                reply = await route(self.ctx.services, self.user_id, data, origin)
            except ApiError as exc:
                tracing.refused(span, exc.code)
                self.refuse(exc, ref)  # refusals pile up toward the abuse limit
                return
            except Exception as exc:
                if not is_unavailable(exc):
                    tracing.failed(span, "internal_error")
                    log.exception("ws_event_failed", extra={"fields": {"type": type_}})
                    error = {"code": "internal_error", "message": "server error"}
                    self.send_event("error", error, ref)
                    return
                tracing.failed(span, "unavailable")
                error = {"code": "unavailable", "message": "database unavailable"}
                self.send_event("error", error, ref)
                return
            if reply is not None and ref is not None:
                self.send_event("ack", reply, ref)

    # --- closing --------------------------------------------------------------------------

    def on_close(self) -> None:
        for timer in (self._auth_timer, self._expiry_timer):
            if timer is not None:
                IOLoop.current().remove_timeout(timer)
        hub = self.ctx.hub
        if self.session is None:
            return
        went_offline = hub.detach(self.session, self)
        if self.session.ended:  # the account was deactivated: nothing to resume
            hub.end(self.session)
        if self.session.socket is None and not hub.closing:
            self.ctx.services.calls.device_left(self.session.id, self.user_id)
        if went_offline and not hub.closing:
            hub.spawn(self._presence(False))

    async def _presence(self, online: bool) -> None:
        try:
            await self.ctx.services.presence.changed(self.user_id, online)
        except Exception as exc:  # presence is best effort; never break the socket over it
            if not is_unavailable(exc):
                log.exception("presence_failed")
