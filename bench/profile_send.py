"""Profile FastSock's send and fan-out path during bench/fanout.py's probe.

Runs one round of the probe (fanout.py's options: --members, --senders, --paced,
--messages...) against FastSock only, its server process under pyinstrument for each timed
phase (not during the setup and the connects), and prints per phase the functions with the
most self time and the FastSock functions with the most total time, in milliseconds per
message sent (one message is one `message.send` fanned out to every member). The event
loop's thread only: the database threads run SQLite, in C, while the loop waits; `epoll.poll`
is the loop waiting for work (idle). Profiling slows the server: compare profiles with each
other, not with fanout.py's figures.

    .venv/bin/python bench/profile_send.py                 # the probe's defaults, top 25
    .venv/bin/python bench/profile_send.py --top 40 --tree # and pyinstrument's call tree
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import FrameType

import fanout
from common import Doc, emit, run_servers
from errors import BenchError
from fanout_servers import Target, fastsock_target
from processes import ServerProcess
from pyinstrument import Profiler
from pyinstrument.frame import Frame
from pyinstrument.renderers import ConsoleRenderer
from pyinstrument.session import Session

INTERVAL_S = 0.0002  # pyinstrument's sampling interval
SAVE_TIMEOUT_S = 30.0
WAITING = {"epoll.poll", "select.select", "poll.poll", "kqueue.control"}  # the loop is idle


# --- in the server process ------------------------------------------------------------------


def serve(out_dir: Path) -> None:
    """`fastsock serve`, profiled between SIGUSR1 and SIGUSR2; each profile is saved as
    <n>.json in `out_dir` (1, 2, ... in the order taken)."""
    from fastsock.__main__ import main

    profiler: Profiler | None = None
    taken = 0

    def start(signum: int, frame: FrameType | None) -> None:
        nonlocal profiler
        profiler = Profiler(interval=INTERVAL_S, async_mode="disabled")
        profiler.start()

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal profiler, taken
        if profiler is None:
            return
        session = profiler.stop()
        profiler, taken = None, taken + 1
        path = out_dir / f"{taken}.json"
        session.save(str(path.with_suffix(".tmp")))
        path.with_suffix(".tmp").rename(path)  # whole, or not there yet

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    main(["serve"])


# --- in the driver --------------------------------------------------------------------------


def frames(
    frame: Frame, ancestors: frozenset[str] = frozenset()
) -> Iterator[tuple[str, Frame, bool]]:
    """(key, frame, outermost) for every real frame of the tree; `outermost` is False for a
    frame of a function already on the stack above it (so recursion counts once)."""
    for child in frame.children:
        if child.is_synthetic:
            continue
        key = f"{child.function} ({child.file_path_short}:{child.line_no})"
        yield key, child, key not in ancestors
        yield from frames(child, ancestors | {key})


def summary(path: Path, messages: int, top: int, tree: bool) -> Doc:
    """The profile's top functions by self time and FastSock's by total time, ms/message."""
    session = Session.load(str(path))
    root = session.root_frame()
    selfs: dict[str, float] = {}
    totals: dict[str, float] = {}
    if root is not None:
        selfs[root.function] = root.total_self_time
        for key, frame, outermost in frames(root):
            selfs[key] = selfs.get(key, 0.0) + frame.total_self_time
            if outermost and "fastsock/" in (frame.file_path or ""):
                totals[key] = totals.get(key, 0.0) + frame.time
    per = 1000 / messages

    def ranked(times: dict[str, float]) -> list[list[object]]:
        best = sorted(times.items(), key=lambda kv: kv[1], reverse=True)[:top]
        return [[key, round(t * per, 3)] for key, t in best]

    idle = sum(t for key, t in selfs.items() if key.split(" ")[0] in WAITING)
    out: Doc = {
        "duration_s": round(session.duration, 3),
        "samples": session.sample_count,
        "messages": messages,
        "ms_per_message": round(session.duration * per, 3),
        "idle_ms_per_message": round(idle * per, 3),
        "self": ranked(selfs),
        "total": ranked(totals),
    }
    if tree:
        renderer = ConsoleRenderer(unicode=True, color=False, show_all=False, time="seconds")
        out["tree"] = renderer.render(session)
    return out


def report(r: Doc) -> None:
    fanout.report(r)
    for name, prof in r["profiles"].items():
        lines = [
            f"profile {name}: {prof['duration_s']} s, {prof['samples']} samples,"
            f" {prof['messages']} messages: {prof['ms_per_message']} ms of the loop's time"
            f" per message, {prof['idle_ms_per_message']} idle",
            "  self ms/message:",
            *(f"    {t:8.3f}  {key}" for key, t in prof["self"]),
            "  FastSock total ms/message:",
            *(f"    {t:8.3f}  {key}" for key, t in prof["total"]),
        ]
        print("\n".join(lines))
        if "tree" in prof:
            print(prof.pop("tree"))
    emit([], r)


@contextlib.asynccontextmanager
async def profiled_target(
    args: argparse.Namespace, servers: list[ServerProcess], command: list[str]
) -> AsyncIterator[Target]:
    """FastSock served by `serve`, told by signal when each phase starts and ends."""
    async with fastsock_target(args, servers, command) as target:
        pid = target.pids[0]
        target.on_phase = lambda _, starts: os.kill(pid, SIGNALS[starts])
        yield target


SIGNALS = {True: signal.SIGUSR1, False: signal.SIGUSR2}


def saved(path: Path) -> Path:
    """The profile the server saves once told the phase ended."""
    deadline = time.monotonic() + SAVE_TIMEOUT_S
    while not path.exists():
        if time.monotonic() > deadline:
            raise BenchError(f"the server saved no profile at {path}")
        time.sleep(0.1)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--serve", type=Path)
    p.add_argument("--top", type=int, default=25, help="functions listed per ranking")
    p.add_argument("--tree", action="store_true", help="also print pyinstrument's call tree")
    own, rest = p.parse_known_args(argv)
    if own.serve is not None:
        serve(own.serve)
        return 0
    args = fanout.parse_args([*rest, "--servers", "fastsock", "--repeat", "1"])
    if args.url:
        print("error: profile_send.py starts its own server (no --url)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="fastsock-profile-") as out:
        command = [sys.executable, str(Path(__file__).resolve()), "--serve", out]
        start = functools.partial(profiled_target, command=command)

        async def profiled(servers: list[ServerProcess]) -> Doc:
            result = await fanout.run(args, servers, {"fastsock": start})
            counts = {"paced": args.paced, "burst": args.messages}
            result["profiles"] = {
                name: summary(saved(Path(out) / f"{n}.json"), counts[name], own.top, own.tree)
                for n, name in enumerate(counts, 1)
            }
            return result

        return run_servers(args.timeout, profiled, report, fanout.failed)


if __name__ == "__main__":
    sys.exit(main())
