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
import os
import secrets
import sys
import time

from common import (
    BENCH_LIMITS,
    CONNECT_CONCURRENCY,
    Activity,
    Api,
    Client,
    Doc,
    ServerProcess,
    add_target_args,
    create_room,
    emit,
    gather_bounded,
    limit_env,
    machine,
    percentile,
    register_users,
    run_main,
    wait_quiet,
    ws_url,
)

DRAIN_TIMEOUT_S = 30.0  # after the last ack, how long to wait for missing deliveries


# --- WebSocket members ----------------------------------------------------------------------


class Stats(Activity):
    """Shared across all sockets: send times, acks, delivery progress."""

    def __init__(self, room_id: str, expected: int) -> None:
        super().__init__()
        self.room_id = room_id
        self.expected = expected
        self.sent_at: dict[str, float] = {}  # client_msg_id -> perf_counter at (last) send
        self.ack_ms: list[float] = []
        self.deliveries = 0
        self.first_send = 0.0
        self.last_delivery = 0.0
        self.all_delivered = asyncio.Event()
        self.rate_limited = 0


class Member(Client):
    def __init__(self, index: int, user_id: str, token: str, stats: Stats) -> None:
        super().__init__(f"member {index}", user_id, token, stats)
        self.index = index
        self.stats = stats
        self.received: dict[str, list[float]] = {}  # client_msg_id -> receive times

    def on_event(self, frame: Doc, now: float) -> None:
        if frame.get("type") != "message.new":
            return
        stats = self.stats
        message = frame["data"]["message"]
        if message["room_id"] != stats.room_id:
            return
        self.received.setdefault(message["client_msg_id"], []).append(now)
        stats.deliveries += 1
        stats.last_delivery = now
        if stats.deliveries >= stats.expected:
            stats.all_delivered.set()

    async def send(self, client_msg_id: str, text: str) -> None:
        """Send one message and wait for its `message.ack`; retries after `rate_limited`."""
        stats = self.stats
        sent = await self.send_message(stats.room_id, client_msg_id, text)
        stats.sent_at[client_msg_id] = sent.sent
        stats.first_send = min(stats.first_send or sent.first_sent, sent.first_sent)
        stats.ack_ms.append((sent.acked - sent.sent) * 1000)
        stats.rate_limited += sent.rate_limited


# --- the run --------------------------------------------------------------------------------


async def setup(api: Api, members: int, run_id: str) -> tuple[str, list[Doc]]:
    """Register the users and create the room; (room_id, sessions) with sessions[0] the admin."""
    sessions = await register_users(api, members, f"fb{run_id}")
    others = [s["user"]["id"] for s in sessions[1:]]
    room = await create_room(api, sessions[0], others, f"fanout {run_id}")
    return room["id"], sessions


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
        url = ws_url(base_url)
        await gather_bounded(CONNECT_CONCURRENCY, lambda m: m.connect(url), sockets)
        await wait_quiet(stats)  # let the connect-time presence announcements drain
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
            **machine(load_before, base_url, server),
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
    ]
    emit(lines, r)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="FastSock WebSocket fan-out benchmark")
    p.add_argument("--members", type=int, default=200, help="room members, one socket each")
    p.add_argument("--messages", type=int, default=100, help="messages sent by member 0")
    p.add_argument("--concurrency", type=int, default=1, help="sends in flight (default 1)")
    add_target_args(p, timeout=300.0)
    args = p.parse_args(argv)
    if not 1 <= args.members <= 1000:
        p.error("--members must be 1..1000 (the server's room size limit)")
    if args.messages < 1 or args.concurrency < 1:
        p.error("--messages and --concurrency must be >= 1")
    return args


def failed(r: Doc) -> bool:
    return bool(r["lost"] or r["duplicated"])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # One sender posts as fast as acks return: relax its send limit (10/s by default) so the
    # figures measure fan-out, not the limiter.
    return run_main(args, run, report, failed, env=limit_env(BENCH_LIMITS))


if __name__ == "__main__":
    sys.exit(main())
