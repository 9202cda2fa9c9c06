"""The worker's WebSocket `/ws`: one participant's signaling (docs/calls.md, "Client <-> worker").

The first frame must be `join {token, publish}` within JOIN_TIMEOUT_S, else close 4401; a
refused join closes with the code sfu/auth.py names. After the join, frames are
`{"type", "data", "ref"?}`; a malformed or unknown one gets `error {code, message}` with its
ref and the socket stays open. Frames are handled one at a time, in order (tornado waits for
`on_message` to return before it delivers the next one).

What one socket can make the worker hold is bounded: sockets waiting to join are counted
(beyond 2 x SFU_CAPACITY, refused) and read at most JOIN_FRAME_BYTES at a time; a joined
one's frames are rate-limited (too many refusals close it), and one that leaves more than
MAX_UNSENT_BYTES unsent (it reads slower than it is sent to) is closed."""

from __future__ import annotations

import json
import logging
import time
from asyncio import Future
from collections import deque
from typing import TYPE_CHECKING, Any

from tornado.ioloop import IOLoop
from tornado.websocket import WebSocketClosedError, WebSocketHandler, WebSocketProtocol13

from fastsock import tracing
from fastsock.connections import unsent_bytes
from fastsock.errors import ApiError, InvalidRequest, RateLimited, TooLarge
from fastsock.services.limits import RateLimiter
from sfu.auth import CLOSE_INVALID, JoinRefused

if TYPE_CHECKING:
    from sfu.app import Worker
    from sfu.peer import Peer

log = logging.getLogger("sfu")

JOIN_TIMEOUT_S = 10.0
# Tornado closes with 1009 a frame beyond its cap before we see it, having read no more than
# the cap. Until the join (< 5 KiB) the cap is JOIN_FRAME_BYTES; after it, a frame a little
# over MAX_FRAME_BYTES gets `error too_large` and the socket stays open.
JOIN_FRAME_BYTES = 8 * 1024
MAX_FRAME_BYTES = 64 * 1024
HARD_FRAME_BYTES = MAX_FRAME_BYTES + 8 * 1024
FRAMES_PER_S, FRAMES_BURST = 20.0, 50  # after the join, per socket
ABUSE_REFUSALS, ABUSE_WINDOW_S = 20, 10.0  # more refused frames than this in the window: closed
# Bytes waiting in tornado's buffer (those the kernel would not take yet) before the socket is
# judged too slow a reader and closed: several offers' worth.
MAX_UNSENT_BYTES = 256 * 1024
CLOSE_BUSY = 1013  # too slow a reader, or too many sockets waiting to join: connect again
CLOSE_ABUSE = 4429  # too many refused frames (FastSock's code for the same)
REF_MAX = 64
MAX_SDP = 60 * 1024
MAX_CANDIDATE = 512

Ref = str | int


Types = type | tuple[type, ...]
NONE = type(None)
CANDIDATE: dict[str, Types] = {
    "sdpMid": (str, NONE),
    "sdpMLineIndex": (int, NONE),
    "usernameFragment": (str, NONE),
}


def _is(value: object, types: Types) -> bool:
    if isinstance(value, bool):  # not an int here
        return bool in (types if isinstance(types, tuple) else (types,))
    return isinstance(value, types)


def _object(
    data: dict[str, Any],
    required: dict[str, Types],
    optional: dict[str, Types] | None = None,
    where: str = "",
) -> None:
    """`data` has every `required` key and maybe `optional` ones, each of its type."""
    optional = optional or {}
    for key in data:
        if key not in required and key not in optional:
            raise InvalidRequest(f"unknown field {where}{key[:40]!r}", field=where + key[:40])
    for key, types in (required | optional).items():
        if (key in required or key in data) and not (key in data and _is(data[key], types)):
            raise InvalidRequest(f"{where}{key} is missing or of the wrong type", field=where + key)


def _flags(data: dict[str, Any], names: tuple[str, str], where: str = "") -> dict[str, bool]:
    _object(data, dict.fromkeys(names, bool), where=where)
    return {name: data[name] for name in names}


def parse_frame(message: str | bytes) -> tuple[str, dict[str, Any], Ref | None]:
    """(type, data, ref) of a client frame; InvalidRequest (with the ref, when usable)."""
    try:
        frame = json.loads(message)
    except (ValueError, UnicodeDecodeError):
        raise FrameError(InvalidRequest("frames must be JSON objects"), None) from None
    if not isinstance(frame, dict):
        raise FrameError(InvalidRequest("frames must be objects with a type", field="type"), None)
    ref = frame.get("ref")
    if ref is not None and not (
        (isinstance(ref, str) and len(ref) <= REF_MAX) or (type(ref) is int and abs(ref) < 2**53)
    ):
        error = InvalidRequest(f"ref must be an integer or a string of at most {REF_MAX} chars")
        raise FrameError(error, None)
    type_, data = frame.get("type"), frame.get("data", {})
    if set(frame) - {"type", "data", "ref"}:
        raise FrameError(InvalidRequest("frames hold only type, data and ref"), ref)
    if not isinstance(type_, str):
        raise FrameError(InvalidRequest("frames must be objects with a type", field="type"), ref)
    if not isinstance(data, dict):
        raise FrameError(InvalidRequest("data must be an object", field="data"), ref)
    return type_, data, ref


class FrameError(Exception):
    def __init__(self, error: ApiError, ref: Ref | None) -> None:
        super().__init__(error.message)
        self.error = error
        self.ref = ref


class WorkerSocket(WebSocketHandler):
    def initialize(self, worker: Worker) -> None:
        self.worker = worker
        self.peer: Peer | None = None
        self._join_timer: object | None = None
        self._waiting = False  # counted in worker.unjoined
        self.frames = RateLimiter(FRAMES_PER_S, FRAMES_BURST)  # one bucket: this socket
        self.refusals: deque[float] = deque()

    def check_origin(self, origin: str) -> bool:
        # The join token is the only credential (never a cookie): any page may connect.
        return True

    @property
    def max_message_size(self) -> int:
        """Tornado reads this once, as the socket opens: the join's cap (raised after it)."""
        return JOIN_FRAME_BYTES

    def open(self) -> None:
        self.set_nodelay(True)
        if self.worker.unjoined >= self.worker.max_unjoined:
            self.close(CLOSE_BUSY, "too many connections waiting to join: try again")
            return
        self.worker.unjoined += 1
        self._waiting = True
        self._join_timer = IOLoop.current().call_later(JOIN_TIMEOUT_S, self._join_timeout)

    def _join_timeout(self) -> None:
        if self.peer is None:
            self.close(CLOSE_INVALID, "no join within 10 s")

    def _done_waiting(self) -> None:
        if self._waiting:
            self._waiting = False
            self.worker.unjoined -= 1
        if self._join_timer is not None:
            IOLoop.current().remove_timeout(self._join_timer)
            self._join_timer = None

    # --- channel (what the peer and room use) ---------------------------------------------

    def send(self, type_: str, data: dict[str, Any], ref: Ref | None = None) -> None:
        frame: dict[str, Any] = {"type": type_, "data": data}
        if ref is not None:
            frame["ref"] = ref
        try:
            written = self.write_message(json.dumps(frame, separators=(",", ":")))
        except WebSocketClosedError:  # gone or closing: its on_close cleans up
            return
        written.add_done_callback(_written)
        if unsent_bytes(self) > MAX_UNSENT_BYTES:
            fields = {"user_id": self.peer.user_id if self.peer else None}
            log.warning("sfu_slow_consumer_closed", extra={"fields": fields})
            self.close(CLOSE_BUSY, "too slow: reading less than the worker sends")

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        if self.ws_connection is not None and not self.ws_connection.is_closing():
            super().close(code, reason)

    # --- incoming ---------------------------------------------------------------------------

    async def on_message(self, message: str | bytes) -> None:
        if self.ws_connection is None or self.ws_connection.is_closing():
            return
        size = len(message) if isinstance(message, bytes) else len(message.encode())
        try:
            if size > MAX_FRAME_BYTES:
                raise FrameError(TooLarge(f"frames are limited to {MAX_FRAME_BYTES} bytes"), None)
            type_, data, ref = parse_frame(message)
        except FrameError as bad:
            if self.peer is None:
                self.close(CLOSE_INVALID, "the first frame must be join")
            else:
                self.refuse(bad.error, bad.ref)
            return
        if self.peer is None:
            await self._join(type_, data)
            return
        if wait := self.frames.retry_after(None):
            self.refuse(RateLimited("too many frames; slow down", retry_after=wait), ref)
            return
        try:
            await self._dispatch(type_, data, ref)
        except ApiError as exc:
            self.refuse(exc, ref)

    def refuse(self, error: ApiError, ref: Ref | None) -> None:
        """Answer `error` with the frame's ref; a socket refused too often is closed."""
        self.send("error", error.to_dict(), ref)
        now = time.monotonic()
        self.refusals.append(now)
        while self.refusals[0] < now - ABUSE_WINDOW_S:
            self.refusals.popleft()
        if len(self.refusals) > ABUSE_REFUSALS:
            fields = {"user_id": self.peer.user_id if self.peer else None}
            log.warning("sfu_abuse_closed", extra={"fields": fields})
            self.close(CLOSE_ABUSE, "too many refused frames")

    async def _join(self, type_: str, data: dict[str, Any]) -> None:
        if type_ != "join":
            self.close(CLOSE_INVALID, "the first frame must be join")
            return
        with tracing.ws_span("join", None) as span:  # never the token
            try:
                token = data.get("token")
                publish = data.get("publish")
                if set(data) != {"token", "publish"} or not isinstance(publish, dict):
                    raise JoinRefused(CLOSE_INVALID, "join needs token and publish")
                try:
                    flags = _flags(publish, ("audio", "video"), "publish.")
                except InvalidRequest as exc:
                    raise JoinRefused(CLOSE_INVALID, exc.message[:100]) from None
                self.peer = self.worker.join(self, token, flags, started=time.monotonic())
            except JoinRefused as refused:
                tracing.refused(span, str(refused.code))
                self.close(refused.code, refused.reason)
                return
            if span is not None:
                span.set_attribute("user.id", self.peer.user_id)
                span.set_attribute("fastsock.call.id", self.peer.room.call_id)
        self._done_waiting()
        connection = self.ws_connection
        assert isinstance(connection, WebSocketProtocol13)  # the only protocol Tornado has
        # Tornado's per-socket settings (no public setter): a joined socket's frames may be
        # up to MAX_FRAME_BYTES (an SDP answer).
        connection.params.max_message_size = HARD_FRAME_BYTES

    async def _dispatch(self, type_: str, data: dict[str, Any], ref: Ref | None) -> None:
        peer = self.peer
        assert peer is not None
        if type_ == "ping":
            _object(data, {})
            self.send("pong", {}, ref)
        elif type_ == "answer":
            _object(data, {"revision": int, "sdp": dict})
            _object(data["sdp"], {"type": str, "sdp": str}, where="sdp.")
            if data["sdp"]["type"] != "answer":
                raise InvalidRequest("sdp.type must be answer", field="sdp.type")
            if len(data["sdp"]["sdp"]) > MAX_SDP:
                raise InvalidRequest(f"sdp.sdp is over {MAX_SDP} characters", field="sdp.sdp")
            await peer.answer(data["revision"], data["sdp"]["sdp"])
        elif type_ == "candidate":
            _object(data, {"candidate": (dict, NONE)})
            candidate = data["candidate"]
            if candidate is not None:
                _candidate(candidate)
            await peer.add_candidate(candidate)
        elif type_ == "publish":
            # _flags keys its answer by the names given, here the two kinds.
            peer.set_publish(_flags(data, ("audio", "video")))  # type: ignore[arg-type]
        elif type_ == "state":
            flags = _flags(data, ("audio_muted", "video_muted"))
            if peer.set_muted(flags["audio_muted"], flags["video_muted"]):
                peer.room.state_changed(peer)  # only a change is relayed to everyone
        elif type_ == "leave":
            _object(data, {})
            self.worker.leave(peer, "leave")
            self.close(1000, "left")
        else:
            raise InvalidRequest(f"unknown event type {type_[:40]!r}", field="type")

    def on_close(self) -> None:
        self._done_waiting()
        if self.peer is not None:
            self.worker.leave(self.peer, "disconnected")


def _written(future: Future[None]) -> None:
    if not future.cancelled():
        future.exception()  # a write to a socket that closed meanwhile: nothing to do


def _candidate(candidate: dict[str, Any]) -> None:
    _object(candidate, {"candidate": str}, CANDIDATE, "candidate.")
    if len(candidate["candidate"]) > MAX_CANDIDATE:
        raise InvalidRequest(
            f"candidate.candidate is over {MAX_CANDIDATE} characters", field="candidate.candidate"
        )
