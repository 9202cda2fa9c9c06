"""The open-file limit (fastsock/open_files.py): FastSock and an SFU worker started with a soft
RLIMIT_NOFILE below the hard one (as containers often start them) raise it to the hard one, and
FastSock bounds its connections by the raised limit."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.sfu.conftest import SFU_SECRET
from tests.sfu.workers import SfuWorker

pytestmark = pytest.mark.once  # no store-dependent behaviour
START_TIMEOUT_S = 60.0  # the SFU imports aiortc first; a loaded 2-core machine

HARD = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
LOW = min(256, HARD // 2)  # the soft limit each process is started with


def run_with_low_limit(module: str, *args: str) -> list[str]:
    """`python -m module args` whose soft limit is set to LOW before anything else runs."""
    start = (
        "import resource, runpy, sys; "
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({LOW}, {HARD})); "
        f"sys.argv = [{module!r}, *{list(args)!r}]; "
        f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)"
    )
    return [sys.executable, "-c", start]


async def log_lines_until(
    proc: asyncio.subprocess.Process, event: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read the process's JSON log lines (stderr) up to the first `event`: (it, all of them)."""
    assert proc.stderr is not None
    deadline = time.monotonic() + START_TIMEOUT_S
    seen: list[dict[str, Any]] = []
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {event} within {START_TIMEOUT_S}s: {seen}"
        line = await asyncio.wait_for(proc.stderr.readline(), remaining)
        assert line, f"exited ({await proc.wait()}) before {event}: {seen}"
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # not a log line
        seen.append(entry)
        if entry.get("event") == event:
            return entry, seen


def raised(lines: list[dict[str, Any]]) -> dict[str, Any]:
    [entry] = [e for e in lines if e.get("event") == "open_files_limit_raised"]
    return entry


async def stop(proc: asyncio.subprocess.Process, sig: int) -> None:
    if proc.returncode is None:
        proc.send_signal(sig)
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def test_fastsock_raises_its_soft_limit_to_the_hard_one(tmp_path: Path) -> None:
    assert LOW < HARD, "the test needs a hard limit above the soft one it starts with"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "FASTSOCK_"))}
    env |= {"FASTSOCK_DATA_DIR": str(tmp_path), "FASTSOCK_PORT": "0", "FASTSOCK_HOST": "127.0.0.1"}
    proc = await asyncio.create_subprocess_exec(
        *run_with_low_limit("fastsock", "serve"),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        started, lines = await log_lines_until(proc, "server_started")
        assert started["open_files_limit"] == HARD
        assert started["max_connections"] > LOW  # bounded by the raised limit, not LOW
        entry = raised(lines)
        assert (entry["from"], entry["to"]) == (LOW, HARD)
    finally:
        await stop(proc, signal.SIGTERM)


async def test_an_sfu_worker_raises_its_soft_limit_to_the_hard_one() -> None:
    assert LOW < HARD, "the test needs a hard limit above the soft one it starts with"
    # Nothing answers at the control URL: the worker is stopped once it has logged the limit.
    settings = SfuWorker("http://127.0.0.1:9", SFU_SECRET).env
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SFU_"))}
    proc = await asyncio.create_subprocess_exec(
        *run_with_low_limit("sfu"),
        env=env | settings,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        entry, _ = await log_lines_until(proc, "open_files_limit_raised")
        assert (entry["from"], entry["to"]) == (LOW, HARD)
    finally:
        await stop(proc, signal.SIGINT)
