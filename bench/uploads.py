"""Upload throughput and the server's peak memory while receiving uploads.

Phases: one upload of each size in --sizes-mib (default 5 and 25 MiB), then --parallel (10)
uploads of the largest size at once. For each phase it prints MiB/s and how far the server
process's resident memory rose above its level before the phase (peak RSS, from
/proc/<pid>/status VmHWM after resetting it through /proc/<pid>/clear_refs). Bodies are
streamed from files on disk, so the client holds none of them in memory either.

    .venv/bin/python bench/uploads.py [--sizes-mib 5 25] [--parallel 10] [--url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    Api,
    BenchError,
    Doc,
    ServerProcess,
    add_target_args,
    emit,
    machine,
    register_users,
    run_main,
)

MIB = 1024 * 1024
# The embedded server's limit is 25 MiB; the largest sample stays just under it.
UPLOAD_LIMIT = 25 * MIB
# Generous upload rate for the run, so the limiter (30/min) is not what is measured.
ENV = {"FASTSOCK_LIMIT_UPLOADS_PER_MIN": "10000"}


def make_sample(directory: Path, size: int) -> Path:
    """A file the server accepts as application/zip: the ZIP signature, then random bytes."""
    path = directory / f"sample-{size}.zip"
    with path.open("wb") as f:
        f.write(b"PK\x03\x04")
        remaining = size - 4
        while remaining > 0:
            chunk = os.urandom(min(MIB, remaining))
            f.write(chunk)
            remaining -= len(chunk)
    return path


def upload(base_url: str, token: str, path: Path) -> Doc:
    """POST one file with a streamed body (blocking; run in a thread)."""
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    try:
        with path.open("rb") as body:
            conn.request(
                "POST",
                f"/uploads?filename={path.name}",
                body=body,
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "application/zip",
                    "Content-Length": str(path.stat().st_size),
                },
            )
        resp = conn.getresponse()
        payload = resp.read()
    finally:
        conn.close()
    if resp.status != 201:
        raise BenchError(f"upload -> {resp.status}: {payload[:200]!r}")
    return json.loads(payload)


def memory_kib(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS since the last reset) of a process, in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # Linux: reset VmHWM to the current RSS


async def phase(name: str, base_url: str, token: str, files: list[Path], pid: int | None) -> Doc:
    if pid is not None:
        reset_peak(pid)
        rss_before, _ = memory_kib(pid)
    started = time.perf_counter()
    views = await asyncio.gather(*(asyncio.to_thread(upload, base_url, token, f) for f in files))
    elapsed = time.perf_counter() - started
    total = sum(v["size"] for v in views)
    result: Doc = {
        "phase": name,
        "files": len(files),
        "mib": round(total / MIB, 1),
        "seconds": round(elapsed, 3),
        "mib_per_s": round(total / MIB / elapsed, 1),
    }
    if pid is not None:
        _, peak = memory_kib(pid)
        result |= {
            "rss_before_mib": round(rss_before / 1024, 1),
            "peak_rise_mib": round((peak - rss_before) / 1024, 1),
        }
    return result


async def run(args: argparse.Namespace, base_url: str, server: ServerProcess | None) -> Doc:
    api = Api(base_url)
    try:
        await api.wait_ready(server)
        user = (await register_users(api, 1, f"up{os.getpid()}"))[0]
    finally:
        api.close()
    token = user["access_token"]
    pid = server.pid if server is not None else None
    with tempfile.TemporaryDirectory(prefix="fastsock-bench-up-") as tmp:
        sizes = [min(int(s * MIB), UPLOAD_LIMIT - 1024) for s in args.sizes_mib]
        samples = {size: make_sample(Path(tmp), size) for size in sizes}
        phases = []
        await phase("warm-up", base_url, token, [samples[min(sizes)]], pid)
        for size in sizes:
            phases.append(
                await phase(f"1 x {size / MIB:.0f} MiB", base_url, token, [samples[size]], pid)
            )
        largest = samples[max(sizes)]
        phases.append(
            await phase(
                f"{args.parallel} x {max(sizes) / MIB:.0f} MiB in parallel",
                base_url,
                token,
                [largest] * args.parallel,
                pid,
            )
        )
    return {**machine(os.getloadavg()[0], base_url, server), "phases": phases}


def report(result: Doc) -> None:
    lines = [
        f"python: {result['python']}",
        f"cpus: {result['cpus']}",
        f"load average 1m at start: {result['loadavg_1m']}",
        f"server: {result['server']}",
    ]
    for p in result["phases"]:
        line = f"{p['phase']}: {p['mib']} MiB in {p['seconds']} s = {p['mib_per_s']} MiB/s"
        if "peak_rise_mib" in p:
            line += f"; server RSS {p['rss_before_mib']} MiB, peak rise {p['peak_rise_mib']} MiB"
        lines.append(line)
    emit(lines, result)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes-mib", type=float, nargs="+", default=[5, 25])
    parser.add_argument("--parallel", type=int, default=10)
    add_target_args(parser, timeout=600)
    args = parser.parse_args()
    return run_main(args, run, report, lambda _: False, env=ENV)


if __name__ == "__main__":
    sys.exit(main())
