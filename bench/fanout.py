"""Fan-out benchmark: one sender, one group room, N member WebSockets, M messages.

Starts its own FastSock server (fresh data dir, free loopback port) unless --url is given,
registers the members, puts them all in one room, opens one /ws per member, then sends the
messages from member 0 and times every `message.new` each socket receives. Prints plain
`key: value` lines and a final `RESULT {json}` line; exits 1 if any delivery was lost or
duplicated (or the run failed), 0 otherwise. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import math
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

Doc = dict[str, Any]

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "bench-password-1"
REGISTER_CONCURRENCY = 8  # scrypt costs ~50 ms per registration on the server
CONNECT_CONCURRENCY = 16
IDS_PER_REQUEST = 100  # the server's cap on member ids per request
HTTP_TIMEOUT_S = 30.0
READY_TIMEOUT_S = 60.0  # server start-up (embedded database included)
CONNECT_TIMEOUT_S = 15.0
ACK_TIMEOUT_S = 15.0
SEND_ATTEMPTS = 20  # retries after `error rate_limited`
QUIET_S = 0.5  # connect-time presence traffic must stop this long before sending
QUIET_MAX_S = 30.0
DRAIN_TIMEOUT_S = 30.0  # after the last ack, how long to wait for missing deliveries
STOP_TIMEOUT_S = 15.0


class BenchError(Exception):
    """The run could not complete (server, HTTP or protocol failure)."""


# --- the server under test ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """`python -m fastsock serve` on loopback with a throwaway data directory."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._tmp = tempfile.TemporaryDirectory(prefix="fastsock-bench-")
        self.log_path = Path(self._tmp.name) / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # Only our settings: a fresh embedded database, never the caller's FASTSOCK_* config.
        env = {k: v for k, v in os.environ.items() if not k.startswith("FASTSOCK_")}
        env |= {
            "FASTSOCK_HOST": "127.0.0.1",
            "FASTSOCK_PORT": str(self.port),
            "FASTSOCK_DATA_DIR": str(Path(self._tmp.name) / "data"),
        }
        with self.log_path.open("wb") as log:  # the child keeps its own copy of the fd
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "fastsock", "serve"],
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time; always removes the data dir."""
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(STOP_TIMEOUT_S)
        finally:
            self._tmp.cleanup()


def require_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError as exc:
        raise BenchError(f"cannot resolve {host!r}: {exc}") from None
    if not infos or not all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos):
        raise BenchError(f"--url must point at a loopback address, got {host!r}")


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
            raise BenchError(f"{method} {path} -> {resp.code}: {detail}")
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


# --- WebSocket members ----------------------------------------------------------------------


class Stats:
    """Shared across all sockets: send times, pending acks, delivery progress."""

    def __init__(self, room_id: str, expected: int) -> None:
        self.room_id = room_id
        self.expected = expected
        self.sent_at: dict[str, float] = {}  # client_msg_id -> perf_counter at (last) send
        self.ack_ms: list[float] = []
        # ref -> future of (receive time, reply frame)
        self.pending: dict[str, asyncio.Future[tuple[float, Doc]]] = {}
        self.deliveries = 0
        self.first_send = 0.0
        self.last_delivery = 0.0
        self.last_frame = time.perf_counter()
        self.all_delivered = asyncio.Event()
        self.rate_limited = 0


class Member:
    def __init__(self, index: int, user_id: str, token: str, stats: Stats) -> None:
        self.index = index
        self.user_id = user_id
        self.token = token
        self.stats = stats
        self.ws: WebSocketClientConnection | None = None
        self.ready = asyncio.Event()
        self.closed = False
        self.close_code: int | None = None
        self.last_seq = 0
        self.seq_gaps = 0
        self.received: dict[str, list[float]] = {}  # client_msg_id -> receive times

    async def connect(self, ws_url: str) -> None:
        request = HTTPRequest(ws_url, connect_timeout=CONNECT_TIMEOUT_S)
        self.ws = await asyncio.wait_for(
            websocket_connect(request, on_message_callback=self.on_frame), CONNECT_TIMEOUT_S
        )
        await self.ws.write_message(json.dumps({"type": "auth", "data": {"token": self.token}}))
        try:
            await asyncio.wait_for(self.ready.wait(), CONNECT_TIMEOUT_S)
        except TimeoutError:
            raise BenchError(f"member {self.index}: no ready (close {self.close_code})") from None

    def on_frame(self, raw: str | bytes | None) -> None:
        now = time.perf_counter()  # before parsing, so latency excludes our own JSON work
        stats = self.stats
        stats.last_frame = now
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
        kind = frame.get("type")
        if kind == "message.new":
            message = frame["data"]["message"]
            if message["room_id"] != stats.room_id:
                return
            self.received.setdefault(message["client_msg_id"], []).append(now)
            stats.deliveries += 1
            stats.last_delivery = now
            if stats.deliveries >= stats.expected:
                stats.all_delivered.set()
        elif kind == "ready":
            self.ready.set()
        elif (fut := stats.pending.pop(frame.get("ref"), None)) and not fut.done():
            fut.set_result((now, frame))  # the reply (ack or error) to one of our sends

    async def send(self, client_msg_id: str, text: str) -> None:
        """Send one message and wait for its `message.ack`; retries after `rate_limited`."""
        assert self.ws is not None
        stats = self.stats
        loop = asyncio.get_running_loop()
        for attempt in range(SEND_ATTEMPTS):
            ref = f"{client_msg_id}.{attempt}"
            reply: asyncio.Future[tuple[float, Doc]] = loop.create_future()
            stats.pending[ref] = reply
            data = {"room_id": stats.room_id, "client_msg_id": client_msg_id, "text": text}
            frame = json.dumps({"type": "message.send", "data": data, "ref": ref})
            started = time.perf_counter()
            stats.sent_at[client_msg_id] = started
            stats.first_send = stats.first_send or started
            await self.ws.write_message(frame)
            try:
                answered, answer = await asyncio.wait_for(reply, ACK_TIMEOUT_S)
            except TimeoutError:
                raise BenchError(f"no reply to {client_msg_id} in {ACK_TIMEOUT_S} s") from None
            finally:
                stats.pending.pop(ref, None)
            if answer.get("type") == "message.ack":
                stats.ack_ms.append((answered - started) * 1000)
                return
            error = answer.get("data") or {}
            if error.get("code") != "rate_limited":
                raise BenchError(f"send {client_msg_id} failed: {json.dumps(error)[:200]}")
            stats.rate_limited += 1
            await asyncio.sleep(float(error.get("retry_after") or 0.1))
        raise BenchError(f"{client_msg_id}: still rate limited after {SEND_ATTEMPTS} attempts")

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()


# --- the run --------------------------------------------------------------------------------


async def gather_bounded[T, R](
    limit: int, fn: Callable[[T], Awaitable[R]], items: Iterable[T]
) -> list[R]:
    """`fn(item)` for every item, at most `limit` at a time; results in order."""
    sem = asyncio.Semaphore(limit)

    async def one(item: T) -> R:
        async with sem:
            return await fn(item)

    return await asyncio.gather(*map(one, items))


async def setup(api: Api, members: int, run_id: str) -> tuple[str, list[Doc]]:
    """Register the users and create the room; (room_id, sessions) with sessions[0] the admin."""

    async def register(i: int) -> Doc:
        body = {"username": f"fb{run_id}.{i}", "password": PASSWORD}
        return await api.call("POST", "/auth/register", body)

    sessions = await gather_bounded(REGISTER_CONCURRENCY, register, range(members))
    admin = sessions[0]["access_token"]
    others = [s["user"]["id"] for s in sessions[1:]]
    first, rest = others[:IDS_PER_REQUEST], others[IDS_PER_REQUEST:]
    room = await api.call(
        "POST", "/rooms", {"name": f"fanout {run_id}", "member_ids": first}, admin
    )
    for i in range(0, len(rest), IDS_PER_REQUEST):
        batch = rest[i : i + IDS_PER_REQUEST]
        room = await api.call("POST", f"/rooms/{room['id']}/members", {"user_ids": batch}, admin)
    if room["member_count"] != members:
        raise BenchError(f"room has {room['member_count']} members, expected {members}")
    return room["id"], sessions


async def wait_quiet(stats: Stats) -> None:
    """Let the connect-time presence announcements drain before timing anything."""
    deadline = time.perf_counter() + QUIET_MAX_S
    while time.perf_counter() < deadline:
        idle = time.perf_counter() - stats.last_frame
        if idle >= QUIET_S:
            return
        await asyncio.sleep(QUIET_S - idle)


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


async def run(args: argparse.Namespace, base_url: str, server: ServerProcess | None) -> Doc:
    api = Api(base_url)
    sockets: list[Member] = []
    try:
        load_before = os.getloadavg()[0]
        await api.wait_ready(server)
        run_id = secrets.token_hex(3)
        t0 = time.perf_counter()
        room_id, sessions = await setup(api, args.members, run_id)
        stats = Stats(room_id, args.members * args.messages)
        sockets = [
            Member(i, s["user"]["id"], s["access_token"], stats) for i, s in enumerate(sessions)
        ]
        ws_url = "ws" + base_url.rstrip("/").removeprefix("http") + "/ws"
        await gather_bounded(CONNECT_CONCURRENCY, lambda m: m.connect(ws_url), sockets)
        await wait_quiet(stats)
        setup_s = time.perf_counter() - t0
        cpu0 = time.process_time()  # this client's own CPU share of the measured phase

        # Send from member 0: K workers, each waiting for its ack before the next send.
        sender = sockets[0]
        numbers = iter(range(args.messages))

        async def worker() -> None:
            for n in numbers:
                await sender.send(f"{run_id}-{n}", f"fan-out message {n}")

        try:
            async with asyncio.TaskGroup() as tg:
                for _ in range(min(args.concurrency, args.messages)):
                    tg.create_task(worker())
        except ExceptionGroup as group:
            raise group.exceptions[0] from None  # the first failure, e.g. a BenchError
        with contextlib.suppress(TimeoutError):  # missing deliveries are reported as lost
            await asyncio.wait_for(stats.all_delivered.wait(), DRAIN_TIMEOUT_S)
        client_cpu = time.process_time() - cpu0

        latencies: list[float] = []
        lost = duplicated = 0
        for m in sockets:
            for cid, sent in stats.sent_at.items():
                times = m.received.get(cid, [])
                if not times:
                    lost += 1
                    continue
                duplicated += len(times) - 1
                latencies.append((times[0] - sent) * 1000)
        latencies.sort()
        acks = sorted(stats.ack_ms)
        wall = max(stats.last_delivery - stats.first_send, 1e-9)
        return {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "loadavg_1m": round(load_before, 2),  # other work on the machine skews results
            "server": f"started at {base_url}" if server else base_url,
            "members": args.members,
            "messages": args.messages,
            "concurrency": args.concurrency,
            "setup_s": round(setup_s, 2),
            "deliveries": stats.deliveries,
            "expected_deliveries": stats.expected,
            "wall_s": round(wall, 3),
            "deliveries_per_s": round(stats.deliveries / wall),
            "client_cpu_s": round(client_cpu, 2),
            "latency_ms": {
                p: round(percentile(latencies, q), 2)
                for p, q in (("p50", 50), ("p95", 95), ("p99", 99), ("max", 100))
            },
            "ack_ms": {p: round(percentile(acks, q), 2) for p, q in (("p50", 50), ("p99", 99))},
            "rate_limited": stats.rate_limited,
            "seq_gaps": sum(m.seq_gaps for m in sockets),
            "closed_sockets": sum(m.closed for m in sockets),
            "lost": lost,
            "duplicated": duplicated,
        }
    finally:
        for m in sockets:
            m.close()
        api.close()


def report(r: Doc) -> None:
    lat, ack = r["latency_ms"], r["ack_ms"]
    lines = [
        f"python: {r['python']}",
        f"cpus: {r['cpus']}",
        f"load average 1m at start: {r['loadavg_1m']}",
        f"server: {r['server']}",
        f"members: {r['members']}",
        f"messages: {r['messages']}",
        f"concurrency: {r['concurrency']}",
        f"setup s: {r['setup_s']}",
        f"total deliveries: {r['deliveries']} (expected {r['expected_deliveries']})",
        f"wall time s: {r['wall_s']}",
        f"deliveries/s: {r['deliveries_per_s']}",
        f"bench client cpu s: {r['client_cpu_s']}",
        f"latency p50 ms: {lat['p50']}",
        f"latency p95 ms: {lat['p95']}",
        f"latency p99 ms: {lat['p99']}",
        f"latency max ms: {lat['max']}",
        f"ack p50 ms: {ack['p50']}",
        f"ack p99 ms: {ack['p99']}",
        f"rate limited retries: {r['rate_limited']}",
        f"seq gaps: {r['seq_gaps']}",
        f"closed sockets: {r['closed_sockets']}",
        f"lost: {r['lost']}, duplicated: {r['duplicated']}",
        "RESULT " + json.dumps(r, separators=(",", ":")),
    ]
    print("\n".join(lines), flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="FastSock WebSocket fan-out benchmark")
    p.add_argument("--members", type=int, default=200, help="room members, one socket each")
    p.add_argument("--messages", type=int, default=100, help="messages sent by member 0")
    p.add_argument("--concurrency", type=int, default=1, help="sends in flight (default 1)")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--port", type=int, help="port for the started server (default: free)")
    target.add_argument("--url", help="use this running server (loopback only) instead")
    p.add_argument("--timeout", type=float, default=300.0, help="overall limit in seconds")
    args = p.parse_args(argv)
    if not 1 <= args.members <= 1000:
        p.error("--members must be 1..1000 (the server's room size limit)")
    if args.messages < 1 or args.concurrency < 1:
        p.error("--messages and --concurrency must be >= 1")
    return args


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwind through the finally that stops the server


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    server: ServerProcess | None = None
    try:
        if args.url:
            require_loopback(args.url)
            base_url = args.url
        else:
            server = ServerProcess(args.port or free_port())
            server.start()
            base_url = server.url
        result = asyncio.run(asyncio.wait_for(run(args, base_url, server), args.timeout))
    except (BenchError, TimeoutError) as exc:
        print(f"error: {str(exc) or f'timed out after {args.timeout} s'}", file=sys.stderr)
        if server is not None and server.exited() is not None:
            print(server.log_tail(), file=sys.stderr)
        return 1
    finally:
        if server is not None:
            server.stop()
    report(result)
    return 1 if result["lost"] or result["duplicated"] else 0


if __name__ == "__main__":
    sys.exit(main())
