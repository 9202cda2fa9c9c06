"""Typing/presence storm: U users in R rooms, every socket typing, then all reconnecting.

Starts its own FastSock server (fresh data dir, free loopback port, typing/send limits raised
so the limiter is not what is measured) unless --url is given. Each user is in one room and
has one /ws. Phase 1: every socket sends `typing {room_id, active: true}` every ~interval s
(jittered) for --seconds; the server relays at most one `typing` per user per room per 2 s
to the room's other members. Phase 2: the indicators expire (6 s after the last refresh).
Phase 3: every socket drops its TCP connection, waits --offline s and resumes its session
(presence offline + online to every room-mate). Prints frames, relays and presence events per
second and the server's and its embedded database's CPU time per phase (/proc), checks that
relays stay in their room and are throttled, then `RESULT {json}`. Exit 1 on a failed check.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import secrets
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from common import (
    CONNECT_CONCURRENCY,
    QUIET_MAX_S,
    REGISTER_CONCURRENCY,
    Activity,
    Api,
    Client,
    Doc,
    add_target_args,
    cpu_text,
    create_room,
    emit,
    gather_bounded,
    limit_env,
    limits_line,
    machine,
    percentile,
    register_users,
    run_main,
    wait_quiet,
    ws_url,
)
from processes import ServerProcess, child_pids, proc_cpu_s

RELAY_INTERVAL_S = 2.0  # fastsock/services/typing.py: one active relay per user, room, 2 s
EXPIRY_S = 6.0  # ... and an indicator ends this long after its last refresh
# The server spaces relays >= 2 s apart when it decides to relay, but each relay then waits
# for two database queries, so receive-time gaps can be shorter by that latency's jitter.
# Gaps under 2 s - GAP_TOLERANCE_S count as violations (an unthrottled server relays every
# frame, i.e. every ~interval s).
GAP_TOLERANCE_S = 0.5
JITTER = 0.2  # typing interval x uniform(1 - JITTER, 1 + JITTER)
EXPIRY_GRACE_S = 5.0  # wait this much past EXPIRY_S for the expiry relays


@dataclass(slots=True)
class Cpu:
    """One reading: wall clock, server, database and this client's CPU seconds."""

    at: float
    server: float | None
    db: float | None
    client: float


class CpuMeter:
    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid
        children = child_pids(server_pid) if server_pid else []
        self.db_pid = children[0] if len(children) == 1 else None  # the embedded database

    def read(self) -> Cpu:
        server, db = proc_cpu_s(self.server_pid), proc_cpu_s(self.db_pid)
        return Cpu(time.perf_counter(), server, db, time.process_time())

    @staticmethod
    def phase(before: Cpu, after: Cpu, wall: float) -> Doc:
        """CPU seconds per process between two readings, and % of one core over `wall`."""

        def one(a: float | None, b: float | None) -> Doc | None:
            if a is None or b is None:
                return None
            return {"cpu_s": round(b - a, 2), "core_pct": round((b - a) / wall * 100, 1)}

        return {
            "server": one(before.server, after.server),
            "db": one(before.db, after.db),
            "client": one(before.client, after.client),
        }


# --- the sockets ----------------------------------------------------------------------------


@dataclass(slots=True)
class Room:
    id: str
    members: frozenset[str]


@dataclass
class Storm(Activity):
    """Shared by every socket: what was sent and received, per phase."""

    last_frame: float = field(default_factory=time.perf_counter)  # see Activity
    phase: str = "setup"
    typing_sent: int = 0
    typing_ack_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    relays: Counter[tuple[str, bool]] = field(default_factory=Counter)  # (phase, active)
    first_relay: float = 0.0
    last_relay: float = 0.0
    wrong_room: int = 0  # relays about another room, a non-member or oneself
    # (receiver, typer, room) -> receive times of active relays
    active_at: dict[tuple[str, str, str], list[float]] = field(default_factory=dict)
    expired: dict[tuple[str, str], float] = field(default_factory=dict)  # (receiver, typer)
    last_typed: dict[str, float] = field(default_factory=dict)  # typer -> last typing sent
    presence: Counter[bool] = field(default_factory=Counter)  # online -> count (reconnect)
    last_presence: float = 0.0
    wrong_presence: int = 0
    presence_state: dict[tuple[str, str], bool] = field(default_factory=dict)


class Typer(Client):
    def __init__(self, index: int, session: Doc, room: Room, storm: Storm) -> None:
        super().__init__(f"user {index}", session["user"]["id"], session["access_token"], storm)
        self.room = room
        self.mates = room.members - {self.user_id}  # whose typing and presence it may see
        self.storm = storm

    def on_event(self, frame: Doc, now: float) -> None:
        kind, data, s = frame.get("type"), frame.get("data") or {}, self.storm
        if kind == "typing":
            typer = data.get("user_id", "")
            if data.get("room_id") != self.room.id or typer not in self.mates:
                s.wrong_room += 1
            s.relays[s.phase, bool(data.get("active"))] += 1
            if data.get("active"):
                s.first_relay = s.first_relay or now
                s.last_relay = now
                s.active_at.setdefault((self.user_id, typer, data["room_id"]), []).append(now)
            elif s.phase == "expiry":
                s.expired.setdefault((self.user_id, typer), now)
        elif kind == "presence" and s.phase == "reconnect":
            user, online = data.get("user_id", ""), bool(data.get("online"))
            if user not in self.mates:
                s.wrong_presence += 1
            s.presence[online] += 1
            s.last_presence = now
            s.presence_state[self.user_id, user] = online
        elif kind == "error":
            s.errors[str(data.get("code"))] += 1

    async def type_until(self, until: float, interval: float) -> None:
        """`typing active` every interval (jittered), each after the previous one's ack."""
        s = self.storm
        await asyncio.sleep(random.uniform(0, interval))
        n = 0
        while (started := time.perf_counter()) < until:
            n += 1
            s.typing_sent += 1
            s.last_typed[self.user_id] = started
            data = {"room_id": self.room.id, "active": True}
            sent, answered, reply = await self.request("typing", data, n)
            if reply.get("type") == "ack":
                s.typing_ack_ms.append((answered - sent) * 1000)
            else:
                s.errors[str((reply.get("data") or {}).get("code"))] += 1
            pause = interval * random.uniform(1 - JITTER, 1 + JITTER)
            await asyncio.sleep(max(0.0, started + pause - time.perf_counter()))


# --- the run --------------------------------------------------------------------------------


async def setup(api: Api, args: argparse.Namespace, storm: Storm) -> list[Typer]:
    """Register the users, one room per `users / rooms` of them (round robin)."""
    run_id = secrets.token_hex(3)
    sessions = await register_users(api, args.users, f"st{run_id}")
    groups = [sessions[r :: args.rooms] for r in range(args.rooms)]

    async def make(r: int) -> Room:
        group = groups[r]
        others = [s["user"]["id"] for s in group[1:]]
        room = await create_room(api, group[0], others, f"storm {run_id} {r}")
        return Room(room["id"], frozenset(room["member_ids"]))

    rooms = await gather_bounded(REGISTER_CONCURRENCY, make, range(args.rooms))
    return [Typer(i, s, rooms[i % args.rooms], storm) for i, s in enumerate(sessions)]


def throttle_check(storm: Storm) -> tuple[int, float | None]:
    """(active relays closer than RELAY_INTERVAL_S - tolerance at one receiver, smallest gap)."""
    violations, gaps = 0, []
    for times in storm.active_at.values():
        for a, b in itertools.pairwise(times):
            gaps.append(b - a)
            violations += b - a < RELAY_INTERVAL_S - GAP_TOLERANCE_S
    return violations, (round(min(gaps), 3) if gaps else None)


async def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    """Poll `predicate()` every 50 ms until true or `timeout`; whether it became true."""
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def run(args: argparse.Namespace, base_url: str, server: ServerProcess | None) -> Doc:
    api = Api(base_url)
    storm = Storm()
    typers: list[Typer] = []
    try:
        load_before = os.getloadavg()[0]
        await api.wait_ready(server)
        meter = CpuMeter(server.pid if server else args.pid)
        t0 = time.perf_counter()
        typers = await setup(api, args, storm)
        url = ws_url(base_url)
        await gather_bounded(CONNECT_CONCURRENCY, lambda t: t.connect(url), typers)
        await wait_quiet(storm)  # connect-time presence
        setup_s = time.perf_counter() - t0

        # Phase 1: typing.
        storm.phase = "typing"
        before = meter.read()
        until = before.at + args.seconds
        await asyncio.gather(*(t.type_until(until, args.interval) for t in typers))
        last_sent = time.perf_counter()
        await wait_quiet(storm)
        after = meter.read()
        typing_wall = max(storm.last_frame, last_sent) - before.at  # to the last frame
        typing_cpu = meter.phase(before, after, typing_wall)
        violations, min_gap = throttle_check(storm)
        active = storm.relays["typing", True]
        relay_wall = max(storm.last_relay - storm.first_relay, 1e-9)

        # Phase 2: every indicator that was relayed ends EXPIRY_S after its last refresh.
        storm.phase = "expiry"
        expected_expiry = {(receiver, typer) for receiver, typer, _ in storm.active_at}
        await wait_for(
            lambda: len(storm.expired) >= len(expected_expiry),
            EXPIRY_S + EXPIRY_GRACE_S - (time.perf_counter() - last_sent),
        )
        expiry_delays = sorted(
            at - storm.last_typed[typer] for (_, typer), at in storm.expired.items()
        )

        # Phase 3: every socket drops, stays away --offline s, then resumes at once.
        await wait_quiet(storm)
        storm.phase = "reconnect"
        before = meter.read()
        for t in typers:
            t.abort()
        await asyncio.sleep(args.offline)
        back = time.perf_counter()
        await asyncio.gather(*(t.connect(url, resume=True) for t in typers))
        all_ready = time.perf_counter() - back
        expected_presence = 2 * sum(len(t.room.members) - 1 for t in typers)
        await wait_for(lambda: storm.presence.total() >= expected_presence, QUIET_MAX_S)
        await wait_quiet(storm)
        after = meter.read()
        reconnect_wall = max(storm.last_presence, back) - before.at
        reconnect_cpu = meter.phase(before, after, reconnect_wall)
        presence_wall = max(storm.last_presence - back, 1e-9)
        stale = sum(
            storm.presence_state.get((t.user_id, m)) is not True for t in typers for m in t.mates
        )

        acks = sorted(storm.typing_ack_ms)
        room_sizes = Counter(len(t.room.members) for t in typers)
        result = {
            **machine(load_before, base_url, server),
            "limits": limits_line(server),
            "users": args.users,
            "rooms": args.rooms,
            "room_sizes": sorted(room_sizes),
            "seconds": args.seconds,
            "interval_s": args.interval,
            "setup_s": round(setup_s, 2),
            "typing": {
                "frames_sent": storm.typing_sent,
                "frames_per_s": round(storm.typing_sent / args.seconds, 1),
                "ack_ms": {
                    "p50": round(percentile(acks, 50), 2),
                    "p99": round(percentile(acks, 99), 2),
                },
                "errors": dict(storm.errors),
                "relays": active,
                "relays_per_s": round(active / relay_wall, 1),
                "inactive_relays": storm.relays["typing", False],
                "wrong_room": storm.wrong_room,
                "throttle_violations": violations,
                "min_gap_s": min_gap,
                "wall_s": round(typing_wall, 2),
                "cpu": typing_cpu,
                "server_cpu_ms_per_frame": per(typing_cpu, "server", storm.typing_sent, 1e3),
                "server_cpu_us_per_relay": per(typing_cpu, "server", active, 1e6),
            },
            "expiry": {
                "relays": len(storm.expired),
                "expected": len(expected_expiry),
                "delay_s": {
                    "p50": round(percentile(expiry_delays, 50), 2),
                    "max": round(percentile(expiry_delays, 100), 2),
                },
            },
            "reconnect": {
                "sockets": len(typers),
                "offline_s": args.offline,
                "resumed_ok": sum(t.resume_outcome == "ok" for t in typers),
                "all_ready_s": round(all_ready, 2),
                "presence": storm.presence.total(),
                "presence_expected": expected_presence,
                "online": storm.presence[True],
                "offline": storm.presence[False],
                "presence_per_s": round(storm.presence.total() / presence_wall, 1),
                "presence_window_s": round(presence_wall, 2),
                "wrong_presence": storm.wrong_presence,
                "stale_presence": stale,
                "wall_s": round(reconnect_wall, 2),
                "cpu": reconnect_cpu,
                "server_cpu_us_per_presence": per(
                    reconnect_cpu, "server", storm.presence.total(), 1e6
                ),
            },
            "seq_gaps": sum(t.seq_gaps for t in typers),
            "closed_sockets": sum(t.closed for t in typers),
        }
        result["failed_checks"] = checks(result)
        return result
    finally:
        for t in typers:
            t.close()
        api.close()


def per(cpu: Doc, proc: str, count: int, scale: float) -> float | None:
    """CPU of `proc` per event, in 1/scale seconds."""
    figures = cpu.get(proc)
    if figures is None or not count:
        return None
    return round(figures["cpu_s"] / count * scale, 2)


def checks(r: Doc) -> list[str]:
    """The correctness checks that failed."""
    t, e, c = r["typing"], r["expiry"], r["reconnect"]
    failed = []
    if t["wrong_room"]:
        failed.append("typing relays outside the sender's room")
    if t["throttle_violations"]:
        failed.append("typing relays closer than 2 s")
    if e["relays"] < e["expected"]:
        failed.append("typing indicators that never expired")
    if c["resumed_ok"] < c["sockets"]:
        failed.append("sessions not resumed")
    if c["presence"] != c["presence_expected"]:
        failed.append("presence events missing or extra")
    if c["wrong_presence"] or c["stale_presence"]:
        failed.append("presence to the wrong users or stale")
    if r["seq_gaps"]:
        failed.append("seq gaps")
    return failed


def report(r: Doc) -> None:
    t, e, c = r["typing"], r["expiry"], r["reconnect"]
    lines = [
        f"python: {r['python']}",
        f"cpus: {r['cpus']}",
        f"load average 1m at start: {r['loadavg_1m']}",
        f"server: {r['server']}",
        f"limits: {r['limits']}",
        f"users: {r['users']}",
        f"rooms: {r['rooms']} (sizes {', '.join(map(str, r['room_sizes']))})",
        f"seconds: {r['seconds']}",
        f"typing interval s: {r['interval_s']} (+-{JITTER:.0%})",
        f"setup s: {r['setup_s']}",
        f"typing frames sent: {t['frames_sent']} ({t['frames_per_s']}/s)",
        f"typing ack p50 ms: {t['ack_ms']['p50']}",
        f"typing ack p99 ms: {t['ack_ms']['p99']}",
        f"typing errors: {sum(t['errors'].values())} {t['errors'] or ''}".rstrip(),
        f"typing relays received: {t['relays']}",
        f"typing relays/s: {t['relays_per_s']}",
        f"typing inactive relays during the phase: {t['inactive_relays']}",
        f"typing relays outside their room: {t['wrong_room']}",
        f"typing throttle violations: {t['throttle_violations']}",
        f"typing min relay gap s: {t['min_gap_s']}",
        f"typing phase s: {t['wall_s']}",
        f"typing server cpu s: {cpu_text(t['cpu'], 'server')}",
        f"typing db cpu s: {cpu_text(t['cpu'], 'db')}",
        f"typing bench client cpu s: {cpu_text(t['cpu'], 'client')}",
        f"typing server cpu ms per frame: {t['server_cpu_ms_per_frame']}",
        f"typing server cpu us per relay: {t['server_cpu_us_per_relay']}",
        f"expiry relays: {e['relays']} (expected {e['expected']})",
        f"expiry delay s p50: {e['delay_s']['p50']}, max: {e['delay_s']['max']}",
        f"reconnect sockets: {c['sockets']} (offline {c['offline_s']} s)",
        f"reconnect resumed ok: {c['resumed_ok']}",
        f"reconnect all ready s: {c['all_ready_s']}",
        f"presence events: {c['presence']} (expected {c['presence_expected']};"
        f" online {c['online']}, offline {c['offline']})",
        f"presence events/s: {c['presence_per_s']} (over {c['presence_window_s']} s)",
        f"presence to wrong users: {c['wrong_presence']}",
        f"presence stale: {c['stale_presence']}",
        f"reconnect phase s: {c['wall_s']}",
        f"reconnect server cpu s: {cpu_text(c['cpu'], 'server')}",
        f"reconnect db cpu s: {cpu_text(c['cpu'], 'db')}",
        f"reconnect bench client cpu s: {cpu_text(c['cpu'], 'client')}",
        f"reconnect server cpu us per presence event: {c['server_cpu_us_per_presence']}",
        f"seq gaps: {r['seq_gaps']}",
        f"closed sockets: {r['closed_sockets']}",
        f"failed checks: {'; '.join(r['failed_checks']) or 'none'}",
    ]
    emit(lines, r)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="FastSock typing/presence storm benchmark")
    p.add_argument("--users", type=int, default=200, help="users, one socket each")
    p.add_argument("--rooms", type=int, default=20, help="rooms; users are spread evenly")
    p.add_argument("--seconds", type=float, default=10.0, help="length of the typing phase")
    p.add_argument("--interval", type=float, default=0.5, help="seconds between typing frames")
    p.add_argument("--offline", type=float, default=1.0, help="seconds away before resuming")
    p.add_argument("--pid", type=int, help="with --url: the server's pid, for CPU figures")
    add_target_args(p, timeout=300.0)
    args = p.parse_args(argv)
    if args.rooms < 1 or args.users < 2 * args.rooms:
        p.error("need --rooms >= 1 and at least 2 --users per room")
    if args.users > 5000 or args.seconds <= 0 or args.interval <= 0 or args.offline < 0:
        p.error("--users <= 5000, --seconds and --interval > 0, --offline >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_main(args, run, report, lambda r: bool(r["failed_checks"]), env=limit_env())


if __name__ == "__main__":
    sys.exit(main())
