"""Idle sockets: how much memory one FastSock process needs per open, authenticated, idle
WebSocket (issue 12's target: <= 40 KB each with 20,000 open).

Starts its own FastSock (fresh data dir, embedded database, the registration, login and
connection limits lifted), registers ceil(--sockets / --per-user) users (a user holds at most
12 sessions), opens --sockets sockets (--per-user per user, each `auth` -> `ready`, the user's
one access token reused), waits until nothing has arrived for a while and --hold seconds more,
and reads the server's resident memory (VmRSS, /proc/<pid>/status) before the sockets and
after: per socket is the difference over the sockets. Raises its own descriptor limit
(RLIMIT_NOFILE), which the server inherits, as far as it may; with fewer descriptors than the
sockets need it says so and opens as many as fit. Prints `key: value` lines and a final
`RESULT {json}` line; exits 1 when a socket could not be opened or was closed. See
bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import resource
import secrets
import sys
import time

from common import (
    SETUP_LIMITS,
    Activity,
    Api,
    Client,
    Doc,
    emit,
    gather_bounded,
    limit_env,
    register_users,
    run_servers,
    wait_quiet,
    ws_url,
)
from errors import BenchError
from processes import ServerProcess, proc_mem_mib, start_server

TARGET_KIB = 40  # per socket, at 20,000
WANTED_FDS = 65536
# Descriptors besides the sockets: the server's database, log, listeners and its own headroom
# (fastsock/connections.py FD_HEADROOM), this script's HTTP client.
SPARE_FDS = 300


def raise_fd_limit(wanted: int) -> int:
    """Raise RLIMIT_NOFILE (soft, and hard when allowed: root) towards `wanted`; the soft
    limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):  # not privileged: up to the hard limit
            pass
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def run(args: argparse.Namespace, servers: list[ServerProcess]) -> Doc:
    fds = raise_fd_limit(WANTED_FDS)
    wanted = args.sockets
    sockets_n = min(wanted, fds - SPARE_FDS)  # the server and this script each hold them all
    env = limit_env(
        {**SETUP_LIMITS, "AUTH_CONCURRENT_PER_IP": "100000", "HASH_WORKERS": str(os.cpu_count())}
    )
    env["FASTSOCK_MAX_CONNECTIONS"] = str(sockets_n + 100)
    server = start_server(servers, env, port=args.port)
    api = Api(server.url)
    clients: list[Client] = []
    try:
        await api.wait_ready(server)
        load_before = os.getloadavg()[0]
        t0 = time.perf_counter()
        users = await register_users(
            api, math.ceil(sockets_n / args.per_user), secrets.token_hex(3)
        )
        registered_s = time.perf_counter() - t0
        await asyncio.sleep(args.hold)  # the hashing threads' memory settles
        before = proc_mem_mib(server.pid)
        activity = Activity()
        clients = [
            Client(f"socket {i}", user["user"]["id"], user["access_token"], activity)
            for i in range(sockets_n)
            for user in [users[i // args.per_user]]
        ]
        url = ws_url(server.url)
        t1 = time.perf_counter()
        await gather_bounded(args.concurrency, lambda c: c.connect(url), clients)
        connect_s = time.perf_counter() - t1
        await wait_quiet(activity)
        await asyncio.sleep(args.hold)
        after = proc_mem_mib(server.pid)
        closed = sum(c.closed for c in clients)
    finally:
        for c in clients:
            c.close()
        api.close()
    if before is None or after is None:
        raise BenchError("the server's memory could not be read")
    per_socket_kib = (after["rss"] - before["rss"]) * 1024 / max(sockets_n, 1)
    return {
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "loadavg_1m": round(load_before, 2),
        "fd_limit": fds,
        "sockets_wanted": wanted,
        "sockets": sockets_n,
        "users": len(users),
        "register_s": round(registered_s, 1),
        "connect_s": round(connect_s, 1),
        "rss_before_mib": before["rss"],
        "rss_after_mib": after["rss"],
        "peak_mib": after["peak"],
        "per_socket_kib": round(per_socket_kib, 1),
        "target_kib": TARGET_KIB,
        "closed_sockets": closed,
    }


def report(r: Doc) -> None:
    lines = [
        f"python: {r['python']}",
        f"cpus: {r['cpus']}",
        f"load average 1m at start: {r['loadavg_1m']}",
        f"descriptor limit: {r['fd_limit']}",
        f"sockets: {r['sockets']} of {r['sockets_wanted']} wanted, {r['users']} users",
        f"register s: {r['register_s']}, connect s: {r['connect_s']}",
        f"server rss MiB before / after: {r['rss_before_mib']} / {r['rss_after_mib']}"
        f" (peak {r['peak_mib']})",
        f"per socket KiB: {r['per_socket_kib']} (target <= {r['target_kib']})",
        f"closed sockets: {r['closed_sockets']}",
    ]
    if r["sockets"] < r["sockets_wanted"]:
        lines.append(
            f"note: only {r['sockets']} sockets fit the descriptor limit ({r['fd_limit']})"
        )
    emit(lines, r)


def failed(r: Doc) -> bool:
    return bool(r["closed_sockets"])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="FastSock memory per idle WebSocket")
    p.add_argument("--sockets", type=int, default=20_000, help="sockets to open")
    p.add_argument("--per-user", type=int, default=12, help="sockets per user (at most 12)")
    p.add_argument("--concurrency", type=int, default=64, help="connects in flight")
    p.add_argument("--hold", type=float, default=3.0, help="idle seconds before measuring")
    p.add_argument("--port", type=int, help="port for the started server (default: free)")
    p.add_argument("--timeout", type=float, default=1200.0, help="overall limit in seconds")
    args = p.parse_args(argv)
    if args.sockets < 1 or not 1 <= args.per_user <= 12 or args.concurrency < 1:
        p.error("--sockets and --concurrency must be >= 1, --per-user 1..12")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_servers(args.timeout, lambda servers: run(args, servers), report, failed)


if __name__ == "__main__":
    sys.exit(main())
