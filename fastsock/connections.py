"""Incoming connections: how many may be open, how long a request may take to arrive, and
accept errors that must not flood the log.

tornado's own accept loop lets a failed accept() escape, and when file descriptors run out the
listening socket stays readable: it failed again at once, a traceback each time (283 MB of log
in a minute). The Listener here pauses accepting instead and logs such errors once per
interval. It also counts every connection it hands over (HTTP and WebSocket alike, until the
socket is closed) and answers connections beyond the bound with a 503."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import socket
import time
from collections.abc import Awaitable, Callable

from tornado import httputil
from tornado.http1connection import HTTP1Connection
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.iostream import IOStream
from tornado.netutil import bind_sockets
from tornado.web import Application

log = logging.getLogger("fastsock.connections")

ACCEPT_BATCH = 128  # connections taken per wake-up (tornado takes as many as its backlog)
ACCEPT_PAUSE_S = 0.5  # after a failed accept() (descriptors gone), before trying again
LOG_INTERVAL_S = 10.0  # at most one accept_failed / connections_refused line per interval
# A body may take body_timeout_s plus one second per this many bytes it declares: ~256 kbit/s
# for a 25 MiB upload, while a stalled small JSON body is dropped after body_timeout_s.
BODY_MIN_RATE = 32 * 1024
FD_HEADROOM = 128  # descriptors kept for the database, files being streamed, logs
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
    open at a time (a WebSocket counts until it closes). Beyond that, a connection gets a 503
    `unavailable` with Retry-After and is closed."""

    def __init__(
        self, server: HTTPServer, sockets: list[socket.socket], max_connections: int
    ) -> None:
        self.server = server
        self.sockets = sockets
        self.max_connections = max_connections
        self.open = 0
        self._resume: object | None = None  # the IOLoop timeout of a pause
        self._accepting = False
        self._accept_failed = Occasional("accept_failed")
        self._refused = Occasional("connections_refused")

    def start(self) -> None:
        loop = IOLoop.current()
        for sock in self.sockets:
            loop.add_handler(sock, self._on_readable, IOLoop.READ)
        self._accepting, self._resume = True, None

    def stop(self) -> None:
        """Stop accepting and close the listening sockets (open connections stay)."""
        loop = IOLoop.current()
        if self._resume is not None:
            loop.remove_timeout(self._resume)
        if self._accepting:
            for sock in self.sockets:
                loop.remove_handler(sock)
        self._accepting, self._resume = False, None
        for sock in self.sockets:
            sock.close()

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
            if self.open >= self.max_connections:
                self._refused(
                    logging.WARNING, open_connections=self.open, limit=self.max_connections
                )
                _refuse(conn)
                continue
            self.open += 1
            self.server.handle_stream(_CountedStream(conn, self._closed), address)

    def _closed(self) -> None:
        self.open -= 1

    def _pause(self) -> None:
        loop = IOLoop.current()
        for sock in self.sockets:
            loop.remove_handler(sock)
        self._accepting = False
        self._resume = loop.call_later(ACCEPT_PAUSE_S, self.start)


def _refuse(conn: socket.socket) -> None:
    """Answer 503 and close. What the client already sent is read first: closing a socket with
    unread data resets the connection, and the client might lose the answer."""
    with contextlib.suppress(OSError):
        conn.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            conn.recv(65536)
        conn.send(BUSY_RESPONSE)
    conn.close()


class BodyDeadline(httputil.HTTPMessageDelegate):
    """Sets the body timeout of one request from the length it declares, then delegates."""

    def __init__(
        self, inner: httputil.HTTPMessageDelegate, conn: HTTP1Connection, base_s: float
    ) -> None:
        self.inner = inner
        self.conn = conn
        self.base_s = base_s

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        length = headers.get("Content-Length", "")
        if length.isascii() and length.isdigit():  # tornado refuses anything else itself
            self.conn.set_body_timeout(self.base_s + int(length) / BODY_MIN_RATE)
        return self.inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return self.inner.data_received(chunk)

    def finish(self) -> None:
        self.inner.finish()

    def on_connection_close(self) -> None:
        self.inner.on_connection_close()


class TimedHTTPServer(HTTPServer):
    """tornado's HTTPServer with a body deadline that grows with the declared body size."""

    def initialize(  # type: ignore[override]
        self, request_callback: Application, *, body_timeout_s: float, **kwargs: object
    ) -> None:
        # Bodies without a length (chunked) get the plain body_timeout_s.
        super().initialize(request_callback, body_timeout=body_timeout_s, **kwargs)  # type: ignore[arg-type]
        self.body_timeout_s = body_timeout_s

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        delegate = super().start_request(server_conn, request_conn)
        assert isinstance(request_conn, HTTP1Connection)
        return BodyDeadline(delegate, request_conn, self.body_timeout_s)


class Endpoint:
    """One HTTP server on its own listening sockets, with the time limits and the bound."""

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
        xheaders: bool = False,
    ) -> None:
        self.http = TimedHTTPServer(
            app,
            body_timeout_s=body_timeout_s,
            # tornado times the headers from the end of the previous request (or the
            # connection's start): one limit for a slow request and an idle keep-alive.
            idle_connection_timeout=header_timeout_s,
            max_body_size=max_body,
            xheaders=xheaders,
        )
        sockets = bind_sockets(port, host)
        self.port: int = sockets[0].getsockname()[1]
        self.listener = Listener(self.http, sockets, max_connections)
        self.listener.start()

    def stop_accepting(self) -> None:
        self.listener.stop()

    async def close_all_connections(self) -> None:
        await self.http.close_all_connections()
