"""The WebSocket endpoint `/ws` (design.md section 4).

The first frame must be `auth` within AUTH_TIMEOUT_S, else close 4401. Every later frame is
`{"type", "data", "ref"?}`; a malformed or unknown one gets `error invalid_request` and the
socket stays open. Frames are handled in order, one at a time per socket."""

from __future__ import annotations

import json
import logging
import secrets
from asyncio import Future
from typing import Any

from tornado.ioloop import IOLoop
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from fastsock import logs
from fastsock.context import AppContext
from fastsock.errors import ApiError, InvalidRequest, TooLarge, Unauthenticated
from fastsock.realtime.hub import encode
from fastsock.realtime.routes import ROUTES
from fastsock.services.events import Origin, Ref
from fastsock.services.fields import only
from fastsock.store import is_unavailable

log = logging.getLogger("fastsock.ws")

AUTH_TIMEOUT_S = 10.0
MAX_FRAME_BYTES = 64 * 1024
# Tornado's own hard cap: frames beyond this are dropped with close 1009 before we see them.
HARD_FRAME_BYTES = 1024 * 1024
# Queued-but-unsent bytes a socket may hold before it is judged too slow and closed.
MAX_PENDING_BYTES = 4 * 1024 * 1024
REF_MAX = 64

CLOSE_AUTH = 4401
CLOSE_TOO_BIG = 1009
CLOSE_SLOW = 1013


class ChatSocket(WebSocketHandler):
    def initialize(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.id = secrets.token_urlsafe(12)
        self.request_id = self.id  # the connection id doubles as the request id in logs
        self.user_id = ""
        self.seq = 0
        self.pending_bytes = 0
        self.oversize_frames = 0
        self.registered = False
        self._auth_timer: object | None = None

    def check_origin(self, origin: str) -> bool:
        # Authentication is the first frame's token, never a cookie, so a foreign page cannot
        # ride on a user's session; allow clients served from other origins.
        return True

    def open(self) -> None:
        self._auth_timer = IOLoop.current().call_later(AUTH_TIMEOUT_S, self._auth_timeout)

    def _auth_timeout(self) -> None:
        if not self.registered:
            self.close(CLOSE_AUTH, "authentication timeout")

    # --- outgoing -------------------------------------------------------------------------

    def send_frame(self, payload: str, ref: Ref | None) -> None:
        """Prefix this socket's seq (and ref) to an encoded event and queue it."""
        self.seq += 1
        head = f'{{"seq":{self.seq},'
        if ref is not None:
            head += f'"ref":{json.dumps(ref)},'
        frame = head + payload[1:]
        try:
            future = self.write_message(frame)
        except WebSocketClosedError:
            return
        size = len(frame)
        self.pending_bytes += size
        future.add_done_callback(lambda f: self._drained(f, size))
        if self.pending_bytes > MAX_PENDING_BYTES:
            self.ctx.metrics.ws_dropped.inc()
            log.warning("ws_slow_consumer_closed", extra={"fields": {"conn": self.id}})
            self.close(CLOSE_SLOW, "too slow: reconnect")

    def _drained(self, future: Future[None], size: int) -> None:
        self.pending_bytes -= size
        if not future.cancelled():
            future.exception()  # a write to a socket that closed meanwhile: nothing to do

    def send_event(self, type_: str, data: dict[str, Any], ref: Ref | None = None) -> None:
        self.send_frame(encode(type_, data), ref)

    def send_api_error(self, exc: ApiError, ref: Ref | None) -> None:
        self.send_event("error", exc.to_dict(), ref)

    # --- incoming -------------------------------------------------------------------------

    async def on_message(self, message: str | bytes) -> None:
        logs.request_id.set(self.id)
        logs.user_id.set(self.user_id or None)
        size = len(message) if isinstance(message, bytes) else len(message.encode())
        if size > MAX_FRAME_BYTES:
            self.oversize_frames += 1
            self.send_api_error(TooLarge(f"frames are limited to {MAX_FRAME_BYTES} bytes"), None)
            if self.oversize_frames > 1 or not self.registered:
                self.close(CLOSE_TOO_BIG, "frame too large")
            return
        try:
            type_, data, ref = self._parse(message)
        except InvalidRequest as exc:
            if not self.registered:
                self.close(CLOSE_AUTH, "the first frame must be auth")
            else:
                self.send_api_error(exc, None)
            return
        if not self.registered:
            await self._authenticate(type_, data)
            return
        await self._dispatch(type_, data, ref)

    @staticmethod
    def _parse(message: str | bytes) -> tuple[str, dict[str, Any], Ref | None]:
        try:
            frame = json.loads(message)
        except (ValueError, UnicodeDecodeError):
            raise InvalidRequest("frames must be JSON") from None
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            raise InvalidRequest("frames must be objects with a type", field="type")
        data = frame.get("data", {})
        if not isinstance(data, dict):
            raise InvalidRequest("data must be an object", field="data")
        ref = frame.get("ref")
        valid_ref = (isinstance(ref, str) and len(ref) <= REF_MAX) or (
            type(ref) is int and abs(ref) < 2**53  # exact in JavaScript
        )
        if ref is not None and not valid_ref:
            raise InvalidRequest(
                f"ref must be an integer or a string of at most {REF_MAX} characters"
            )
        unknown = set(frame) - {"type", "data", "ref"}
        if unknown:
            raise InvalidRequest(f"unknown frame field {sorted(unknown)[0]}")
        return frame["type"], data, ref

    async def _authenticate(self, type_: str, data: dict[str, Any]) -> None:
        services = self.ctx.services
        try:
            if type_ != "auth":
                raise Unauthenticated("the first frame must be auth")
            only(data, {"token", "resume"})
            user_id = services.accounts.authenticate(data.get("token"))
            user = await services.accounts.get(user_id)
        except ApiError as exc:
            self.close(CLOSE_AUTH, exc.message[:120])
            return
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            self.send_event("error", {"code": "unavailable", "message": "database unavailable"})
            self.close(1011, "database unavailable")
            return
        if self.ws_connection is None:  # closed while we looked the user up
            return
        self.user_id = user_id
        self.registered = True
        logs.user_id.set(user_id)
        # Replaying missed events needs issue #3's event log; until then a resume is a resync.
        resume = "resync" if data.get("resume") else None
        first = self.ctx.hub.add(self)
        self.send_event("ready", {"user": user, "session": self.id, "resume": resume})
        if first:
            await self._announce(True)

    async def _dispatch(self, type_: str, data: dict[str, Any], ref: Ref | None) -> None:
        if type_ == "ping":
            self.send_event("pong", {}, ref)
            return
        route = ROUTES.get(type_)
        if route is None:
            self.send_api_error(
                InvalidRequest(f"unknown event type {type_[:40]!r}", field="type"), ref
            )
            return
        try:
            reply = await route(self.ctx.services, self.user_id, data, Origin(self.id, ref))
        except ApiError as exc:
            self.send_api_error(exc, ref)
            return
        except Exception as exc:
            if not is_unavailable(exc):
                log.exception("ws_event_failed", extra={"fields": {"type": type_}})
                self.send_event("error", {"code": "internal_error", "message": "server error"}, ref)
                return
            self.send_event(
                "error", {"code": "unavailable", "message": "database unavailable"}, ref
            )
            return
        if reply is not None and ref is not None:
            self.send_event("ack", reply, ref)

    # --- closing --------------------------------------------------------------------------

    def on_close(self) -> None:
        if self._auth_timer is not None:
            IOLoop.current().remove_timeout(self._auth_timer)  # type: ignore[arg-type]
        if self.registered and self.ctx.hub.remove(self) and not self.ctx.hub.closing:
            self.ctx.hub.spawn(self._announce(False))

    async def _announce(self, online: bool) -> None:
        try:
            await self.ctx.services.presence.announce(self.user_id, online)
        except Exception as exc:  # presence is best effort; never break the socket over it
            if not is_unavailable(exc):
                log.exception("presence_failed")
