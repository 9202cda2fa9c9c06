"""Incoming connections: how many may be open (in all, and per client address), how long a
request may take to arrive, and accept errors that must not flood the log.

tornado's own accept loop lets a failed accept() escape, and when file descriptors run out the
listening socket stays readable: it failed again at once, a traceback each time (283 MB of log
in a minute). The Listener here pauses accepting instead and logs such errors once per
interval. It also counts every connection it hands over (HTTP and WebSocket alike, until the
socket is closed) and answers connections beyond the bounds with a 503."""

from __future__ import annotations

import errno
import json
import logging
import math
import re
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from tornado import httputil
from tornado.http1connection import HTTP1Connection
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.iostream import IOStream
from tornado.netutil import bind_sockets
from tornado.web import Application
from tornado.websocket import WebSocketHandler

from fastsock.services.limits import client_key

log = logging.getLogger("fastsock.connections")

ACCEPT_BATCH = 128  # connections taken per wake-up (tornado takes as many as its backlog)
ACCEPT_PAUSE_S = 0.5  # after a failed accept() (descriptors gone), before trying again
LOG_INTERVAL_S = 10.0  # at most one line per interval of each event logged with Occasional
# A body may take body_timeout_s plus one second per this many bytes it declares (or, chunked,
# has sent so far): ~256 kbit/s for a 25 MiB upload, while a stalled small JSON body is
# dropped after body_timeout_s.
BODY_MIN_RATE = 32 * 1024
FD_HEADROOM = 128  # descriptors kept for the database, files being streamed, logs
# A refused connection is drained for up to LINGER_S so that its client reads the 503; at most
# MAX_LINGERING at once (their descriptors come out of FD_HEADROOM).
LINGER_S = 2.0
MAX_LINGERING = 16
MAX_LENGTH_DIGITS = 15  # a longer Content-Length reads as 10**15 bytes: past any limit
_DIGITS = re.compile(r"[0-9]+")  # not str.isdigit: that accepts "²" and "٣"
_BUSY_BODY = json.dumps(
    {"error": {"code": "unavailable", "message": "the server has too many open connections"}}
).encode()
BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/json; charset=utf-8\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)


def content_length(headers: httputil.HTTPHeaders) -> int | None:
    """The body length a request declares, or None without a valid Content-Length (tornado
    refuses the request itself once the headers are through). Read before tornado checks the
    header, so anything may come: ASCII digits only; equal repeated values as tornado takes
    them (proxies sometimes repeat the header); and any number past MAX_LENGTH_DIGITS digits
    as 10**MAX_LENGTH_DIGITS, the same to every limit (int() refuses thousands of digits, and
    a float overflows at hundreds)."""
    raw = headers.get("Content-Length")
    if raw is None:
        return None
    values = set(re.split(r",[ \t]*", raw))
    if len(values) != 1:
        return None
    value = values.pop()
    if _DIGITS.fullmatch(value) is None:
        return None
    digits = value.lstrip("0")
    return 10**MAX_LENGTH_DIGITS if len(digits) > MAX_LENGTH_DIGITS else int(digits or "0")


def connection_bound(requested: int, fd_limit: int) -> int:
    """The connections to allow: `requested`, lowered so that they leave FD_HEADROOM of the
    process's descriptor limit (RLIMIT_NOFILE, soft) for everything else."""
    return max(1, min(requested, fd_limit - FD_HEADROOM))


class Occasional:
    """Logs one event at most once per interval, counting the occurrences it left out."""

    def __init__(
        self,
        event: str,
        interval_s: float = LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.event = event
        self.interval_s = interval_s
        self.clock = clock
        self._next = -math.inf
        self._suppressed = 0

    def __call__(self, level: int, **fields: object) -> None:
        now = self.clock()
        if now < self._next:
            self._suppressed += 1
            return
        log.log(level, self.event, extra={"fields": {**fields, "suppressed": self._suppressed}})
        self._suppressed = 0
        self._next = now + self.interval_s


class _CountedStream(IOStream):
    """An IOStream that reports when its socket is closed, whoever ends up owning it."""

    def __init__(self, conn: socket.socket, on_closed: Callable[[], None]) -> None:
        super().__init__(conn)
        self._on_closed = on_closed

    def close_fd(self) -> None:  # called once, by close()
        super().close_fd()
        self._on_closed()


class Listener:
    """Accepts connections on listening sockets for one HTTPServer, at most `max_connections`
    open at a time (a WebSocket counts until it closes), and at most `max_per_address` of them
    from one client address (client_key: an IPv6 address by its /64); None: no such bound.
    Beyond either, a connection gets a 503 `unavailable` with Retry-After and is closed."""

    def __init__(
        self,
        server: HTTPServer,
        sockets: list[socket.socket],
        max_connections: int,
        max_per_address: int | None = None,
    ) -> None:
        self.server = server
        self.sockets = sockets
        self.max_connections = max_connections
        self.max_per_address = max_per_address
        self.open = 0
        self.per_address: Counter[str] = Counter()  # open connections by client_key
        self.refuser = Refuser()
        self._resume: object | None = None  # the IOLoop timeout of a pause
        self._accepting = False
        self._accept_failed = Occasional("accept_failed")
        self._handover_failed = Occasional("connection_handover_failed")
        self._refused = Occasional("connections_refused")
        self._refused_per_address = Occasional("connections_refused_per_address")

    def start(self) -> None:
        loop = IOLoop.current()
        for sock in self.sockets:
            loop.add_handler(sock, self._on_readable, IOLoop.READ)
        self._accepting, self._resume = True, None

    def stop(self) -> None:
        """Stop accepting and close the listening sockets, and refused connections still
        being drained (open connections stay)."""
        loop = IOLoop.current()
        if self._resume is not None:
            loop.remove_timeout(self._resume)
        if self._accepting:
            for sock in self.sockets:
                loop.remove_handler(sock)
        self._accepting, self._resume = False, None
        for sock in self.sockets:
            sock.close()
        self.refuser.close_all()

    def _on_readable(self, sock: socket.socket, events: int) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, address = sock.accept()
            except BlockingIOError:
                return  # accepted everything that was waiting
            except ConnectionAbortedError:
                continue  # closed while in the queue
            except OSError as exc:
                # EMFILE/ENFILE (no descriptors), ENOBUFS/ENOMEM: the socket stays readable, so
                # retrying now would fail again at once. Pause, and say so once per interval.
                name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
                self._accept_failed(logging.ERROR, error=name, open_connections=self.open)
                self._pause()
                return
            self._admit(conn, address)

    def _admit(self, conn: socket.socket, address: tuple[Any, ...]) -> None:
        key = client_key(address[0])
        if self.open >= self.max_connections:
            self._refused(logging.WARNING, open_connections=self.open, limit=self.max_connections)
            self.refuser(conn)
            return
        if self.max_per_address is not None and self.per_address[key] >= self.max_per_address:
            # No address in the log: logs hold none (docs/operations.md, "Logs").
            self._refused_per_address(logging.WARNING, limit=self.max_per_address)
            self.refuser(conn)
            return
        try:
            stream = _CountedStream(conn, partial(self._closed, key))
        except Exception as exc:  # nothing counted yet; the socket is still ours to close
            self._handover_failed(logging.ERROR, error=repr(exc))
            conn.close()
            return
        self.open += 1  # until the stream closes its socket, whoever owns it then
        self.per_address[key] += 1
        try:
            self.server.handle_stream(stream, address)
        except Exception as exc:
            self._handover_failed(logging.ERROR, error=repr(exc))
            stream.close()  # and so uncounted

    def _closed(self, key: str) -> None:
        self.open -= 1
        self.per_address[key] -= 1
        if not self.per_address[key]:
            del self.per_address[key]

    def _pause(self) -> None:
        loop = IOLoop.current()
        for sock in self.sockets:
            loop.remove_handler(sock)
        self._accepting = False
        self._resume = loop.call_later(ACCEPT_PAUSE_S, self.start)


class Refuser:
    """Answers connections beyond a bound with BUSY_RESPONSE and closes them. After the answer
    the socket is half-closed, and what the client still sends (the rest of its request, an
    upload perhaps) is read and dropped until it closes its side too, for at most LINGER_S:
    closing a socket with unread data resets the connection, and a client still sending would
    get the reset instead of the answer. Beyond MAX_LINGERING at once, a socket is closed
    right after the answer."""

    def __init__(self) -> None:
        self.lingering: dict[socket.socket, object] = {}  # socket -> IOLoop timeout ending it

    def __call__(self, conn: socket.socket) -> None:
        try:
            conn.setblocking(False)
            _discard_input(conn)  # what has arrived: closed unread, it would reset the answer
            conn.send(BUSY_RESPONSE)  # fits into a new socket's empty send buffer
            conn.shutdown(socket.SHUT_WR)
        except OSError:  # the client is gone already
            conn.close()
            return
        if len(self.lingering) >= MAX_LINGERING:
            conn.close()
            return
        loop = IOLoop.current()
        self.lingering[conn] = loop.call_later(LINGER_S, self._end, conn)
        loop.add_handler(conn, self._on_readable, IOLoop.READ)

    def close_all(self) -> None:
        for conn in list(self.lingering):
            self._end(conn)

    def _on_readable(self, conn: socket.socket, events: int) -> None:
        try:
            client_closed = _discard_input(conn)
        except OSError:  # reset by the client
            client_closed = True
        if client_closed:
            self._end(conn)

    def _end(self, conn: socket.socket) -> None:
        loop = IOLoop.current()
        loop.remove_handler(conn)
        loop.remove_timeout(self.lingering.pop(conn))
        conn.close()


def _discard_input(conn: socket.socket) -> bool:
    """Read and drop what the client sent (up to 64 KiB): True once it has closed its side."""
    try:
        return conn.recv(65536) == b""
    except BlockingIOError:
        return False


class BodyDeadline(httputil.HTTPMessageDelegate):
    """Sets the body deadline of one request, then delegates: base_s plus one second per
    BODY_MIN_RATE bytes. A body of declared length gets that for its length at once
    (tornado's body timeout); a chunked one, whose length nobody knows in advance, for the bytes
    received so far, so that it may take as long as it keeps to the same minimum rate."""

    def __init__(
        self, inner: httputil.HTTPMessageDelegate, conn: HTTP1Connection, base_s: float
    ) -> None:
        self.inner = inner
        self.conn = conn
        self.base_s = base_s
        self.received = 0
        self._started = 0.0
        self._timer: object | None = None  # the IOLoop timeout checking a chunked body

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        length = content_length(headers)  # None: none, or tornado refuses it itself
        if length is not None:
            self.conn.set_body_timeout(self.base_s + length / BODY_MIN_RATE)
        elif headers.get("Transfer-Encoding", "").lower() == "chunked":  # as tornado reads it
            self.conn.set_body_timeout(None)  # type: ignore[arg-type]  # no timer but ours
            self._started = IOLoop.current().time()
            self._check()
        return self.inner.headers_received(start_line, headers)

    def _check(self) -> None:
        loop = IOLoop.current()
        deadline = self._started + self.base_s + self.received / BODY_MIN_RATE
        if loop.time() < deadline:
            self._timer = loop.call_at(deadline, self._check)
        else:
            self._timer = None
            if self.conn.stream is not None:  # else detached: a WebSocket now
                self.conn.stream.close()  # as tornado does when its body timeout expires

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        self.received += len(chunk)
        return self.inner.data_received(chunk)

    def finish(self) -> None:
        self._stop_timer()
        self.inner.finish()

    def on_connection_close(self) -> None:
        self._stop_timer()
        self.inner.on_connection_close()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            IOLoop.current().remove_timeout(self._timer)
            self._timer = None


class TimedHTTPServer(HTTPServer):
    """tornado's HTTPServer with a body deadline that grows with the body's size."""

    def initialize(  # type: ignore[override]
        self, request_callback: Application, *, body_timeout_s: float, **kwargs: object
    ) -> None:
        super().initialize(request_callback, body_timeout=body_timeout_s, **kwargs)  # type: ignore[arg-type]
        self.body_timeout_s = body_timeout_s

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        delegate = super().start_request(server_conn, request_conn)
        assert isinstance(request_conn, HTTP1Connection)
        return BodyDeadline(delegate, request_conn, self.body_timeout_s)


class Endpoint:
    """One HTTP server on its own listening sockets, with the time limits and the bounds."""

    def __init__(
        self,
        app: Application,
        host: str,
        port: int,
        *,
        header_timeout_s: float,
        body_timeout_s: float,
        max_body: int,
        max_connections: int,
        max_connections_per_ip: int | None = None,
    ) -> None:
        self.http = TimedHTTPServer(
            app,
            body_timeout_s=body_timeout_s,
            # tornado times the headers from the end of the previous request (or the
            # connection's start): one limit for a slow request and an idle keep-alive.
            idle_connection_timeout=header_timeout_s,
            max_body_size=max_body,
        )
        sockets = bind_sockets(port, host)
        self.port: int = sockets[0].getsockname()[1]
        self.listener = Listener(self.http, sockets, max_connections, max_connections_per_ip)
        self.listener.start()

    def stop_accepting(self) -> None:
        self.listener.stop()

    async def close_all_connections(self) -> None:
        await self.http.close_all_connections()


def unsent_bytes(socket: WebSocketHandler) -> int:
    """Bytes written to a WebSocket that wait in tornado's buffer for the kernel to take them
    (tornado has no public measure). Not writes whose futures are pending: those complete loop
    turns after the kernel took the bytes, so a burst would look unsent."""
    stream = socket.ws_connection.stream if socket.ws_connection else None
    if stream is None or stream.closed():
        return 0
    return len(stream._write_buffer)
