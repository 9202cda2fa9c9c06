"""Group calls: one SFU worker forwarding R rooms x P participants, against MediaRelay transcoding.

Starts FastSock (fresh data dir, FASTSOCK_SFU_SECRET set) and one real worker (`python -m sfu`,
registered with it), pinned to --worker-core; this script (every peer) and FastSock run on
--peer-core. Each participant publishes 640x360 VP8 at 30 fps (~1 Mbps) and Opus, replayed
from clips encoded once (bench/sfu_media.py), so the peers' core is not spent encoding; its
frames carry their index, and each publisher keeps the send time of every index. Participants
join like clients: `call.join` on their FastSock socket, then the worker named by `call.sfu`.

Phases: (1) SFU: the rooms fill one participant at a time; after a warm-up, the worker's CPU
and every received frame's delay are measured for --seconds; then one late joiner per room,
whose publishers make keyframes only when asked. (2) Baseline: bench/sfu_relay.py (aiortc's
MediaRelay: decode once, re-encode per subscriber) on the same core, one publisher and
--baseline-subscribers subscribers, measured the same way. A direct peer-to-peer pair runs
throughout, as the reference for the added delay. Prints the figures next to the issue's
targets, then `RESULT {json}`. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
# The repository first: `import sfu` must find the worker's package, not this file.
sys.path.insert(0, str(BENCH.parent))

from common import (  # noqa: E402
    SETUP_LIMITS,
    Activity,
    Api,
    Client,
    Doc,
    create_room,
    gather_bounded,
    limit_env,
    machine,
    register_users,
    run_main,
    ws_url,
)
from errors import BenchError  # noqa: E402
from processes import ServerProcess, free_port, proc_cpu_s  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from sfu_media import Clip, Inbox, Publisher, Samples, audio_clip, video_clip  # noqa: E402
from sfu_peers import (  # noqa: E402
    Child,
    SfuPeer,
    direct_pair,
    others_s,
    relay_publish,
    relay_subscribe,
    udp_drops,
    wait_http,
)
from sfu_report import Window, failed, figures, fps, latency, report, stream_totals  # noqa: E402
from tornado.httpclient import AsyncHTTPClient  # noqa: E402

from sfu.ice import configure_ice  # noqa: E402

SECRET = "bench-sfu-secret-" + secrets.token_hex(16)
WORKER_RTC, RELAY_RTC, PEER_RTC = (33000, 33999), (34000, 34999), (35000, 36999)
FIRST_FRAMES_TIMEOUT_S = 60.0
CLOSE_TIMEOUT_S = 10.0
BASELINE_MAX = 6  # default subscribers of the transcoding baseline: more would saturate its core


@dataclass
class Run:
    """Everything a run started, so that it can all be stopped."""

    api: Api
    log_dir: Path
    args: argparse.Namespace
    server_pid: int | None  # FastSock, on the peers' core
    children: list[Child] = field(default_factory=list)
    closers: list[Any] = field(default_factory=list)  # peers and connections to close
    sockets: list[Client] = field(default_factory=list)


async def measure(
    args: argparse.Namespace,
    run: Run,
    pid: int | None,
    samples: list[Samples],
    inboxes: list[Inbox],
) -> tuple[Window, dict[int, tuple[int, int]]]:
    """Turn the samples on for --seconds: the CPU and UDP drops of `pid` and of this script,
    what other work took of their cores, and each video stream's frames (received, decoded)."""

    def counts() -> dict[int, tuple[int, int]]:
        return {id(s): (s.frames, s.decoded) for i in inboxes for s in i.video()}

    before, start, t0 = counts(), load(run, pid), time.monotonic()
    for s in samples:
        s.on = True
    await asyncio.sleep(args.seconds)
    for s in samples:
        s.on = False
    after, end, t1 = counts(), load(run, pid), time.monotonic()
    window = Window(t1 - t0, *(b - a for a, b in zip(start, end, strict=True)))
    deltas = {k: (after[k][0] - v[0], after[k][1] - v[1]) for k, v in before.items() if k in after}
    return window, deltas


def load(run: Run, pid: int | None) -> tuple[float, ...]:
    """Cumulative readings (Window's fields): CPU of `pid` and of this script, their UDP drops,
    and the CPU other work took of the worker's core and of the peers' one."""
    mine = os.getpid()
    return (
        *(proc_cpu_s(pid) or 0.0, time.process_time()),
        *(udp_drops(pid), udp_drops(mine)),
        others_s(run.args.worker_core, [pid]),
        others_s(run.args.peer_core, [mine, run.server_pid]),
    )


async def scrape(url: str) -> dict[str, float]:
    """The worker's /metrics as {name or name{label=value}: value}."""
    response = await AsyncHTTPClient().fetch(url, request_timeout=10)
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(response.body.decode()):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
    return out


def first_frames(peers: list[SfuPeer], joined: dict[str, float]) -> dict[str, list[float]]:
    """Per (subscriber, publisher) pair, from the later of their two joins: the first frame
    received (a keyframe) and, for decoding subscribers, the first one decoded."""
    out: dict[str, list[float]] = {"received": [], "decoded": []}
    for peer in peers:
        for stream in peer.inbox.video():
            source = stream.source()
            if source is None or stream.first_at is None:
                continue
            start = max(peer.inbox.joined, joined[source.name])
            out["received"].append(stream.first_at - start)
            if stream.first_decoded_at is not None:
                out["decoded"].append(stream.first_decoded_at - start)
    return out


async def expect(name: str, inbox: Inbox, publishers: int, first: str) -> None:
    """Wait until `publishers` video streams have their `first` frame (received or decoded)."""

    def count() -> int:
        return sum(getattr(s, first) is not None for s in inbox.video())

    try:
        await inbox.wait_for(lambda: count() >= publishers, FIRST_FRAMES_TIMEOUT_S)
    except TimeoutError:
        raise BenchError(
            f"{name}: {first} of {count()} of {publishers} videos after {FIRST_FRAMES_TIMEOUT_S} s"
            f" ({len(inbox.video())} video tracks, {stream_totals([inbox])})"
        ) from None


# --- setup --------------------------------------------------------------------------------------


async def start_worker(args: argparse.Namespace, run: Run, control_url: str) -> tuple[Child, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SFU_", "FASTSOCK_"))}
    env |= {
        "SFU_PUBLIC_URL": f"ws://127.0.0.1:{port}/ws",
        "SFU_HOST": "127.0.0.1",
        "SFU_PORT": str(port),
        "SFU_CONTROL_URL": control_url,
        "SFU_SECRET": SECRET,
        "SFU_RTC_IPS": "127.0.0.1",
        "SFU_RTC_MIN_PORT": str(WORKER_RTC[0]),
        "SFU_RTC_MAX_PORT": str(WORKER_RTC[1]),
        "SFU_CAPACITY": str(args.rooms * (args.participants + 1) + 8),
        "SFU_LOG_LEVEL": "WARNING",
        "SFU_DRAIN_TIMEOUT_S": "2",  # at the end every peer has left already
    }
    worker = Child("sfu-worker", [sys.executable, "-m", "sfu"], env, args.worker_core, run.log_dir)
    run.children.append(worker)
    worker.start()
    await wait_http(worker, f"http://127.0.0.1:{port}/healthz", "registered")
    return worker, f"http://127.0.0.1:{port}"


async def start_relay(args: argparse.Namespace, run: Run) -> tuple[Child, str]:
    port = free_port()
    argv = [sys.executable, str(BENCH / "sfu_relay.py"), "--port", str(port)]
    argv += ["--rtc-ports", f"{RELAY_RTC[0]}-{RELAY_RTC[1]}"]
    relay = Child("mediarelay", argv, os.environ, args.worker_core, run.log_dir)
    run.children.append(relay)
    relay.start()
    await wait_http(relay, f"http://127.0.0.1:{port}/healthz", "ok")
    return relay, f"http://127.0.0.1:{port}"


async def users_and_rooms(
    args: argparse.Namespace, run: Run, base_url: str
) -> list[list[tuple[Doc, Client]]]:
    """Per room: P + 1 members (the last one joins late), each with a FastSock socket."""
    size = args.participants + 1
    regs = await register_users(run.api, args.rooms * size, f"sfu{secrets.token_hex(3)}")
    activity = Activity()
    rooms = []
    for r in range(args.rooms):
        members = regs[r * size : (r + 1) * size]
        room = await create_room(
            run.api, members[0], [m["user"]["id"] for m in members[1:]], f"call {r}"
        )
        rooms.append([(room, m) for m in members])

    async def connect(reg: Doc) -> Client:
        client = Client(reg["user"]["username"], reg["user"]["id"], reg["access_token"], activity)
        await client.connect(ws_url(base_url))
        run.sockets.append(client)
        return client

    clients = await gather_bounded(8, connect, regs)
    return [
        [
            (room, client)
            for (room, _), client in zip(members, clients[r * size : (r + 1) * size], strict=True)
        ]
        for r, members in enumerate(rooms)
    ]


# --- phases -------------------------------------------------------------------------------------


async def sfu_phase(
    args: argparse.Namespace,
    run: Run,
    clips: dict[str, Clip],
    rooms: list[list[tuple[Doc, Client]]],
    direct_inbox: Inbox,
) -> Doc:
    worker, worker_url = await start_worker(args, run, run.api.base)
    samples, direct = Samples(), Samples()
    direct_inbox.samples = direct
    publishers: dict[str, Publisher] = {}
    joined: dict[str, float] = {}  # publisher name -> its call.join
    peers: list[SfuPeer] = []
    for members in rooms:
        for i, (room, client) in enumerate(members[:-1]):
            publisher = Publisher.of(client.name, clips["video"], clips["audio"])
            publishers[client.user_id] = publisher
            peer = SfuPeer(
                client.name, client, publisher, publishers, clips, samples, decode=i < args.decoders
            )
            run.closers.append(peer)
            await peer.join(room["id"])
            joined[client.name] = peer.inbox.joined
            peers.append(peer)
    others = args.participants - 1
    for peer in peers:
        await expect(peer.name, peer.inbox, others, "first_at")
    await asyncio.sleep(args.warmup)
    metrics_url = worker_url + "/metrics"
    before = await scrape(metrics_url)
    inboxes = [p.inbox for p in peers] + [direct_inbox]
    window, deltas = await measure(args, run, worker.pid, [samples, direct], inboxes)
    after = await scrape(metrics_url)
    direct_ids = {id(s) for s in direct_inbox.video()}
    sfu_deltas = {k: v for k, v in deltas.items() if k not in direct_ids}
    result = {
        "window": window,
        "tracks": int(after.get("sfu_tracks_forwarded", 0)),
        "expected_tracks": 2 * args.rooms * args.participants * others,
        "sfu": latency(samples),
        "direct": latency(direct),
        "fps_received": fps(sfu_deltas, window, 0),
        "fps_decoded": fps({k: v for k, v in sfu_deltas.items() if v[1]}, window, 1),
        "fps_direct": fps({k: v for k, v in deltas.items() if k in direct_ids}, window, 0),
        "first": first_frames(peers, joined),
        "admission_s": [p.admission_s for p in peers],
        "metrics_window": {k: after.get(k, 0) - before.get(k, 0) for k in after},
    }
    first = len(peers)
    result["late"] = await late_joiners(args, run, clips, rooms, publishers, peers, worker.pid)
    result["streams"] = stream_totals(p.inbox for p in peers[:first])  # the late joins too
    result["errors"] = [e for p in peers for e in p.errors]  # late joiners' included
    result["metrics"] = await scrape(metrics_url)
    result["keyframes"] = {
        "sent": sum(p.video.keyframes for p in publishers.values()),
        "requested": sum(p.video.requests for p in publishers.values()),
    }
    await close_all(peers)
    return result


async def late_joiners(
    args: argparse.Namespace,
    run: Run,
    clips: dict[str, Clip],
    rooms: list[list[tuple[Doc, Client]]],
    publishers: dict[str, Publisher],
    peers: list[SfuPeer],
    worker_pid: int | None,
) -> Doc:
    """One decoding participant per room joins the running call: call.join -> first decoded
    frame of each publisher (who makes a keyframe only when the worker asks); and what other
    work took of the worker's and the peers' cores meanwhile."""
    out: Doc = {"decoded": [], "received": [], "admission": [], "joined": [], "errors": 0}
    others = args.participants  # everyone who was there publishes
    requests = sum(p.video.requests for p in publishers.values())
    start, started = load(run, worker_pid), time.monotonic()
    for members in rooms:
        room, client = members[-1]
        publisher = Publisher.of(client.name, clips["video"], clips["audio"])
        publishers[client.user_id] = publisher
        peer = SfuPeer(client.name, client, publisher, publishers, clips, Samples(), decode=True)
        run.closers.append(peer)
        peers.append(peer)
        await peer.join(room["id"])
        await expect(peer.name, peer.inbox, others, "first_decoded_at")
        for stream in peer.inbox.video():
            if stream.first_decoded_at is not None and stream.first_at is not None:
                out["decoded"].append(stream.first_decoded_at - peer.inbox.joined)
                out["received"].append(stream.first_at - peer.inbox.joined)
            out["errors"] += stream.errors.count + stream.garbled + stream.undecodable
        out["admission"].append(peer.admission_s)
        out["joined"].append(peer.joined_s)
    out["keyframe_requests"] = sum(p.video.requests for p in publishers.values()) - requests
    took = Window(
        time.monotonic() - started,
        *(b - a for a, b in zip(start, load(run, worker_pid), strict=True)),
    )
    out["others_pct"] = [took.others_pct, took.peers_others_pct]
    return out


async def baseline_phase(
    args: argparse.Namespace,
    run: Run,
    clips: dict[str, Clip],
    direct_inbox: Inbox,
) -> Doc:
    relay, url = await start_relay(args, run)
    samples, direct = Samples(), Samples()
    direct_inbox.samples = direct
    publisher = Publisher.of("baseline", clips["video"], clips["audio"])
    run.closers.append(await relay_publish(url, "r1", publisher))
    inboxes = []
    for _ in range(args.baseline_subscribers):
        pc, inbox = await relay_subscribe(url, "r1", publisher, clips, samples)
        run.closers.extend([pc, inbox])
        inboxes.append(inbox)
    for n, inbox in enumerate(inboxes):
        await expect(f"baseline subscriber {n}", inbox, 1, "first_decoded_at")
    await asyncio.sleep(args.warmup)
    window, deltas = await measure(
        args, run, relay.pid, [samples, direct], [*inboxes, direct_inbox]
    )
    relay_ids = {id(s) for i in inboxes for s in i.video()}
    return {
        "window": window,
        "tracks": 2 * args.baseline_subscribers,
        "relay": latency(samples),
        "direct": latency(direct),
        "fps_decoded": fps({k: v for k, v in deltas.items() if k in relay_ids}, window, 1),
        "fps_direct": fps({k: v for k, v in deltas.items() if k not in relay_ids}, window, 0),
        "streams": stream_totals(inboxes),
    }


async def close_all(closers: Iterable[Any]) -> None:
    """Close peers and connections; whatever has not closed within CLOSE_TIMEOUT_S is left
    (the processes behind them are stopped anyway)."""
    tasks = [asyncio.ensure_future(c.close()) for c in closers]
    if tasks:
        await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_S)


async def run(args: argparse.Namespace, base_url: str, server: ServerProcess | None) -> Doc:
    load = os.getloadavg()[0]
    started = time.monotonic()
    configure_ice(ips=("127.0.0.1",), public_ip=None, min_port=PEER_RTC[0], max_port=PEER_RTC[1])
    frames = int(args.clip_s * args.fps)
    clips = {
        "video": video_clip(frames, args.width, args.height, args.fps, args.bitrate),
        "audio": audio_clip(int(args.clip_s * 50)),
    }
    log_dir = Path(tempfile.mkdtemp(prefix="fastsock-bench-sfu-"))
    state = Run(Api(base_url), log_dir, args, server.pid if server else None)
    try:
        await state.api.wait_ready(server)
        rooms = await users_and_rooms(args, state, base_url)
        direct = Publisher.of("direct", clips["video"], clips["audio"])
        sending, receiving, direct_inbox = await direct_pair(direct, clips, Samples())
        state.closers.extend([direct_inbox, sending, receiving])
        forwarding = await sfu_phase(args, state, clips, rooms, direct_inbox)
        baseline = None
        if args.baseline_subscribers:
            baseline = await baseline_phase(args, state, clips, direct_inbox)
        return {
            **machine(load, base_url, server),
            "args": vars(args),
            "clip_kbps": {k: round(c.bitrate / 1000) for k, c in clips.items()},
            "sfu": forwarding,
            "baseline": baseline,
            "total_s": round(time.monotonic() - started, 1),
        }
    except BaseException:
        for child in state.children:  # run_main prints the error and FastSock's log
            print(f"--- end of the {child.name} log:\n{child.log_tail()}", file=sys.stderr)
        raise
    finally:
        try:
            await close_all(state.closers)
        finally:
            for client in state.sockets:
                client.close()
            for child in state.children:
                child.stop()
            state.api.close()
            shutil.rmtree(log_dir, ignore_errors=True)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rooms", type=int, default=3, help="calls on the worker")
    p.add_argument("--participants", type=int, default=4, help="per call, all publishing")
    p.add_argument(
        "--decoders", type=int, default=1, help="participants per call that also decode video"
    )
    p.add_argument("--seconds", type=float, default=15.0, help="measured window per phase")
    p.add_argument("--warmup", type=float, default=3.0, help="before each window")
    p.add_argument(
        "--baseline-subscribers",
        type=int,
        help=f"default: participants - 1 (the SFU's fan-out), at most {BASELINE_MAX}; 0: none",
    )
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--bitrate", type=int, default=1_000_000, help="video clip, bits/s")
    p.add_argument("--clip-s", type=float, default=30.0, help="clip length (no keyframe within)")
    p.add_argument("--worker-core", type=int, help="default: the first core this may use")
    p.add_argument("--peer-core", type=int, help="default: the second one")
    p.add_argument("--strict", action="store_true", help="exit 1 also when a target is missed")
    p.add_argument("--port", type=int, help="port for the started FastSock (default: free)")
    p.add_argument("--timeout", type=float, default=600.0, help="overall limit in seconds")
    p.set_defaults(url=None)  # run_main's --url: this bench always starts its own FastSock
    args = p.parse_args()
    if args.rooms < 1 or not 2 <= args.participants <= 63:
        p.error("--rooms must be >= 1 and --participants 2..63 (FastSock's call size limit: 64)")
    if args.baseline_subscribers is None:
        args.baseline_subscribers = min(args.participants - 1, BASELINE_MAX)
    if args.seconds <= 0 or args.warmup < 0 or args.baseline_subscribers < 0:
        p.error("--seconds must be > 0, --warmup and --baseline-subscribers >= 0")
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        args.worker_core = args.peer_core = None  # one core: nothing to pin
        return args
    args.worker_core = cores[0] if args.worker_core is None else args.worker_core
    args.peer_core = cores[1] if args.peer_core is None else args.peer_core
    if {args.worker_core, args.peer_core} - set(cores) or args.worker_core == args.peer_core:
        p.error(f"--worker-core and --peer-core must be two different cores of {cores}")
    return args


def main() -> int:
    args = parse_args()
    if args.peer_core is not None:
        os.sched_setaffinity(0, {args.peer_core})  # before any thread: they all inherit it
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("aiortc").setLevel(logging.ERROR)  # decode failures are counted instead
    env = {
        "FASTSOCK_SFU_SECRET": SECRET,
        "FASTSOCK_CALL_MAX_PARTICIPANTS": str(args.participants + 1),
        **limit_env({**SETUP_LIMITS, "CALL_JOINS_PER_MIN": "100000"}),
    }

    async def measured(a: argparse.Namespace, base_url: str, server: ServerProcess | None) -> Doc:
        return figures(await run(a, base_url, server))

    return run_main(args, measured, report, failed, env)


if __name__ == "__main__":
    sys.exit(main())
