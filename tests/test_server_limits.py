"""Slow and numerous clients: header, body and idle timeouts (WebSockets exempt), the bounds on
open connections (in all and per address), refused and failed connections, Content-Length
values tornado has not checked yet, and running out of file descriptors (logged once per
interval, recovered)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import re
import resource
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from tornado import httputil
from tornado.web import Application, RequestHandler, stream_request_body

from fastsock import connections
from fastsock.app import Server
from fastsock.config import ConfigError, load_settings
from fastsock.connections import (
    ACCEPT_PAUSE_S,
    BODY_MIN_RATE,
    FD_HEADROOM,
    LOG_INTERVAL_S,
    MAX_LENGTH_DIGITS,
    BodyDeadline,
    Endpoint,
    Occasional,
    connection_bound,
    content_length,
)
from tests.conftest import make_settings
from tests.support import Api

pytestmark = pytest.mark.once  # connection handling does not depend on the store

WAIT_S = 20.0  # bound on every wait for a condition; far above the timeouts set below
FASTSOCK = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "fastsock"
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"


@contextlib.asynccontextmanager
async def running(db_uri: str | None, tmp_path: Path, **settings: object) -> AsyncIterator[Server]:
    server = Server(make_settings(db_uri, tmp_path, **settings))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


class Hello(RequestHandler):
    def get(self) -> None:
        self.write("ok")


@stream_request_body
class Sink(RequestHandler):
    """Answers with the number of body bytes it was sent."""

    def prepare(self) -> None:
        self.received = 0

    def data_received(self, chunk: bytes) -> None:
        self.received += len(chunk)

    def post(self) -> None:
        self.write(str(self.received))


@contextlib.asynccontextmanager
async def endpoint(**options: object) -> AsyncIterator[Endpoint]:
    """An Endpoint alone, serving GET /healthz and POST /sink (any body, streamed)."""
    values: dict[str, object] = {
        "header_timeout_s": WAIT_S,
        "body_timeout_s": WAIT_S,
        "max_body": 64 * 1024 * 1024,
        "max_connections": 100,
    }
    app = Application([("/healthz", Hello), ("/sink", Sink)])
    ep = Endpoint(app, "127.0.0.1", 0, **(values | options))  # type: ignore[arg-type]
    try:
        yield ep
    finally:
        ep.stop_accepting()
        await ep.close_all_connections()


async def connect(
    server: Server | Endpoint, source: str = "127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection from `source` (any 127.x.y.z address reaches the loopback listener)."""
    return await asyncio.open_connection("127.0.0.1", server.port, local_addr=(source, 0))


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (bounded wait)."""
    return await asyncio.wait_for(reader.read(), WAIT_S)


async def response(reader: asyncio.StreamReader) -> bytes:
    """One response's status line and headers."""
    return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)


async def until(check: object) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


# --- timeouts --------------------------------------------------------------------------------


async def test_a_half_sent_request_is_closed_after_the_header_timeout(
    db_uri: str | None, tmp_path: Path
) -> None:
    async with running(db_uri, tmp_path, header_timeout_s=0.5) as server:
        reader, writer = await connect(server)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")  # the blank line never comes
        await writer.drain()
        assert await closed_by_server(reader) == b""
        writer.close()
        # A whole request on a fresh connection is answered as usual.
        assert (await Api(server.port).get("/healthz")).status == 200


async def test_a_stalled_body_is_closed_after_the_body_timeout(
    db_uri: str | None, tmp_path: Path
) -> None:
    async with running(db_uri, tmp_path, body_timeout_s=0.5, header_timeout_s=WAIT_S) as server:
        reader, writer = await connect(server)
        writer.write(
            b"POST /auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b'Content-Length: 60\r\n\r\n{"username": "al'
        )
        await writer.drain()
        assert await closed_by_server(reader) == b""
        writer.close()
        body = {"username": "alice", "password": "not a password"}
        assert (await Api(server.port).post("/auth/login", body)).status == 401


def test_the_body_deadline_grows_with_the_declared_length() -> None:
    """A large upload on a slow link gets longer than a small JSON body (which gets
    body_timeout_s): one second more per BODY_MIN_RATE bytes it declares."""
    timeouts: list[float] = []

    class Conn:  # only the body timeout of the connection is used
        def set_body_timeout(self, timeout: float) -> None:
            timeouts.append(timeout)

    start = httputil.RequestStartLine("POST", "/uploads", "HTTP/1.1")
    # Past 308 digits a float overflows, past 4300 int() refuses: as long as any other huge one.
    huge = 30.0 + 10**MAX_LENGTH_DIGITS / BODY_MIN_RATE
    for length in (
        "0",
        str(10 * BODY_MIN_RATE),
        "chunked-has-none",
        "٣",
        "²",
        "9" * 400,
        "9" * 5000,
    ):
        delegate = BodyDeadline(httputil.HTTPMessageDelegate(), Conn(), 30.0)  # type: ignore[arg-type]
        delegate.headers_received(start, httputil.HTTPHeaders({"Content-Length": length}))
    assert timeouts == [30.0, 40.0, huge, huge]  # not-a-length is left to tornado (it refuses it)


def test_content_length_is_read_as_tornado_will_accept_it() -> None:
    def read(value: str | None) -> int | None:
        return content_length(
            httputil.HTTPHeaders({} if value is None else {"Content-Length": value})
        )

    assert [read(v) for v in (None, "0", "0042", "5, 5", "5,5")] == [None, 0, 42, 5, 5]
    # What tornado refuses: no length here either (str.isdigit() accepts the first three).
    for refused in ("²", "٣", "１", "", "-1", "+1", "1e3", "0x10", "5, 6", "5 ,5", " ", "1 2"):
        assert read(refused) is None, refused
    longest = "9" * MAX_LENGTH_DIGITS
    assert read(longest) == int(longest)
    for huge in ("1" + longest, "9" * 400, "9" * 5000, "9" * 5000 + ", " + "9" * 5000):
        assert read(huge) == 10**MAX_LENGTH_DIGITS
    assert read("0" * 5000 + "7") == 7  # leading zeros are no size


async def test_a_content_length_of_thousands_of_digits_gets_400_not_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with endpoint() as ep:
        for length in (b"9" * 400, b"9" * 5000, b"\xb2"):
            reader, writer = await connect(ep)
            writer.write(
                b"POST /sink HTTP/1.1\r\nHost: t\r\nContent-Length: " + length + b"\r\n\r\n"
            )
            assert (await closed_by_server(reader)).startswith(b"HTTP/1.1 400 "), length[:8]
            writer.close()
        reader, writer = await connect(ep)
        writer.write(HEALTHZ)
        assert (await response(reader)).startswith(b"HTTP/1.1 200 ")
        writer.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


CHUNKED_SINK = b"POST /sink HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"


async def test_a_chunked_body_may_take_longer_while_it_keeps_the_minimum_rate() -> None:
    """Its length is unknown up front: each BODY_MIN_RATE bytes received add a second, as each
    declared in Content-Length would."""
    async with endpoint(body_timeout_s=1.0) as ep:
        reader, writer = await connect(ep)
        writer.write(CHUNKED_SINK)
        piece = bytes(BODY_MIN_RATE)
        for _ in range(20):  # about 2 s in all, twice what a body gets by itself
            writer.write(chunk(piece))
            await writer.drain()
            await asyncio.sleep(0.1)
        writer.write(b"0\r\n\r\n")
        head = await response(reader)
        assert head.startswith(b"HTTP/1.1 200 "), head
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
        assert await reader.readexactly(length) == str(20 * BODY_MIN_RATE).encode()
        writer.close()


async def test_a_chunked_body_that_falls_behind_the_minimum_rate_is_closed() -> None:
    async with endpoint(body_timeout_s=0.5) as ep:
        reader, writer = await connect(ep)
        writer.write(CHUNKED_SINK + chunk(bytes(BODY_MIN_RATE)))  # 0.5 s + 1 s, then nothing
        await writer.drain()
        assert await closed_by_server(reader) == b""
        writer.close()


async def test_a_websocket_outlives_the_http_idle_timeout(
    db_uri: str | None, tmp_path: Path
) -> None:
    async with running(db_uri, tmp_path, header_timeout_s=0.5) as server:
        api = Api(server.port)
        ws = await api.ws(await api.register())
        # An idle HTTP connection opened after the socket's last frame is closed: the socket
        # has been idle at least that long...
        reader, writer = await connect(server)
        assert await closed_by_server(reader) == b""
        writer.close()
        # ...and it is still open and answers.
        await ws.send("ping", {}, ref="still-there")
        assert (await ws.expect("pong"))["__ref"] == "still-there"
        assert not ws.closed
        ws.close()


# --- the bound on open connections -----------------------------------------------------------


async def test_connections_beyond_the_bound_get_503_and_are_closed(
    db_uri: str | None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "fastsock.connections")
    async with running(db_uri, tmp_path, max_connections=3, header_timeout_s=WAIT_S) as server:
        api = Api(server.port)
        ws = await api.ws(await api.register())
        await until(lambda: server.open_connections == 1)  # the registration's has closed
        kept = [await connect(server), await connect(server)]
        for _ in range(2):  # refused, whether the request was sent or not
            reader, writer = await connect(server)
            writer.write(HEALTHZ)
            answer = await closed_by_server(reader)
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 503 "), answer
            assert b"\r\nRetry-After: 1\r\n" in head
            assert json.loads(body)["error"]["code"] == "unavailable"
            writer.close()
        # The open ones keep working: HTTP (kept alive) and the WebSocket.
        for reader, writer in kept:
            writer.write(HEALTHZ)
            assert (await response(reader)).startswith(b"HTTP/1.1 200 ")
        await ws.send("ping", {}, ref="p")
        await ws.expect("pong")
        # A closed connection makes room for a new one.
        kept.pop()[1].close()
        await until(lambda: server.open_connections == 2)
        assert (await api.get("/healthz")).status == 200
        kept.pop()[1].close()
        ws.close()
    refusals = [r for r in caplog.records if r.getMessage() == "connections_refused"]
    assert 1 <= len(refusals) <= 2  # once per interval, not once per connection
    assert refusals[0].fields["limit"] == 3  # type: ignore[attr-defined]


async def test_one_address_holds_at_most_max_connections_per_ip(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "fastsock.connections")
    async with endpoint(max_connections=10, max_connections_per_ip=2) as ep:
        listener = ep.listener
        kept = [await connect(ep), await connect(ep)]
        await until(lambda: listener.open == 2)
        for _ in range(2):
            reader, writer = await connect(ep)
            writer.write(HEALTHZ)
            head, _, body = (await closed_by_server(reader)).partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 503 ") and b"\r\nRetry-After: 1\r\n" in head
            assert json.loads(body)["error"]["code"] == "unavailable"
            writer.close()
        # Another address is not held back; the open ones keep working.
        other = await connect(ep, source="127.0.0.2")
        for reader, writer in [*kept, other]:
            writer.write(HEALTHZ)
            assert (await response(reader)).startswith(b"HTTP/1.1 200 ")
        # A closed connection makes room for its address, and nothing stays counted.
        kept.pop()[1].close()
        await until(lambda: listener.per_address["127.0.0.1"] == 1)
        reader, writer = await connect(ep)
        writer.write(HEALTHZ)
        assert (await response(reader)).startswith(b"HTTP/1.1 200 ")
        writer.close()
        kept.pop()[1].close()
        await until(lambda: listener.open == 1 and dict(listener.per_address) == {"127.0.0.2": 1})
        other[1].close()
    refusals = [r for r in caplog.records if r.getMessage() == "connections_refused_per_address"]
    assert len(refusals) == 1 and refusals[0].fields["limit"] == 2  # type: ignore[attr-defined]


@pytest.mark.parametrize("trust_proxy", [False, True])
async def test_the_server_bounds_connections_per_address_unless_behind_a_proxy(
    db_uri: str | None, tmp_path: Path, trust_proxy: bool
) -> None:
    """Behind a trusted proxy every connection comes from the proxy: a bound on its address
    would be one on all clients together (docs/operations.md)."""
    settings = {"max_connections_per_ip": 1, "trust_proxy": trust_proxy}
    async with running(db_uri, tmp_path, header_timeout_s=WAIT_S, **settings) as server:
        first = await connect(server)
        await until(lambda: server.open_connections == 1)
        reader, writer = await connect(server)
        writer.write(HEALTHZ)
        status = b"HTTP/1.1 200 " if trust_proxy else b"HTTP/1.1 503 "
        assert (await response(reader)).startswith(status)
        for _, conn in (first, (reader, writer)):
            conn.close()


def fail_once(real: Callable[..., object], error: Exception) -> Callable[..., object]:
    calls = [error]

    def call(*args: object) -> object:
        if calls:
            raise calls.pop()
        return real(*args)

    return call


@pytest.mark.parametrize("step", ["stream", "handover"])
async def test_a_connection_that_cannot_be_handed_over_is_closed_and_not_counted(
    step: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with endpoint() as ep:
        if step == "stream":  # wrapping the socket fails
            failing = fail_once(connections._CountedStream, OSError(errno.EBADF, "gone"))
            monkeypatch.setattr(connections, "_CountedStream", failing)
        else:  # tornado fails to take it
            monkeypatch.setattr(
                ep.http, "handle_stream", fail_once(ep.http.handle_stream, ValueError())
            )
        reader, writer = await connect(ep)
        assert await closed_by_server(reader) == b""
        writer.close()
        assert ep.listener.open == 0 and not ep.listener.per_address
        reader, writer = await connect(ep)
        writer.write(HEALTHZ)
        assert (await response(reader)).startswith(b"HTTP/1.1 200 ")
        assert ep.listener.open == 1
        writer.close()
    failures = [r for r in caplog.records if r.getMessage() == "connection_handover_failed"]
    assert len(failures) == 1 and not [r for r in caplog.records if r.exc_info], caplog.text


async def test_a_refused_client_still_sending_its_request_reads_the_503(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Closing a socket with unread data resets the connection: a client still sending (an
    upload) would get the reset instead of the answer. The server reads and drops the rest."""
    monkeypatch.setattr(connections, "LINGER_S", WAIT_S)  # the client's pace, not the timer's
    async with endpoint(max_connections=1) as ep:
        kept = await connect(ep)
        await until(lambda: ep.listener.open == 1)
        reader, writer = await connect(ep)
        body = bytes(16 * 1024 * 1024)
        writer.write(b"POST /sink HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body))
        writer.write(body)
        await writer.drain()
        writer.write_eof()
        assert (await closed_by_server(reader)).startswith(b"HTTP/1.1 503 ")
        writer.close()
        await until(lambda: not ep.listener.refuser.lingering)  # closed once the client was
        kept[1].close()


async def test_refused_connections_are_drained_a_bounded_number_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(connections, "LINGER_S", WAIT_S)
    monkeypatch.setattr(connections, "MAX_LINGERING", 2)
    async with endpoint(max_connections=1) as ep:
        clients = [await connect(ep) for _ in range(4)]  # the first is served, three refused
        for reader, _ in clients[1:]:
            assert (await closed_by_server(reader)).startswith(b"HTTP/1.1 503 ")
        assert len(ep.listener.refuser.lingering) == 2
        ep.stop_accepting()  # ends the draining too
        assert not ep.listener.refuser.lingering
        for _, writer in clients:
            writer.close()


def test_the_bound_leaves_descriptors_for_everything_else() -> None:
    assert connection_bound(10_000, 1_048_576) == 10_000
    assert connection_bound(10_000, 1024) == 1024 - FD_HEADROOM
    assert connection_bound(10_000, FD_HEADROOM) == 1


# --- running out of file descriptors ---------------------------------------------------------


def test_an_event_is_logged_once_per_interval_with_the_count_left_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "fastsock.connections")
    now = [100.0]
    occasional = Occasional("accept_failed", interval_s=10.0, clock=lambda: now[0])
    for step in (
        0.0,
        1.0,
        8.0,
        0.5,
        0.6,
        0.1,
        30.0,
    ):  # at 100, 101, 109, 109.5, 110.1, 110.2, 140.2
        now[0] += step
        occasional(logging.ERROR, error="EMFILE")
    lines = [r for r in caplog.records if r.getMessage() == "accept_failed"]
    assert [r.fields["suppressed"] for r in lines] == [0, 3, 1]  # type: ignore[attr-defined]
    assert [r.created for r in lines] == sorted(r.created for r in lines)


@contextlib.contextmanager
def serve(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """`fastsock serve` on a free port; its combined output goes to a file."""
    log_path = tmp_path / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTSOCK_")}
    env |= {"FASTSOCK_DATA_DIR": str(tmp_path / "data"), "FASTSOCK_PORT": "0"}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(FASTSOCK), "serve"],
            env=env,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + WAIT_S
        while not (found := re.search(rb"running at http://[^:]+:(\d+)", log_path.read_bytes())):
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        yield proc, int(found.group(1)), log_path
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(WAIT_S)


def get_healthz(conn: socket.socket) -> bytes:
    conn.sendall(HEALTHZ)
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = conn.recv(4096)
        assert chunk, answer
        answer += chunk
    return answer


def test_running_out_of_descriptors_logs_one_line_per_interval_and_recovers(
    tmp_path: Path,
) -> None:
    with serve(tmp_path) as (proc, port, log_path):
        # Leave the server room for one more descriptor (descriptors are numbered from 0).
        in_use = len(os.listdir(f"/proc/{proc.pid}/fd"))
        soft, hard = resource.prlimit(proc.pid, resource.RLIMIT_NOFILE)
        resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (in_use + 1, hard))
        clients = [socket.create_connection(("127.0.0.1", port), WAIT_S) for _ in range(12)]
        try:
            deadline = time.monotonic() + WAIT_S
            while not re.search(rb'"accept_failed"|Too many open files', log_path.read_bytes()):
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.05)
            first_line_at = time.monotonic()
            time.sleep(3 * ACCEPT_PAUSE_S)  # the scenario: several retries fail as well
            # The connection accepted before the descriptors ran out keeps working.
            assert get_healthz(clients[0]).startswith(b"HTTP/1.1 200 ")
            # With descriptors back, the waiting connections are accepted and served.
            resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (soft, hard))
            for conn in clients[1:]:
                assert get_healthz(conn).startswith(b"HTTP/1.1 200 ")
            elapsed = time.monotonic() - first_line_at
        finally:
            for conn in clients:
                conn.close()
        text = log_path.read_text()
        tail = text[-2000:]
        assert "Traceback" not in text and "Too many open files" not in text, tail
        failures = [json.loads(line) for line in text.splitlines() if '"accept_failed"' in line]
        assert failures and failures[0]["error"] == "EMFILE", tail
        assert len(failures) <= 1 + elapsed // LOG_INTERVAL_S, tail


# --- settings --------------------------------------------------------------------------------


def test_the_new_settings_are_read_and_bad_values_name_the_variable() -> None:
    s = load_settings(
        {
            "FASTSOCK_HEADER_TIMEOUT_S": "7.5",
            "FASTSOCK_BODY_TIMEOUT_S": "12",
            "FASTSOCK_MAX_CONNECTIONS": "500",
            "FASTSOCK_MAX_CONNECTIONS_PER_IP": "50",
            "FASTSOCK_METRICS_PORT": "9100",
            "FASTSOCK_LIMIT_AUTH_PER_IP_PER_MIN": "60",
            "FASTSOCK_LIMIT_AUTH_CONCURRENT_PER_IP": "4",
            "FASTSOCK_LIMIT_HASH_WORKERS": "3",
            "FASTSOCK_LIMIT_HASH_QUEUE": "64",
            "FASTSOCK_LIMIT_HASH_WAIT_S": "2.5",
        }
    )
    assert (s.header_timeout_s, s.body_timeout_s, s.max_connections) == (7.5, 12.0, 500)
    assert s.max_connections_per_ip == 50
    assert s.metrics_port == 9100
    limits = s.limits
    assert (limits.auth_per_ip_per_min, limits.auth_concurrent_per_ip) == (60, 4)
    assert (limits.hash_workers, limits.hash_queue, limits.hash_wait_s) == (3, 64, 2.5)
    assert load_settings({}).limits.hash_workers == max(1, (os.process_cpu_count() or 2) // 2)
    for name, bad in (
        ("FASTSOCK_HEADER_TIMEOUT_S", "0"),
        ("FASTSOCK_BODY_TIMEOUT_S", "soon"),
        ("FASTSOCK_MAX_CONNECTIONS", "1.5"),
        ("FASTSOCK_MAX_CONNECTIONS_PER_IP", "0"),
        ("FASTSOCK_METRICS_PORT", "70000"),
        ("FASTSOCK_LIMIT_HASH_WORKERS", "0"),
        ("FASTSOCK_LIMIT_HASH_WAIT_S", "-1"),
    ):
        with pytest.raises(ConfigError) as info:
            load_settings({name: bad})
        assert name in str(info.value) and "\n" not in str(info.value)
