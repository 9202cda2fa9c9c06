"""The servers bench/fanout.py probes, and how each is started.

Each entry of `TARGETS` starts one server (and what it relies on) and yields a `Target`: the
room, each member's user id, token and WebSocket URL, the processes whose CPU is the server's,
and those whose CPU is counted apart (Redis, the database). `reference`: bench/reference_server.py;
`fastsock`: FastSock on its embedded database (or the one at --url); on the tests' MongoDB
stand-in: one node (`fastsock-mongo`), one node in cluster mode on a Redis (`fastsock-1node`)
and two nodes sharing both (`fastsock-2nodes`). Every process is stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import secrets
import shutil
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from common import (
    BENCH_LIMITS,
    Api,
    create_room,
    limit_env,
    register_users,
    require_loopback,
    ws_url,
)
from errors import BenchError
from processes import SERVE, ServerProcess, free_port, start_server

REFERENCE = (sys.executable, str(Path(__file__).with_name("reference_server.py")))
# The MongoDB stand-in of the tests (tests/mongo_standin.py, in memory) and Debian's Redis.
MONGO_STANDIN = (sys.executable, "-m", "tests.mongo_standin")
REDIS = "redis-server"
TWO_NODES = "fastsock-2nodes"


@dataclass(frozen=True, slots=True)
class Seat:
    """One member of the room: who it is and where its socket connects."""

    user_id: str
    token: str
    url: str


@dataclass(slots=True)
class Target:
    """A server ready for the probe: the room, its members' seats, and the processes whose
    CPU is the server's (several for a server of several nodes)."""

    name: str
    description: str
    room_id: str
    seats: list[Seat]
    pids: list[int]
    # Processes the server relies on whose CPU is counted apart: "redis", "database".
    backing_pids: dict[str, int] = field(default_factory=dict)
    # Told (phase, True) when a timed phase starts sending and (phase, False) when its last
    # delivery arrived (bench/profile_send.py profiles the server in between).
    on_phase: Callable[[str, bool], None] | None = None


async def wait_ready(server: ServerProcess) -> None:
    """Wait until `server` answers /readyz."""
    api = Api(server.url)
    try:
        await api.wait_ready(server)
    finally:
        api.close()


@contextlib.asynccontextmanager
async def reference_target(
    args: argparse.Namespace, servers: list[ServerProcess]
) -> AsyncIterator[Target]:
    port = free_port()
    server = start_server(servers, command=[*REFERENCE, "--port", str(port)], port=port)
    try:
        await wait_ready(server)
        ids = [secrets.token_hex(12) for _ in range(args.members)]
        seats = [Seat(i, i, ws_url(server.url)) for i in ids]
        room_id, pids = secrets.token_hex(12), [server.pid or 0]
        yield Target("reference", "bench/reference_server.py", room_id, seats, pids)
    finally:
        server.stop()


async def fastsock_room(
    args: argparse.Namespace, base_urls: list[str], server: ServerProcess | None
) -> tuple[str, list[Seat]]:
    """The room, made through the API of the first node: its members registered, and their
    sockets spread over the nodes (member i on node i mod N)."""
    api = Api(base_urls[0])
    try:
        await api.wait_ready(server)
        run_id = secrets.token_hex(3)
        sessions = await register_users(api, args.members, f"fb{run_id}")
        others = [s["user"]["id"] for s in sessions[1:]]
        room = await create_room(api, sessions[0], others, f"fanout {run_id}")
    finally:
        api.close()
    urls = [ws_url(u) for u in base_urls]
    seats = [
        Seat(s["user"]["id"], s["access_token"], urls[i % len(urls)])
        for i, s in enumerate(sessions)
    ]
    return room["id"], seats


@contextlib.asynccontextmanager
async def fastsock_target(
    args: argparse.Namespace, servers: list[ServerProcess], command: Sequence[str] = SERVE
) -> AsyncIterator[Target]:
    """FastSock on its embedded database, in its own process (or the one at --url): the room
    and its users are made through the API."""
    server: ServerProcess | None = None
    if args.url:
        require_loopback(args.url)
        base_url, pids = args.url, [args.pid] if args.pid else []
    else:
        # Senders post as fast as acks return: relax the send limit (10/s by default) so the
        # figures measure fan-out, not the limiter.
        server = start_server(servers, limit_env(BENCH_LIMITS), command, args.port)
        base_url, pids = server.url, [server.pid or 0]
    try:
        room_id, seats = await fastsock_room(args, [base_url], server)
        where = "embedded SQLite, own process" if server else base_url
        yield Target("fastsock", f"FastSock ({where})", room_id, seats, pids)
    finally:
        if server is not None:
            server.stop()


@contextlib.asynccontextmanager
async def mongo_target(
    args: argparse.Namespace,
    servers: list[ServerProcess],
    *,
    name: str,
    nodes: int,
    redis: bool,
    command: Sequence[str] = SERVE,
) -> AsyncIterator[Target]:
    """FastSock on the MongoDB stand-in (`nodes` processes sharing it), in cluster mode on
    one Redis when `redis`: the stand-in, Redis and each node in their own process, on free
    loopback ports, stopped at the end. The members' sockets alternate between the nodes."""
    started: list[ServerProcess] = []  # stopped in reverse: the nodes, Redis, the database
    try:
        db_port = free_port()
        database = start_server(
            servers, command=[*MONGO_STANDIN, "--port", str(db_port)], port=db_port
        )
        started.append(database)
        await database.wait_output(b"LISTENING ")
        backing = {"database": database.pid or 0}
        env = limit_env(BENCH_LIMITS) | {
            "FASTSOCK_MONGO_URI": f"mongodb://127.0.0.1:{db_port}/fanout?directConnection=true",
            # Every node must accept the tokens the first one issued.
            "FASTSOCK_JWT_SECRET": secrets.token_urlsafe(32),
        }
        if redis:
            if shutil.which(REDIS) is None:
                raise BenchError(f"{REDIS} is not installed (apt-get install redis-server)")
            redis_port = free_port()
            bus = [REDIS, "--bind", "127.0.0.1", "--port", str(redis_port)]
            bus += ["--save", "", "--appendonly", "no"]  # no persistence; its dir: in_tmp
            cache = start_server(servers, command=bus, port=redis_port, in_tmp=True)
            started.append(cache)
            await cache.wait_output(b"Ready to accept connections")
            backing["redis"] = cache.pid or 0
            env["FASTSOCK_REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
        for _ in range(nodes):
            started.append(start_server(servers, env, command))
        fleet = started[-nodes:]
        for node in fleet[1:]:  # (the first: fastsock_room waits for it)
            await wait_ready(node)
        room_id, seats = await fastsock_room(args, [n.url for n in fleet], fleet[0])
        what = f"{nodes} node{'s' if nodes > 1 else ''}, Mongo stand-in"
        what += ", Redis (cluster mode)" if redis else ""
        pids = [n.pid or 0 for n in fleet]
        yield Target(name, f"FastSock ({what})", room_id, seats, pids, backing)
    finally:
        for process in reversed(started):
            process.stop()


# How each server is started. On the Mongo stand-in: one node (the database's cost next to
# `fastsock`'s SQLite), one node in cluster mode (Redis' cost), two nodes (the second's).
StartTarget = Callable[
    [argparse.Namespace, list[ServerProcess]], contextlib.AbstractAsyncContextManager[Target]
]
TARGETS: dict[str, StartTarget] = {
    "reference": reference_target,
    "fastsock": fastsock_target,
    **{
        name: functools.partial(mongo_target, name=name, nodes=nodes, redis=redis)
        for name, nodes, redis in (
            ("fastsock-mongo", 1, False),
            ("fastsock-1node", 1, True),
            (TWO_NODES, 2, True),
        )
    },
}
