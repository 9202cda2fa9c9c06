"""Shared parts of the FastSock benchmarks (fanout.py, storm.py, resume.py).

The HTTP API client, user registration and room creation, a WebSocket client that
authenticates, resumes and checks `seq` numbering, and the `main()` boilerplate with its
overall timeout that always stops the servers it started (processes.py). See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import ipaddress
import json
import math
import os
import platform
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from errors import BenchError
from processes import READY_TIMEOUT_S, ServerProcess, start_server
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

Doc = dict[str, Any]

PASSWORD = "bench-password-1"
REGISTER_CONCURRENCY = 8  # scrypt costs ~50 ms per registration on the server
CONNECT_CONCURRENCY = 16
IDS_PER_REQUEST = 100  # the server's cap on member ids per request
HTTP_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 15.0
ACK_TIMEOUT_S = 15.0
SEND_ATTEMPTS = 20  # retries after `error rate_limited`
QUIET_S = 0.5  # traffic must stop this long before a phase is timed
QUIET_MAX_S = 30.0

REGISTER_ATTEMPTS = 5  # retries after 429 (a --url server's registration limit)

# Limits for a server the scripts start (FASTSOCK_LIMIT_*, fastsock/config.py LIMIT_VARS).
# Setup only: every user registers (and logs in) from the one loopback address, and one admin
# adds up to 999 members to a room.
SETUP_LIMITS = {
    "REGISTRATIONS_PER_MIN": "100000",
    "AUTH_PER_IP_PER_MIN": "100000",
    "AUTH_CONCURRENT_PER_IP": "1000",
    "INVITES_PER_MIN": "100000",
}
# storm.py / resume.py: high enough that they measure the server rather than its limiter.
BENCH_LIMITS = {
    "TYPING_PER_S": "1000",
    "TYPING_BURST": "1000",
    "SEND_PER_S": "1000",
    "SEND_BURST": "1000",
    **SETUP_LIMITS,
}


class RateLimitedError(BenchError):
    """An HTTP 429 answer."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def limit_env(limits: Mapping[str, str] = BENCH_LIMITS) -> dict[str, str]:
    return {f"FASTSOCK_LIMIT_{k}": v for k, v in limits.items()}


def limits_line(server: ServerProcess | None, limits: Mapping[str, str] = BENCH_LIMITS) -> str:
    """The `limits:` figure: what the started server was given, or that --url decides."""
    if server is None:
        return "the running server's own settings"
    return ", ".join(f"{k.lower()}={v}" for k, v in limits.items())


# --- the server under test ------------------------------------------------------------------


def require_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError as exc:
        raise BenchError(f"cannot resolve {host!r}: {exc}") from None
    if not infos or not all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos):
        raise BenchError(f"--url must point at a loopback address, got {host!r}")


def ws_url(base_url: str) -> str:
    return "ws" + base_url.rstrip("/").removeprefix("http") + "/ws"


# --- HTTP -----------------------------------------------------------------------------------


class Api:
    def __init__(self, base_url: str) -> None:
        self.base = base_url.rstrip("/")
        self.http = AsyncHTTPClient(force_instance=True, max_clients=REGISTER_CONCURRENCY * 2)

    async def call(self, method: str, path: str, body: Doc | None = None, token: str = "") -> Doc:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = HTTPRequest(
            self.base + path,
            method=method,
            headers=headers,
            body=None if body is None else json.dumps(body),
            connect_timeout=HTTP_TIMEOUT_S,
            request_timeout=HTTP_TIMEOUT_S,
        )
        try:
            resp = await self.http.fetch(request, raise_error=False)
        except (OSError, HTTPClientError) as exc:  # refused, reset, timed out
            raise BenchError(f"{method} {path}: {exc}") from None
        if resp.code not in (200, 201):
            detail = resp.body[:200].decode(errors="replace") if resp.body else str(resp.error)
            message = f"{method} {path} -> {resp.code}: {detail}"
            if resp.code == 429:
                raise RateLimitedError(message, float(resp.headers.get("Retry-After") or 1))
            raise BenchError(message)
        return json.loads(resp.body) if resp.body else {}

    async def wait_ready(self, server: ServerProcess | None) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if server is not None and (code := server.exited()) is not None:
                raise BenchError(f"server exited with code {code}:\n{server.log_tail()}")
            try:
                await self.call("GET", "/readyz")
                return
            except BenchError:
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.2)

    def close(self) -> None:
        self.http.close()


async def gather_bounded[T, R](
    limit: int, fn: Callable[[T], Awaitable[R]], items: Iterable[T]
) -> list[R]:
    """`fn(item)` for every item, at most `limit` at a time; results in order."""
    sem = asyncio.Semaphore(limit)

    async def one(item: T) -> R:
        async with sem:
            return await fn(item)

    return await asyncio.gather(*map(one, items))


async def register_users(api: Api, count: int, prefix: str) -> list[Doc]:
    """Register `prefix.0` .. `prefix.<count-1>`; their `{user, access_token, ...}` in order.
    A 429 (registrations are limited per address) is waited out and retried."""

    async def register(i: int) -> Doc:
        body = {"username": f"{prefix}.{i}", "password": PASSWORD}
        for _ in range(REGISTER_ATTEMPTS - 1):
            try:
                return await api.call("POST", "/auth/register", body)
            except RateLimitedError as exc:
                await asyncio.sleep(exc.retry_after)
        return await api.call("POST", "/auth/register", body)

    return await gather_bounded(REGISTER_CONCURRENCY, register, range(count))


async def create_room(api: Api, admin: Doc, member_ids: list[str], name: str) -> Doc:
    """A private group room made by `admin` (a registration) with the other users in it."""
    token = admin["access_token"]
    first, rest = member_ids[:IDS_PER_REQUEST], member_ids[IDS_PER_REQUEST:]
    room = await api.call("POST", "/rooms", {"name": name, "member_ids": first}, token)
    for i in range(0, len(rest), IDS_PER_REQUEST):
        batch = rest[i : i + IDS_PER_REQUEST]
        room = await api.call("POST", f"/rooms/{room['id']}/members", {"user_ids": batch}, token)
    if room["member_count"] != len(member_ids) + 1:
        raise BenchError(f"room has {room['member_count']} members, expected {len(member_ids) + 1}")
    return room


# --- WebSocket clients ----------------------------------------------------------------------


class Activity:
    """Shared by a run's sockets: when any of them last received a frame."""

    def __init__(self) -> None:
        self.last_frame = time.perf_counter()


async def wait_quiet(activity: Activity) -> None:
    """Wait until no socket has received anything for QUIET_S (at most QUIET_MAX_S)."""
    deadline = time.perf_counter() + QUIET_MAX_S
    while time.perf_counter() < deadline:
        idle = time.perf_counter() - activity.last_frame
        if idle >= QUIET_S:
            return
        await asyncio.sleep(QUIET_S - idle)


@dataclass(slots=True)
class Sent:
    """A `message.send` that was acknowledged."""

    first_sent: float  # perf_counter at the first attempt
    sent: float  # ... at the attempt that was acked
    acked: float
    rate_limited: int  # attempts refused with `rate_limited` first
    message: Doc


class Client:
    """One user's `/ws`: auth (optionally resuming its last session), `ready`, seq checks,
    request/reply by `ref`. Subclasses see every other frame in `on_event`."""

    def __init__(self, name: str, user_id: str, token: str, activity: Activity) -> None:
        self.name = name
        self.user_id = user_id
        self.token = token
        self.activity = activity
        self.ws: WebSocketClientConnection | None = None
        self.ready = asyncio.Event()
        self.ready_at = 0.0
        self.session = ""  # from the last `ready`
        self.resume_outcome: str | None = None
        self.closed = False  # the server closed the current connection
        self.close_code: int | None = None
        self.last_seq = 0
        self.seq_gaps = 0
        self.pending: dict[str | int, asyncio.Future[tuple[float, Doc]]] = {}
        self._conn = 0  # numbers connections, so a dead one's late callbacks are ignored

    async def connect(self, url: str, *, resume: bool = False) -> None:
        """Open the socket and wait for `ready`; `resume` asks for the last session's frames
        after `last_seq`."""
        self._conn += 1
        self.ready.clear()
        self.closed = False
        self.close_code = None
        request = HTTPRequest(url, connect_timeout=CONNECT_TIMEOUT_S)
        callback = functools.partial(self.on_frame, self._conn)
        self.ws = await asyncio.wait_for(
            websocket_connect(request, on_message_callback=callback), CONNECT_TIMEOUT_S
        )
        auth: Doc = {"token": self.token}
        if resume:
            auth["resume"] = {"session": self.session, "last_seq": self.last_seq}
        await self.ws.write_message(json.dumps({"type": "auth", "data": auth}))
        try:
            await asyncio.wait_for(self.ready.wait(), CONNECT_TIMEOUT_S)
        except TimeoutError:
            raise BenchError(f"{self.name}: no ready (close {self.close_code})") from None

    def on_frame(self, conn: int, raw: str | bytes | None) -> None:
        now = time.perf_counter()  # before parsing, so latency excludes our own JSON work
        if conn != self._conn:
            return  # from a connection we already dropped
        self.activity.last_frame = now
        if raw is None:
            self.closed = True
            self.close_code = self.ws.close_code if self.ws else None
            return
        frame = json.loads(raw)
        seq = frame.get("seq")
        if isinstance(seq, int):
            if seq != self.last_seq + 1:
                self.seq_gaps += 1
            self.last_seq = seq
        if frame.get("type") == "ready":
            data = frame["data"]
            self.session, self.resume_outcome = data["session"], data["resume"]
            if self.resume_outcome != "ok":
                self.last_seq = 0  # a new session numbers its frames from 1
            self.ready_at = now
            self.ready.set()
        elif (fut := self.pending.pop(frame.get("ref"), None)) and not fut.done():
            fut.set_result((now, frame))  # the reply (ack or error) to one of our requests
        else:
            self.on_event(frame, now)

    def on_event(self, frame: Doc, now: float) -> None:
        """A frame that is neither `ready` nor a reply to a request."""

    async def request(self, type_: str, data: Doc, ref: str | int) -> tuple[float, float, Doc]:
        """Send one frame with `ref` and wait for its reply: (sent at, replied at, reply)."""
        assert self.ws is not None
        reply: asyncio.Future[tuple[float, Doc]] = asyncio.get_running_loop().create_future()
        self.pending[ref] = reply
        started = time.perf_counter()
        try:
            await self.ws.write_message(json.dumps({"type": type_, "data": data, "ref": ref}))
            answered, answer = await asyncio.wait_for(reply, ACK_TIMEOUT_S)
        except TimeoutError:
            raise BenchError(f"{self.name}: no reply to {ref} in {ACK_TIMEOUT_S} s") from None
        finally:
            self.pending.pop(ref, None)
        return started, answered, answer

    async def send_message(self, room_id: str, client_msg_id: str, text: str) -> Sent:
        """`message.send` until `message.ack`; waits out and retries `rate_limited`."""
        first = 0.0
        for attempt in range(SEND_ATTEMPTS):
            data = {"room_id": room_id, "client_msg_id": client_msg_id, "text": text}
            try:
                sent, acked, answer = await self.request(
                    "message.send", data, f"{client_msg_id}.{attempt}"
                )
            except BenchError:
                raise BenchError(f"no reply to {client_msg_id} in {ACK_TIMEOUT_S} s") from None
            first = first or sent
            if answer.get("type") == "message.ack":
                # Every earlier attempt was refused with rate_limited (anything else raises).
                return Sent(first, sent, acked, attempt, answer["data"]["message"])
            error = answer.get("data") or {}
            if error.get("code") != "rate_limited":
                raise BenchError(f"send {client_msg_id} failed: {json.dumps(error)[:200]}")
            await asyncio.sleep(float(error.get("retry_after") or 0.1))
        raise BenchError(f"{client_msg_id}: still rate limited after {SEND_ATTEMPTS} attempts")

    def abort(self) -> None:
        """Drop the TCP connection without a close handshake (a lost network)."""
        self._conn += 1
        if self.ws is not None and self.ws.protocol is not None:
            stream = self.ws.protocol.stream
            if stream is not None:
                stream.close()
        self.ws = None

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()


# --- figures and the run --------------------------------------------------------------------


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def cpu_text(cpu: Doc, proc: str) -> str:
    figures = cpu.get(proc)
    if figures is None:
        return "n/a (pass --pid with --url)"
    return f"{figures['cpu_s']} ({figures['core_pct']}% of one core)"


def machine(load_1m: float, base_url: str, server: ServerProcess | None) -> Doc:
    """The first RESULT fields: where the figures come from."""
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_1m": round(load_1m, 2),  # other work on the machine skews results
        "server": f"started at {base_url}" if server else base_url,
    }


def emit(lines: list[str], result: Doc) -> None:
    """Print the `key: value` lines, then `RESULT {json}`."""
    lines = [*lines, "RESULT " + json.dumps(result, separators=(",", ":"))]
    print("\n".join(lines), flush=True)


def add_target_args(p: argparse.ArgumentParser, timeout: float) -> None:
    """--port / --url and the overall --timeout."""
    target = p.add_mutually_exclusive_group()
    target.add_argument("--port", type=int, help="port for the started server (default: free)")
    target.add_argument("--url", help="use this running server (loopback only) instead")
    p.add_argument("--timeout", type=float, default=timeout, help="overall limit in seconds")


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwind through the finally that stops the server


def run_main(
    args: argparse.Namespace,
    run: Callable[[argparse.Namespace, str, ServerProcess | None], Awaitable[Doc]],
    report: Callable[[Doc], None],
    failed: Callable[[Doc], bool],
    env: Mapping[str, str] | None = None,
) -> int:
    """Start the server (unless --url), run within --timeout, always stop the server, report.
    Exit status 1 when the run failed or `failed(result)`, else 0."""

    async def main(servers: list[ServerProcess]) -> Doc:
        if args.url:
            require_loopback(args.url)
            return await run(args, args.url, None)
        server = start_server(servers, env, port=args.port)
        return await run(args, server.url, server)

    return run_servers(args.timeout, main, report, failed)


def run_servers(
    timeout: float,
    main: Callable[[list[ServerProcess]], Awaitable[Doc]],
    report: Callable[[Doc], None],
    failed: Callable[[Doc], bool],
) -> int:
    """Run `main(servers)` within `timeout`; every server it appends to `servers` is stopped at
    the end, also on errors, timeouts and SIGTERM. Exit status 1 when the run failed or
    `failed(result)`, else 0."""
    signal.signal(signal.SIGTERM, _terminate)
    servers: list[ServerProcess] = []
    try:
        result = asyncio.run(asyncio.wait_for(main(servers), timeout))
    except (BenchError, TimeoutError) as exc:
        print(f"error: {str(exc) or f'timed out after {timeout} s'}", file=sys.stderr)
        for server in servers:
            # A server that died (one its start-up stopped already has no log left).
            if server.exited() is not None and (tail := server.log_tail()):
                print(tail, file=sys.stderr)
        return 1
    finally:
        for server in reversed(servers):  # the last started first: it may use the ones before
            server.stop()
    report(result)
    return 1 if failed(result) else 0
