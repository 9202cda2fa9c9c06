"""Fan-out benchmark: FastSock against a bare in-memory Tornado server, in one run.

The probe (issue 12): one room of --members sockets, --senders of which send. First --paced
messages at --paced-rate a second (the latency of a server that keeps up), then --messages
sent back to back, each sender waiting for its `message.ack` with --concurrency sends in flight
(the throughput). Every `message.new` each socket receives is timed. The same probe and the
same client code run against bench/reference_server.py (bare in-memory fan-out) and against
FastSock (its own process, embedded SQLite database), each started by bench/fanout_servers.py:
both servers are started and their members connected, then --repeat rounds probe one server
after the other, so that each pair of rounds ran under the same load. The script prints each
server's medians over the rounds, the ratio (FastSock / reference: burst deliveries/s and p99,
the median of the rounds' ratios) and each server's CPU per delivery (utime + stime of its
process from /proc).

`--servers` also takes FastSock on the tests' MongoDB stand-in: one node (`fastsock-mongo`),
one node in cluster mode on a Redis (`fastsock-1node`) and two nodes sharing both, the
members' sockets split between them (`fastsock-2nodes`, the issue's two-node mode: every
delivery made, p99 <= 100 ms); each with its own stand-in and Redis, whose CPU is printed
apart. Prints `key: value` lines and a final `RESULT {json}` line; exits 1 if a delivery was
lost or duplicated (or the run failed). See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import secrets
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Mapping

from common import (
    CONNECT_CONCURRENCY,
    Activity,
    Client,
    Doc,
    emit,
    gather_bounded,
    percentile,
    run_servers,
    wait_quiet,
)
from fanout_servers import TARGETS, TWO_NODES, Seat, StartTarget, Target
from processes import ServerProcess, proc_cpu_s

DRAIN_TIMEOUT_S = 30.0  # after the last ack, how long to wait for missing deliveries
DEFAULT_SERVERS = ("reference", "fastsock")
# The targets on 2 cores, single node: burst deliveries/s >= 0.5x the reference's,
# burst p99 <= 2x the reference's; two nodes: every delivery made, p99 <= 100 ms.
TARGET_RATE, TARGET_P99 = 0.5, 2.0
TWO_NODES_P99_MS = 100.0


# --- WebSocket members ----------------------------------------------------------------------


class Phase:
    """One timed phase: its sends, acks and deliveries."""

    def __init__(self, name: str, messages: int, members: int) -> None:
        self.name = name
        self.prefix = f"{name}-{secrets.token_hex(3)}-"  # its client_msg_ids
        self.expected = messages * members
        self.sent_at: dict[str, float] = {}  # client_msg_id -> perf_counter at (last) send
        self.ack_ms: list[float] = []
        self.rate_limited = 0
        self.deliveries = 0
        self.first_send = 0.0
        self.last_delivery = 0.0
        self.all_delivered = asyncio.Event()


class Stats(Activity):
    """Shared across all sockets: the room and the phase being timed."""

    def __init__(self, room_id: str) -> None:
        super().__init__()
        self.room_id = room_id
        self.phase: Phase | None = None


class Member(Client):
    def __init__(self, index: int, seat: Seat, stats: Stats) -> None:
        super().__init__(f"member {index}", seat.user_id, seat.token, stats)
        self.url = seat.url
        self.stats = stats
        self.received: dict[str, list[float]] = {}  # client_msg_id -> receive times

    def on_event(self, frame: Doc, now: float) -> None:
        if frame.get("type") != "message.new":
            return
        message = frame["data"]["message"]
        phase = self.stats.phase
        if message["room_id"] != self.stats.room_id or phase is None:
            return
        cid = message["client_msg_id"]
        self.received.setdefault(cid, []).append(now)
        if cid.startswith(phase.prefix):
            phase.deliveries += 1
            phase.last_delivery = now
            if phase.deliveries >= phase.expected:
                phase.all_delivered.set()

    async def send(self, phase: Phase, client_msg_id: str, text: str) -> None:
        """Send one message and wait for its `message.ack`; retries after `rate_limited`."""
        sent = await self.send_message(self.stats.room_id, client_msg_id, text)
        phase.sent_at[client_msg_id] = sent.sent
        phase.first_send = min(phase.first_send or sent.first_sent, sent.first_sent)
        phase.ack_ms.append((sent.acked - sent.sent) * 1000)
        phase.rate_limited += sent.rate_limited


# --- the probe ------------------------------------------------------------------------------


async def paced(phase: Phase, senders: list[Member], count: int, rate: float) -> None:
    """`count` messages at `rate` a second, round robin over the senders, on a fixed clock."""
    start = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for n in range(count):
            await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
            sender = senders[n % len(senders)]
            tg.create_task(sender.send(phase, f"{phase.prefix}{n}", f"paced message {n}"))


async def burst(phase: Phase, senders: list[Member], count: int, concurrency: int) -> None:
    """`count` messages shared by the senders, each sending its share back to back with
    `concurrency` sends in flight (the next one after an ack)."""

    async def share(k: int, sender: Member) -> None:
        numbers = iter(range(k, count, len(senders)))

        async def worker() -> None:
            for n in numbers:
                await sender.send(phase, f"{phase.prefix}{n}", f"burst message {n}")

        async with asyncio.TaskGroup() as tg:
            for _ in range(concurrency):
                tg.create_task(worker())

    async with asyncio.TaskGroup() as tg:
        for k, sender in enumerate(senders):
            tg.create_task(share(k, sender))


def server_cpu_s(pids: list[int]) -> float | None:
    figures = [proc_cpu_s(pid) for pid in pids]
    return None if not figures or None in figures else sum(f for f in figures if f is not None)


async def timed(
    name: str, probe: Probe, send: Callable[[Phase], Awaitable[None]], messages: int
) -> Doc:
    """Run one phase and measure it: deliveries/s (first send to last delivery), latency of
    every delivery (send -> message.new), acks, and the server's and this script's CPU."""
    stats, members, target = probe.stats, probe.members, probe.target
    await wait_quiet(stats)  # connect-time presence, or the previous phase, has drained
    phase = stats.phase = Phase(name, messages, len(members))
    if target.on_phase is not None:
        target.on_phase(name, True)
    cpu0, client0 = server_cpu_s(target.pids), time.process_time()
    backing0 = {k: proc_cpu_s(pid) for k, pid in target.backing_pids.items()}
    try:
        await send(phase)
    except ExceptionGroup as group:
        raise group.exceptions[0] from None  # the first failure, e.g. a BenchError
    with contextlib.suppress(TimeoutError):  # missing deliveries are reported as lost
        await asyncio.wait_for(phase.all_delivered.wait(), DRAIN_TIMEOUT_S)
    cpu1, client_cpu = server_cpu_s(target.pids), time.process_time() - client0
    backing1 = {k: proc_cpu_s(pid) for k, pid in target.backing_pids.items()}
    if target.on_phase is not None:
        target.on_phase(name, False)

    latencies: list[float] = []
    lost = duplicated = 0
    for m in members:
        for cid, sent in phase.sent_at.items():
            times = m.received.get(cid, [])
            if not times:
                lost += 1
                continue
            duplicated += len(times) - 1
            latencies.append((times[0] - sent) * 1000)
    latencies.sort()
    acks = sorted(phase.ack_ms)
    wall = max(phase.last_delivery - phase.first_send, 1e-9)
    server_cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
    out: Doc = {
        "messages": messages,
        "deliveries": phase.deliveries,
        "expected_deliveries": phase.expected,
        "wall_s": round(wall, 3),
        "deliveries_per_s": round(phase.deliveries / wall),
        "latency_ms": {
            p: round(percentile(latencies, q), 2)
            for p, q in (("p50", 50), ("p95", 95), ("p99", 99), ("max", 100))
        },
        "ack_ms": {p: round(percentile(acks, q), 2) for p, q in (("p50", 50), ("p99", 99))},
        "server_cpu_s": None if server_cpu is None else round(server_cpu, 3),
        "server_cpu_us_per_delivery": (
            None if server_cpu is None else round(server_cpu / max(phase.deliveries, 1) * 1e6, 1)
        ),
        "client_cpu_s": round(client_cpu, 2),
        "rate_limited": phase.rate_limited,
        "lost": lost,
        "duplicated": duplicated,
    }
    if backing0:  # CPU per delivery of Redis and the database, each apart from the server's
        out["backing_cpu_us_per_delivery"] = {
            k: None
            if (a := backing0[k]) is None or (b := backing1[k]) is None
            else round((b - a) / max(phase.deliveries, 1) * 1e6, 1)
            for k in backing0
        }
    return out


class Probe:
    """One server's room with every member connected, and the rounds measured on it."""

    def __init__(self, target: Target, args: argparse.Namespace) -> None:
        self.target = target
        self.args = args
        self.stats = Stats(target.room_id)
        self.members = [Member(i, seat, self.stats) for i, seat in enumerate(target.seats)]
        self.connect_s = 0.0
        self.rounds: list[Doc] = []

    async def connect(self) -> None:
        t0 = time.perf_counter()
        await gather_bounded(CONNECT_CONCURRENCY, lambda m: m.connect(m.url), self.members)
        self.connect_s = time.perf_counter() - t0

    async def round(self) -> None:
        """The paced phase, then the burst phase."""
        args, senders = self.args, self.members[: self.args.senders]
        pace = await timed(
            "paced", self, lambda p: paced(p, senders, args.paced, args.paced_rate), args.paced
        )
        rush = await timed(
            "burst",
            self,
            lambda p: burst(p, senders, args.messages, args.concurrency),
            args.messages,
        )
        self.rounds.append({"paced": pace, "burst": rush})

    def result(self) -> Doc:
        return {
            "server": self.target.description,
            "connect_s": round(self.connect_s, 2),
            "paced": summary([r["paced"] for r in self.rounds]),
            "burst": summary([r["burst"] for r in self.rounds]),
            "rounds": self.rounds,
            "seq_gaps": sum(m.seq_gaps for m in self.members),
            "closed_sockets": sum(m.closed for m in self.members),
        }

    def close(self) -> None:
        for m in self.members:
            m.close()


SUMMED = {"messages", "deliveries", "expected_deliveries", "rate_limited", "lost", "duplicated"}


def summary(rounds: list[Doc]) -> Doc:
    """A phase over the rounds: each figure's median, the counts summed."""
    out: Doc = {}
    for key, first in rounds[0].items():
        values = [r[key] for r in rounds]
        if isinstance(first, dict):
            out[key] = summary(values)
        elif key in SUMMED:
            out[key] = sum(values)
        elif None in values:
            out[key] = None
        else:
            median = statistics.median(values)
            out[key] = round(median) if isinstance(first, int) else round(median, 3)
    return out


async def run(
    args: argparse.Namespace,
    servers: list[ServerProcess],
    targets: Mapping[str, StartTarget] = TARGETS,
) -> Doc:
    """Start every server and connect its members, then --repeat rounds, each probing the
    servers one after the other (never at once: they share the CPUs), so each server's round
    runs next to the other's in time."""
    load_before = os.getloadavg()[0]
    probes: dict[str, Probe] = {}
    setup: dict[str, float] = {}
    async with contextlib.AsyncExitStack() as stack:
        for name in args.servers:
            started = time.perf_counter()
            probe = Probe(await stack.enter_async_context(targets[name](args, servers)), args)
            stack.callback(probe.close)
            await probe.connect()
            probes[name], setup[name] = probe, time.perf_counter() - started
        for _ in range(args.repeat):
            for probe in probes.values():
                await probe.round()
        results = {n: {"setup_s": round(setup[n], 2), **p.result()} for n, p in probes.items()}
    out: Doc = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_1m": round(load_before, 2),
        "loadavg_1m_end": round(os.getloadavg()[0], 2),
        "members": args.members,
        "senders": args.senders,
        "paced_messages": args.paced,
        "paced_rate": args.paced_rate,
        "burst_messages": args.messages,
        "concurrency": args.concurrency,
        "repeat": args.repeat,
        "servers": results,
    }
    if "reference" in results and "fastsock" in results:
        pairs = zip(probes["reference"].rounds, probes["fastsock"].rounds, strict=True)
        each = [ratios(ref["burst"], fs["burst"]) for ref, fs in pairs]
        rate = statistics.median(r["burst_deliveries_per_s"] for r in each)
        p99 = statistics.median(r["burst_p99"] for r in each)
        out["ratio"] = {
            "burst_deliveries_per_s": round(rate, 3),
            "burst_p99": round(p99, 2),
            "targets_met": rate >= TARGET_RATE and p99 <= TARGET_P99,
            "rounds": each,
        }
    if TWO_NODES in results:
        out["two_nodes"] = two_nodes(results[TWO_NODES], probes)
    return out


def two_nodes(result: Doc, probes: Mapping[str, Probe]) -> Doc:
    """The two-node targets (every delivery made, p99 <= 100 ms in both phases: the medians
    over the rounds), and the burst next to one node on the same stand-in, round by round."""
    phases = ("paced", "burst")
    p99 = {phase: result[phase]["latency_ms"]["p99"] for phase in phases}
    every = not any(result[ph]["lost"] or result[ph]["duplicated"] for ph in phases)
    out: Doc = {
        "p99_ms": p99,
        "every_delivery": every,
        "targets_met": every and max(p99.values()) <= TWO_NODES_P99_MS,
    }
    if "fastsock-mongo" in probes:
        pairs = zip(probes["fastsock-mongo"].rounds, probes[TWO_NODES].rounds, strict=True)
        out["vs_one_node"] = [ratios(one["burst"], two["burst"]) for one, two in pairs]
    return out


def ratios(ref: Doc, fs: Doc) -> Doc:
    """One server's burst figures over another's (FastSock's over the reference's), in one
    round."""
    rate = fs["deliveries_per_s"] / max(ref["deliveries_per_s"], 1)
    p99 = fs["latency_ms"]["p99"] / max(ref["latency_ms"]["p99"], 1e-3)
    return {"burst_deliveries_per_s": round(rate, 3), "burst_p99": round(p99, 2)}


# --- output ---------------------------------------------------------------------------------


def phase_lines(name: str, r: Doc) -> list[str]:
    lat, ack = r["latency_ms"], r["ack_ms"]
    cpu = r["server_cpu_s"]
    cpu_text = "n/a (pass --pid with --url)"
    if cpu is not None:
        cpu_text = f"{cpu} s, {r['server_cpu_us_per_delivery']} us per delivery"
    return [
        f"  {name}: deliveries {r['deliveries']} (expected {r['expected_deliveries']}),"
        f" per round {r['wall_s']} s",
        f"    deliveries/s: {r['deliveries_per_s']}",
        f"    latency ms p50 / p95 / p99 / max: {lat['p50']} / {lat['p95']} / {lat['p99']}"
        f" / {lat['max']}",
        f"    ack ms p50 / p99: {ack['p50']} / {ack['p99']}",
        f"    server cpu: {cpu_text}",
        *(
            f"    {what} cpu: {'n/a' if us is None else f'{us} us per delivery'}"
            for what, us in r.get("backing_cpu_us_per_delivery", {}).items()
        ),
        f"    bench client cpu s: {r['client_cpu_s']}",
        f"    rate limited retries: {r['rate_limited']}; lost: {r['lost']},"
        f" duplicated: {r['duplicated']}",
    ]


def report(r: Doc) -> None:
    lines = [
        f"python: {r['python']}",
        f"cpus: {r['cpus']}",
        f"load average 1m at start / end: {r['loadavg_1m']} / {r['loadavg_1m_end']}",
        f"members: {r['members']}, senders: {r['senders']}",
        f"paced: {r['paced_messages']} messages at {r['paced_rate']}/s;"
        f" burst: {r['burst_messages']} messages, {r['concurrency']} in flight per sender;"
        f" rounds: {r['repeat']} (figures: medians over the rounds)",
    ]
    for name, s in r["servers"].items():
        rounds = s["rounds"]
        lines += [
            f"{name}: {s['server']}",
            f"  setup s: {s['setup_s']} (connect {s['connect_s']})",
            *phase_lines("paced", s["paced"]),
            *phase_lines("burst", s["burst"]),
            "  burst deliveries/s by round: "
            + ", ".join(str(x["burst"]["deliveries_per_s"]) for x in rounds),
            "  burst p99 ms by round: "
            + ", ".join(str(x["burst"]["latency_ms"]["p99"]) for x in rounds),
            "  paced p99 ms by round: "
            + ", ".join(str(x["paced"]["latency_ms"]["p99"]) for x in rounds),
            f"  seq gaps: {s['seq_gaps']}, closed sockets: {s['closed_sockets']}",
        ]
    if "ratio" in r:
        ratio = r["ratio"]
        each = ratio["rounds"]
        lines += [
            f"ratio burst deliveries/s fastsock/reference: {ratio['burst_deliveries_per_s']}"
            f" (target >= {TARGET_RATE}; by round: "
            + ", ".join(str(x["burst_deliveries_per_s"]) for x in each)
            + ")",
            f"ratio burst p99 fastsock/reference: {ratio['burst_p99']} (target <= {TARGET_P99};"
            " by round: " + ", ".join(str(x["burst_p99"]) for x in each) + ")",
            f"targets: {'met' if ratio['targets_met'] else 'MISSED'}",
        ]
    if "two_nodes" in r:
        two = r["two_nodes"]
        lines.append(
            f"{TWO_NODES} targets (every delivery made, p99 <= {TWO_NODES_P99_MS:g} ms):"
            f" every delivery {'made' if two['every_delivery'] else 'NOT made'},"
            f" p99 ms paced {two['p99_ms']['paced']} / burst {two['p99_ms']['burst']}:"
            f" {'met' if two['targets_met'] else 'MISSED'}"
        )
        if "vs_one_node" in two:
            each = two["vs_one_node"]
            lines.append(
                f"{TWO_NODES}/fastsock-mongo by round: burst deliveries/s "
                + ", ".join(str(x["burst_deliveries_per_s"]) for x in each)
                + "; burst p99 "
                + ", ".join(str(x["burst_p99"]) for x in each)
            )
    emit(lines, r)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="FastSock fan-out against a bare Tornado server")
    p.add_argument("--members", type=int, default=200, help="room members, one socket each")
    p.add_argument("--senders", type=int, default=10, help="members that send (the first ones)")
    p.add_argument("--paced", type=int, default=100, help="messages in the paced phase")
    p.add_argument("--paced-rate", type=float, default=20.0, help="paced messages per second")
    p.add_argument(
        "--messages", "--burst", type=int, default=100, help="messages in the burst phase"
    )
    p.add_argument(
        "--concurrency", type=int, default=1, help="burst sends in flight per sender (default 1)"
    )
    p.add_argument("--repeat", type=int, default=3, help="rounds of both phases per server")
    p.add_argument(
        "--servers",
        default=",".join(DEFAULT_SERVERS),
        help=f"which servers to probe, in order, of {', '.join(TARGETS)}"
        " (default: reference,fastsock)",
    )
    target = p.add_mutually_exclusive_group()
    target.add_argument("--port", type=int, help="port for the started FastSock (default: free)")
    target.add_argument("--url", help="probe this running FastSock (loopback only) instead")
    p.add_argument("--pid", type=int, help="with --url: the server's pid, for its CPU figures")
    p.add_argument("--timeout", type=float, default=600.0, help="overall limit in seconds")
    args = p.parse_args(argv)
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    if not args.servers or set(args.servers) - set(TARGETS):
        p.error(f"--servers takes a comma-separated list of {', '.join(TARGETS)}")
    if (args.url or args.port) and "fastsock" not in args.servers:
        p.error("--url and --port are for the fastsock server: list it in --servers")
    if not 1 <= args.members <= 1000:
        p.error("--members must be 1..1000 (the server's room size limit)")
    if not 1 <= args.senders <= args.members:
        p.error("--senders must be 1..--members")
    if min(args.paced, args.messages, args.concurrency, args.repeat) < 1 or args.paced_rate <= 0:
        p.error("--paced, --messages, --concurrency and --repeat must be >= 1, --paced-rate > 0")
    return args


def failed(r: Doc) -> bool:
    return any(
        s[phase]["lost"] or s[phase]["duplicated"]
        for s in r["servers"].values()
        for phase in ("paced", "burst")
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_servers(args.timeout, lambda servers: run(args, servers), report, failed)


if __name__ == "__main__":
    sys.exit(main())
