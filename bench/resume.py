"""Reconnect benchmark: how long a client that missed N events takes to catch up.

Starts its own FastSock server (fresh data dir, free loopback port, send limit raised) unless
--url is given; each further round gets a fresh server too. Each round: users A and B share a
new room, both connected. B notes its session, `last_seq` and the room's `version`
(GET /rooms), then drops its TCP connection; A sends N messages into the room; B reconnects
with `resume {session, last_seq}` and the script times connect -> `ready` and connect -> the
N-th replayed `message.new`, checking each message arrives exactly once, in order, with no
seq gap. For comparison B then drops again and catches up the resync way: a fresh connection
plus GET /history/room/{id}?changed_after=V pages of 100. Prints min/median/max over --repeat
rounds, then `RESULT {json}`; exits 1 when a message was lost, duplicated or out of order, or
a resume was refused. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import secrets
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from common import (
    Activity,
    Api,
    Client,
    Doc,
    add_target_args,
    create_room,
    emit,
    limit_env,
    limits_line,
    machine,
    register_users,
    run_main,
    wait_quiet,
    ws_url,
)
from errors import BenchError
from processes import ServerProcess, free_port

PAGE = 100  # the history page size (the server's maximum)
PRESENCE_TIMEOUT_S = 15.0  # for the server to notice a dropped socket
REPLAY_TIMEOUT_S = 60.0  # for the replayed frames after `ready`


@dataclass(slots=True)
class Received:
    seq: int
    at: float
    client_msg_id: str
    version: int


class Peer(Client):
    """Records the room's `message.new` frames and the presence of others."""

    def __init__(self, name: str, session: Doc, room_id: str, activity: Activity) -> None:
        super().__init__(name, session["user"]["id"], session["access_token"], activity)
        self.refresh_token = session["refresh_token"]
        self.room_id = room_id
        self.received: list[Received] = []
        self.others: Counter[str] = Counter()  # other frame types received
        self.expect = 0
        self.all_received = asyncio.Event()
        self.online: dict[str, bool] = {}  # user id -> last presence seen

    def on_event(self, frame: Doc, now: float) -> None:
        kind, data = frame.get("type"), frame.get("data") or {}
        if kind == "message.new" and data["message"]["room_id"] == self.room_id:
            m = data["message"]
            self.received.append(Received(frame["seq"], now, m["client_msg_id"], m["version"]))
            if len(self.received) >= self.expect:
                self.all_received.set()
        elif kind == "presence":
            self.online[data["user_id"]] = data["online"]
        else:
            self.others[str(kind)] += 1

    async def renew(self, api: Api) -> None:
        """A fresh access token: they last 15 min, and a slow send phase may take long."""
        pair = await api.call("POST", "/auth/refresh", {"refresh_token": self.refresh_token})
        self.token, self.refresh_token = pair["access_token"], pair["refresh_token"]

    def collect(self, expect: int) -> None:
        self.received, self.others, self.expect = [], Counter(), expect
        self.all_received.clear()


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            raise BenchError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def verify(got: list[tuple[str, int]], batch: list[str]) -> Doc:
    """Compare (client_msg_id, version) pairs in arrival order with the messages sent."""
    counts = Counter(cid for cid, _ in got)
    versions = [v for _, v in got]
    return {
        "lost": sum(1 for cid in batch if counts[cid] == 0),
        "duplicated": sum(n - 1 for n in counts.values() if n > 1),
        "unexpected": sum(1 for cid in counts if cid not in set(batch)),
        "out_of_order": sum(1 for a, b in itertools.pairwise(versions) if b <= a),
    }


def spread(values: list[float]) -> Doc:
    return {
        "min": round(min(values), 1),
        "median": round(statistics.median(values), 1),
        "max": round(max(values), 1),
    }


async def send_batch(a: Peer, batch: list[str], concurrency: int) -> tuple[float, int]:
    """A sends the batch, `concurrency` in flight, each after the previous ack;
    (seconds, rate limited retries)."""
    todo = iter(batch)
    rate_limited = 0

    async def worker() -> None:
        nonlocal rate_limited
        for cid in todo:
            sent = await a.send_message(a.room_id, cid, f"missed message {cid}")
            rate_limited += sent.rate_limited

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, rate_limited


async def measure_resume(api: Api, b: Peer, url: str, batch: list[str], last_seq: int) -> Doc:
    """Reconnect with resume; the missed frames follow `ready`."""
    await b.renew(api)
    b.collect(len(batch))
    gaps = b.seq_gaps
    started = time.perf_counter()
    await b.connect(url, resume=True)
    with contextlib.suppress(TimeoutError):  # missing frames are reported as lost
        await asyncio.wait_for(b.all_received.wait(), REPLAY_TIMEOUT_S)
    got = [(x.client_msg_id, x.version) for x in b.received]
    return {
        "outcome": b.resume_outcome,
        "ready_ms": (b.ready_at - started) * 1000,
        "all_ms": ((b.received[-1].at if got else time.perf_counter()) - started) * 1000,
        "frames": len(got),
        "other_frames": dict(b.others),
        "first_seq_ok": bool(got) and b.received[0].seq == last_seq + 1,
        "seq_gaps": b.seq_gaps - gaps,
        **verify(got, batch),
    }


async def measure_resync(api: Api, b: Peer, url: str, batch: list[str], version: int) -> Doc:
    """Reconnect without resume, then page through `changed_after=version`."""
    await b.renew(api)
    started = time.perf_counter()
    await b.connect(url)
    ready_ms = (b.ready_at - started) * 1000
    fetched: list[Doc] = []
    after, pages = version, 0
    while True:
        query = f"changed_after={after}&limit={PAGE}"
        page = await api.call("GET", f"/history/room/{b.room_id}?{query}", token=b.token)
        pages += 1
        fetched += page["messages"]
        if not page["messages"] or not page["has_more"]:
            break
        after = page["messages"][-1]["version"]
    return {
        "ready_ms": ready_ms,
        "all_ms": (time.perf_counter() - started) * 1000,
        "pages": pages,
        "messages": len(fetched),
        **verify([(m["client_msg_id"], m["version"]) for m in fetched], batch),
    }


async def one_round(
    args: argparse.Namespace, base_url: str, server: ServerProcess | None, r: int
) -> Doc:
    """Two new users and their room, one resume and one resync of `args.messages`."""
    api = Api(base_url)
    activity = Activity()
    peers: list[Peer] = []
    try:
        await api.wait_ready(server)
        run_id = secrets.token_hex(3)
        t0 = time.perf_counter()
        sa, sb = await register_users(api, 2, f"rs{run_id}")
        room = await create_room(api, sa, [sb["user"]["id"]], f"resume {run_id}")
        a, b = Peer("A", sa, room["id"], activity), Peer("B", sb, room["id"], activity)
        peers = [a, b]
        url = ws_url(base_url)
        await a.connect(url)
        await b.connect(url)
        await until(lambda: a.online.get(b.user_id) is True, PRESENCE_TIMEOUT_S, "B online")
        await wait_quiet(activity)
        setup_s = time.perf_counter() - t0

        # B is connected and idle: note what a client knows, then lose the network.
        rooms = (await api.call("GET", "/rooms", token=b.token))["rooms"]
        version = next(x["version"] for x in rooms if x["id"] == room["id"])
        last_seq = b.last_seq
        b.abort()
        await until(lambda: a.online.get(b.user_id) is False, PRESENCE_TIMEOUT_S, "B away")

        batch = [f"{run_id}-{r}-{n}" for n in range(args.messages)]
        send_s, rate_limited = await send_batch(a, batch, args.concurrency)
        resume = await measure_resume(api, b, url, batch, last_seq)
        await until(lambda: a.online.get(b.user_id) is True, PRESENCE_TIMEOUT_S, "B back")
        await wait_quiet(activity)

        # Resync: lose the network again, reconnect fresh, page through changed_after=V.
        b.abort()
        await until(lambda: a.online.get(b.user_id) is False, PRESENCE_TIMEOUT_S, "B away")
        resync = await measure_resync(api, b, url, batch, version)
        return {
            "setup_s": setup_s,
            "send_s": send_s,
            "rate_limited": rate_limited,
            "resume": resume,
            "resync": resync,
            "seq_gaps_a": a.seq_gaps,
        }
    finally:
        for p in peers:
            p.close()
        api.close()


async def run(args: argparse.Namespace, base_url: str, server: ServerProcess | None) -> Doc:
    load_before = os.getloadavg()[0]
    rounds = [await one_round(args, base_url, server, 0)]
    for r in range(1, args.repeat):
        if server is None:
            rounds.append(await one_round(args, base_url, None, r))
            continue
        # Each round on a fresh server: the embedded database's inserts slow down as it grows
        # (see README), and the sends must fit in the server's resume window.
        fresh = ServerProcess(free_port(), server.extra_env)
        try:
            fresh.start()
            rounds.append(await one_round(args, fresh.url, fresh, r))
        finally:
            fresh.stop()

    def total(key: str, path: str = "resume") -> int:
        return sum(x[path][key] for x in rounds)

    replay_rates = [
        x["resume"]["frames"] / max(x["resume"]["all_ms"] - x["resume"]["ready_ms"], 1e-3)
        for x in rounds
    ]
    return {
        **machine(load_before, base_url, server),
        "limits": limits_line(server),
        "messages": args.messages,
        "repeat": args.repeat,
        "concurrency": args.concurrency,
        "fresh_server_per_round": server is not None,
        "setup_s": spread([x["setup_s"] for x in rounds]),
        "send_s": spread([x["send_s"] for x in rounds]),
        "rate_limited": sum(x["rate_limited"] for x in rounds),
        "resume_ready_ms": spread([x["resume"]["ready_ms"] for x in rounds]),
        "resume_all_ms": spread([x["resume"]["all_ms"] for x in rounds]),
        "replay_frames_per_s": spread([1000 * v for v in replay_rates]),
        "resume_outcomes": [x["resume"]["outcome"] for x in rounds],
        "resume_ok": sum(x["resume"]["outcome"] == "ok" for x in rounds),
        "resume_frames": [x["resume"]["frames"] for x in rounds],
        "resume_other_frames": sum(sum(x["resume"]["other_frames"].values()) for x in rounds),
        "resume_first_seq_ok": sum(x["resume"]["first_seq_ok"] for x in rounds),
        "resume_seq_gaps": total("seq_gaps"),
        "resume_lost": total("lost"),
        "resume_duplicated": total("duplicated") + total("unexpected"),
        "resume_out_of_order": total("out_of_order"),
        "resync_ready_ms": spread([x["resync"]["ready_ms"] for x in rounds]),
        "resync_all_ms": spread([x["resync"]["all_ms"] for x in rounds]),
        "resync_pages": rounds[0]["resync"]["pages"],
        "resync_lost": total("lost", "resync"),
        "resync_duplicated": total("duplicated", "resync") + total("unexpected", "resync"),
        "resync_out_of_order": total("out_of_order", "resync"),
        "seq_gaps_a": sum(x["seq_gaps_a"] for x in rounds),
    }


def failed(r: Doc) -> bool:
    keys = ["resume_seq_gaps", "resume_lost", "resume_duplicated", "seq_gaps_a"]
    keys += ["resync_lost", "resync_duplicated", "resync_out_of_order"]
    if r["concurrency"] == 1:  # concurrent sends have no defined order among themselves
        keys.append("resume_out_of_order")
    return (
        any(r[k] for k in keys)
        or r["resume_ok"] < r["repeat"]
        or r["resume_first_seq_ok"] < r["repeat"]
    )


def report(r: Doc) -> None:
    def mmm(key: str) -> str:
        v = r[key]
        return f"{v['min']} / {v['median']} / {v['max']}"

    lines = [
        f"python: {r['python']}",
        f"cpus: {r['cpus']}",
        f"load average 1m at start: {r['loadavg_1m']}",
        f"server: {r['server']}",
        f"limits: {r['limits']}",
        f"missed messages per round: {r['messages']}",
        f"rounds: {r['repeat']}",
        f"send concurrency: {r['concurrency']}",
        f"fresh server per round: {str(r['fresh_server_per_round']).lower()}",
        f"setup s min/median/max: {mmm('setup_s')}",
        f"send s min/median/max: {mmm('send_s')}",
        f"rate limited retries: {r['rate_limited']}",
        f"resume ready ms min/median/max: {mmm('resume_ready_ms')}",
        f"resume all missed ms min/median/max: {mmm('resume_all_ms')}",
        f"replay frames/s min/median/max: {mmm('replay_frames_per_s')}",
        f"resume outcomes: {', '.join(map(str, r['resume_outcomes']))}",
        f"resume frames per round: {', '.join(map(str, r['resume_frames']))}",
        f"resume other frames: {r['resume_other_frames']}",
        f"resume first seq = last_seq + 1: {r['resume_first_seq_ok']} of {r['repeat']}",
        f"resume seq gaps: {r['resume_seq_gaps']}",
        f"resume lost: {r['resume_lost']}, duplicated: {r['resume_duplicated']},"
        f" version order inversions: {r['resume_out_of_order']}",
        f"resync ready ms min/median/max: {mmm('resync_ready_ms')}",
        f"resync all ms min/median/max: {mmm('resync_all_ms')}",
        f"resync pages: {r['resync_pages']}",
        f"resync lost: {r['resync_lost']}, duplicated: {r['resync_duplicated']},"
        f" out of order: {r['resync_out_of_order']}",
        f"sender seq gaps: {r['seq_gaps_a']}",
    ]
    emit(lines, r)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="FastSock reconnect (resume vs resync) benchmark")
    p.add_argument("--messages", type=int, default=1000, help="messages missed per round")
    p.add_argument("--repeat", type=int, default=5, help="rounds")
    p.add_argument("--concurrency", type=int, default=1, help="sends in flight from A")
    add_target_args(p, timeout=3600.0)
    args = p.parse_args(argv)
    if args.messages < 1 or args.repeat < 1 or args.concurrency < 1:
        p.error("--messages, --repeat and --concurrency must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_main(args, run, report, failed, env=limit_env())


if __name__ == "__main__":
    sys.exit(main())
