"""Login flood: what a flood of wrong logins does to everyone else's requests.

Flood workers (--concurrency in flight) post logins with a new random username each time and a
wrong password, from --addresses client addresses (default 1: one address spraying usernames),
for --seconds. Meanwhile, and before the flood for a baseline, a probe user runs rounds of:
a correct login (each from an address of its own, as a different person would), an upload of
a small text file, and GET /rooms. Printed: each probe's latency (p50 / p95 / max) and answers,
before and during the flood, and the flood's answers (401 checked, 429 over the address budget,
503 hashing queue full).

The started server trusts X-Forwarded-For (FASTSOCK_TRUST_PROXY=true), which is how the
addresses are given; its login limits are the defaults, the ones under test. With --url the
running server must trust the header too, or every request comes from 127.0.0.1.

    .venv/bin/python bench/logins.py                      # one address, 64 in flight, 15 s
    .venv/bin/python bench/logins.py --addresses 1000     # a flood spread over 1000 addresses
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import secrets
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    HTTP_TIMEOUT_S,
    PASSWORD,
    Api,
    Doc,
    add_target_args,
    emit,
    limit_env,
    machine,
    percentile,
    register_users,
    run_main,
)
from processes import ServerProcess, proc_cpu_s

# The probe user registers once and uploads every round: neither limit is what is measured.
LIMITS = {"REGISTRATIONS_PER_MIN": "100000", "UPLOADS_PER_MIN": "100000"}
ENV = {**limit_env(LIMITS), "FASTSOCK_TRUST_PROXY": "true"}
PROBES = ("login", "upload", "rooms")
UPLOAD_BODY = b"probe upload\n" * 64  # 832 bytes of text/plain


@dataclass
class Figures:
    """Latencies (ms) and answers of one kind of request in one phase."""

    ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)

    def add(self, started: float, status: int) -> None:
        self.ms.append((time.perf_counter() - started) * 1000)
        self.statuses[status] += 1

    def summary(self) -> Doc:
        ms = sorted(self.ms)
        return {
            "count": len(ms),
            "p50_ms": round(percentile(ms, 50), 1),
            "p95_ms": round(percentile(ms, 95), 1),
            "max_ms": round(percentile(ms, 100), 1),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
        }


class Client:
    """Requests that return their status instead of raising (0: no answer)."""

    def __init__(self, base_url: str, max_clients: int) -> None:
        self.base = base_url.rstrip("/")
        self.http = AsyncHTTPClient(force_instance=True, max_clients=max_clients)

    async def status(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> int:
        request = HTTPRequest(
            self.base + path,
            method=method,
            headers=headers,
            body=body if method == "POST" else None,
            connect_timeout=HTTP_TIMEOUT_S,
            request_timeout=HTTP_TIMEOUT_S,
        )
        try:
            return (await self.http.fetch(request, raise_error=False)).code
        except (OSError, HTTPClientError):
            return 0

    def close(self) -> None:
        self.http.close()


def login_body(username: str, password: str) -> bytes:
    return json.dumps({"username": username, "password": password}).encode()


async def probe_round(client: Client, user: Doc, number: int, phase: dict[str, Figures]) -> None:
    """One correct login from a fresh address, one upload, one GET /rooms, in turn."""
    address = f"10.{number // 65536 % 256}.{number // 256 % 256}.{number % 256}"
    body = login_body(user["user"]["username"], PASSWORD)
    json_headers = {"Content-Type": "application/json", "X-Forwarded-For": address}
    started = time.perf_counter()
    phase["login"].add(started, await client.status("POST", "/auth/login", body, json_headers))
    auth = {"Authorization": f"Bearer {user['access_token']}"}
    started = time.perf_counter()
    status = await client.status(
        "POST",
        "/uploads?filename=probe.txt",
        UPLOAD_BODY,
        {**auth, "Content-Type": "text/plain"},
    )
    phase["upload"].add(started, status)
    started = time.perf_counter()
    phase["rooms"].add(started, await client.status("GET", "/rooms", b"", auth))


async def probe(
    client: Client, user: Doc, until: float, interval: float, numbers: itertools.count[int]
) -> dict[str, Figures]:
    phase = {kind: Figures() for kind in PROBES}
    while time.perf_counter() < until:
        started = time.perf_counter()
        await probe_round(client, user, next(numbers), phase)
        await asyncio.sleep(max(0.0, started + interval - time.perf_counter()))
    return phase


async def flood(client: Client, args: argparse.Namespace, until: float) -> Figures:
    """Wrong logins with new usernames until `until`, at most --concurrency in flight: each
    as soon as a place is free, or at --rate per second (then a fast refusal does not bring
    the next attempt sooner)."""
    figures = Figures()
    places = asyncio.Semaphore(args.concurrency)
    tasks: set[asyncio.Task[None]] = set()
    started = time.perf_counter()

    async def attempt(n: int) -> None:
        index = n * 7919 % args.addresses  # spread over the addresses
        headers = {
            "Content-Type": "application/json",
            "X-Forwarded-For": f"172.{16 + index // 65536 % 16}.{index // 256 % 256}.{index % 256}",
        }
        body = login_body("sp" + secrets.token_hex(6), "not the password")
        sent = time.perf_counter()
        try:
            figures.add(sent, await client.status("POST", "/auth/login", body, headers))
        finally:
            places.release()

    for n in itertools.count():
        if args.rate:
            await asyncio.sleep(max(0.0, started + n / args.rate - time.perf_counter()))
        await places.acquire()
        if time.perf_counter() >= until:
            break
        task = asyncio.create_task(attempt(n))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    return figures


async def run(args: argparse.Namespace, base_url: str, server: ServerProcess | None) -> Doc:
    load_before = os.getloadavg()[0]
    api = Api(base_url)
    probes = Client(base_url, max_clients=4)
    flooder = Client(base_url, max_clients=args.concurrency)
    try:
        await api.wait_ready(server)
        [user] = await register_users(api, 1, "lg" + secrets.token_hex(3))
        numbers = itertools.count(1)
        baseline = await probe(
            probes, user, time.perf_counter() + args.baseline, args.interval, numbers
        )
        pid = server.pid if server else args.pid
        cpu_before, client_before = proc_cpu_s(pid), time.process_time()
        started = time.perf_counter()
        until = started + args.seconds
        during, flooded = await asyncio.gather(
            probe(probes, user, until, args.interval, numbers), flood(flooder, args, until)
        )
        wall = time.perf_counter() - started
        cpu_after = proc_cpu_s(pid)
        return {
            **machine(load_before, base_url, server),
            "concurrency": args.concurrency,
            "addresses": args.addresses,
            "seconds": args.seconds,
            "baseline": {kind: f.summary() for kind, f in baseline.items()},
            "during_flood": {kind: f.summary() for kind, f in during.items()},
            "rate": args.rate or None,
            "flood": {**flooded.summary(), "per_s": round(len(flooded.ms) / wall, 1)},
            "server_cpu_s": (
                None
                if cpu_before is None or cpu_after is None
                else round(cpu_after - cpu_before, 2)
            ),
            "client_cpu_s": round(time.process_time() - client_before, 2),
        }
    finally:
        api.close()
        probes.close()
        flooder.close()


def report(r: Doc) -> None:
    pace = f"{r['rate']}/s" if r["rate"] else "each as soon as a place is free"
    lines = [
        f"python: {r['python']}",
        f"cpus: {r['cpus']}",
        f"load average 1m at start: {r['loadavg_1m']}",
        f"server: {r['server']}",
        f"flood: at most {r['concurrency']} in flight, {pace}, from {r['addresses']} "
        f"address(es), {r['seconds']} s",
    ]
    for phase in ("baseline", "during_flood"):
        for kind in PROBES:
            f = r[phase][kind]
            lines.append(
                f"{phase} {kind} ms p50/p95/max: {f['p50_ms']} / {f['p95_ms']} / "
                f"{f['max_ms']} ({f['count']} requests, statuses {f['statuses']})"
            )
    f = r["flood"]
    lines += [
        f"flood logins: {f['count']} ({f['per_s']}/s), statuses {f['statuses']}",
        f"flood login ms p50/p95/max: {f['p50_ms']} / {f['p95_ms']} / {f['max_ms']}",
        f"server cpu s during the flood: {r['server_cpu_s']}",
        f"bench client cpu s during the flood: {r['client_cpu_s']}",
    ]
    emit(lines, r)


def failed(r: Doc) -> bool:
    """A probe that got no answer, or an upload or GET /rooms that was refused. (A probe
    login may get 503 when the flood fills the hashing queue: that is the design.)"""
    for phase in ("baseline", "during_flood"):
        statuses = {kind: set(r[phase][kind]["statuses"]) for kind in PROBES}
        if statuses["login"] - {"200", "503"} or statuses["upload"] - {"201"}:
            return True
        if statuses["rooms"] - {"200"}:
            return True
    return False


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="FastSock login flood benchmark")
    p.add_argument("--seconds", type=float, default=15.0, help="flood duration")
    p.add_argument("--concurrency", type=int, default=64, help="flood logins in flight")
    p.add_argument("--addresses", type=int, default=1, help="client addresses of the flood")
    p.add_argument("--rate", type=float, default=0.0, help="flood logins/s (0: closed loop)")
    p.add_argument("--baseline", type=float, default=5.0, help="probe seconds before it")
    p.add_argument("--interval", type=float, default=0.25, help="seconds between probe rounds")
    p.add_argument("--pid", type=int, help="with --url: the server's pid, for its CPU time")
    add_target_args(p, timeout=300.0)
    args = p.parse_args(argv)
    if args.concurrency < 1 or args.addresses < 1 or args.seconds <= 0 or args.rate < 0:
        p.error("--concurrency, --addresses and --seconds must be positive, --rate >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    return run_main(parse_args(argv), run, report, failed, env=ENV)


if __name__ == "__main__":
    sys.exit(main())
