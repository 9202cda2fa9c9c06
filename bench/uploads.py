"""Upload throughput and the server's peak memory while receiving uploads.

Phases: one upload of each size in --sizes-mib (default 5 and 25 MiB), then --parallel (10)
uploads of the largest size at once. For each phase it prints MiB/s and how far the server
process's resident memory rose above its level before the phase (peak RSS, from
/proc/<pid>/status VmHWM after resetting it through /proc/<pid>/clear_refs). Bodies are
streamed from files on disk, so the client holds none of them in memory either.

With --images: the worst cases of image processing instead (small files that decode to
--megapixels, the server's limit: a JPEG, the same turned by its EXIF, an RGBA PNG, a GIF,
a WebP and one of half the pixels, an animated GIF), one at a time, then --parallel turned
JPEGs at once; each with its answer and the server's RSS before, at its peak and after.

    .venv/bin/python bench/uploads.py [--sizes-mib 5 25] [--parallel 10] [--url URL]
    .venv/bin/python bench/uploads.py --images [--megapixels 40] [--parallel 4]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from PIL import ExifTags, Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Api, Doc, add_target_args, emit, machine, register_users, run_main
from errors import BenchError
from processes import ServerProcess

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


def post_file(base_url: str, token: str, path: Path, content_type: str) -> tuple[int, Doc]:
    """POST one file with a streamed body (blocking; run in a thread): (status, answer)."""
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
                    "Content-Type": content_type,
                    "Content-Length": str(path.stat().st_size),
                },
            )
        resp = conn.getresponse()
        payload = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(payload)
    except ValueError:
        raise BenchError(f"upload -> {resp.status}: {payload[:200]!r}") from None


def _flat(mode: str, size: tuple[int, int]) -> Image.Image:
    return Image.new(mode, size, 7 if mode == "P" else (20, 120, 200, 255)[: len(mode)])


def _turned() -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # shown turned by 90 degrees: the server turns it
    return exif


def _animation(size: tuple[int, int], path: Path) -> None:
    frames = [Image.new("P", size, i) for i in range(3)]
    frames[0].save(path, "GIF", save_all=True, append_images=frames[1:], duration=100)


# label: (content type, share of --megapixels, write a sample of that size)
IMAGE_CASES: dict[str, tuple[str, float, Callable[[tuple[int, int], Path], None]]] = {
    "JPEG": ("image/jpeg", 1, lambda size, path: _flat("RGB", size).save(path, "JPEG")),
    "JPEG turned by EXIF": (
        "image/jpeg",
        1,
        lambda size, path: _flat("RGB", size).save(path, "JPEG", exif=_turned()),
    ),
    "PNG RGBA": ("image/png", 1, lambda size, path: _flat("RGBA", size).save(path, "PNG")),
    "GIF": ("image/gif", 1, lambda size, path: _flat("P", size).save(path, "GIF")),
    "WebP": (
        "image/webp",
        1,
        lambda size, path: _flat("RGB", size).save(path, "WEBP", lossless=True),
    ),
    "WebP, half the pixels": (
        "image/webp",
        0.5,
        lambda size, path: _flat("RGB", size).save(path, "WEBP", lossless=True),
    ),
    "animated GIF, 3 frames of a third": ("image/gif", 1 / 3, _animation),
}
WORST_CASE = "JPEG turned by EXIF"


def make_images(directory: Path, megapixels: float) -> dict[str, tuple[Path, str]]:
    """One sample per IMAGE_CASES entry, 4:3 canvases of (a share of) `megapixels`."""
    samples = {}
    for i, (label, (content_type, share, write)) in enumerate(IMAGE_CASES.items()):
        pixels = megapixels * share * 1_000_000
        width = int(math.sqrt(pixels * 4 / 3))
        path = directory / f"image-{i}"
        write((width, int(pixels) // width), path)
        samples[label] = (path, content_type)
    return samples


def upload(base_url: str, token: str, path: Path) -> Doc:
    status, answer = post_file(base_url, token, path, "application/zip")
    if status != 201:
        raise BenchError(f"upload -> {status}: {answer}")
    return answer


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


async def image_phase(
    name: str, base_url: str, token: str, files: list[tuple[Path, str]], pid: int | None
) -> Doc:
    if pid is not None:
        reset_peak(pid)
        rss_before, _ = memory_kib(pid)
    started = time.perf_counter()
    answers = await asyncio.gather(
        *(asyncio.to_thread(post_file, base_url, token, path, kind) for path, kind in files)
    )
    result: Doc = {
        "phase": name,
        "file_kib": round(files[0][0].stat().st_size / 1024, 1),
        "statuses": [status for status, _ in answers],
        "seconds": round(time.perf_counter() - started, 3),
    }
    refusals = [answer["error"]["message"] for status, answer in answers if status != 201]
    if refusals:
        result["refused"] = refusals[0]
    if pid is not None:
        rss_after, peak = memory_kib(pid)
        result |= {
            "rss_before_mib": round(rss_before / 1024, 1),
            "peak_rise_mib": round((peak - rss_before) / 1024, 1),
            "peak_mib": round(peak / 1024, 1),
            "rss_after_mib": round(rss_after / 1024, 1),
        }
    return result


async def run_images(args: argparse.Namespace, base_url: str, token: str, pid: int | None) -> Doc:
    with tempfile.TemporaryDirectory(prefix="fastsock-bench-img-") as tmp:
        samples = await asyncio.to_thread(make_images, Path(tmp), args.megapixels)
        small = Path(tmp) / "warm-up.png"
        _flat("RGB", (64, 48)).save(small, "PNG")
        await image_phase("warm-up", base_url, token, [(small, "image/png")], pid)
        phases = [
            await image_phase(label, base_url, token, [sample], pid)
            for label, sample in samples.items()
        ]
        phases.append(
            await image_phase(
                f"{args.parallel} x {WORST_CASE} in parallel",
                base_url,
                token,
                [samples[WORST_CASE]] * args.parallel,
                pid,
            )
        )
    return {"megapixels": args.megapixels, "phases": phases}


async def run(args: argparse.Namespace, base_url: str, server: ServerProcess | None) -> Doc:
    api = Api(base_url)
    try:
        await api.wait_ready(server)
        user = (await register_users(api, 1, f"up{os.getpid()}"))[0]
    finally:
        api.close()
    token = user["access_token"]
    pid = server.pid if server is not None else None
    if args.images:
        images = await run_images(args, base_url, token, pid)
        return {**machine(os.getloadavg()[0], base_url, server), **images}
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
    if "megapixels" in result:
        lines.append(f"megapixels: {result['megapixels']}")
    for p in result["phases"]:
        if "statuses" in p:  # --images
            line = f"{p['phase']} ({p['file_kib']} KiB): {p['statuses']} in {p['seconds']} s"
            if "refused" in p:
                line += f" ({p['refused']})"
        else:
            line = f"{p['phase']}: {p['mib']} MiB in {p['seconds']} s = {p['mib_per_s']} MiB/s"
        if "peak_mib" in p:
            line += (
                f"; server RSS {p['rss_before_mib']} -> peak {p['peak_mib']} (+"
                f"{p['peak_rise_mib']}) -> {p['rss_after_mib']} MiB"
            )
        elif "peak_rise_mib" in p:
            line += f"; server RSS {p['rss_before_mib']} MiB, peak rise {p['peak_rise_mib']} MiB"
        lines.append(line)
    emit(lines, result)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes-mib", type=float, nargs="+", default=[5, 25])
    parser.add_argument("--parallel", type=int, help="uploads at once (10; with --images 4)")
    parser.add_argument("--images", action="store_true", help="image processing instead")
    parser.add_argument("--megapixels", type=float, default=40, help="with --images: the limit")
    add_target_args(parser, timeout=600)
    args = parser.parse_args()
    if args.parallel is None:
        args.parallel = 4 if args.images else 10
    env = ENV
    if args.images:  # the started server's limit (FASTSOCK_MAX_IMAGE_MEGAPIXELS) is the samples'
        env = {**ENV, "FASTSOCK_MAX_IMAGE_MEGAPIXELS": f"{args.megapixels:g}"}
    return run_main(args, run, report, lambda _: False, env=env)


if __name__ == "__main__":
    sys.exit(main())
