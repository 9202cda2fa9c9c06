"""`python -m sfu` / `fastsock-sfu`: run one SFU worker (docs/operations.md, "SFU workers").

Settings come from SFU_* variables (tracing: the OTEL_* ones, as FastSock's); a bad one, or
aiortc internals that moved, stop the start with one line on stderr and exit status 2. SIGTERM
drains (no new joins, FastSock moves the calls, then exit 0); SIGINT stops at once (FastSock
still moves the calls)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from fastsock import logs, tracing
from fastsock.config_values import ConfigError
from fastsock.open_files import raise_open_files_limit
from sfu.config import SfuSettings, load_sfu_settings


async def _run(settings: SfuSettings, traces: tracing.TracingConfig) -> int:
    from sfu.app import Worker
    from sfu.ice import configure_ice

    configure_ice(
        ips=settings.rtc_ips,
        public_ip=settings.rtc_public_ip,
        min_port=settings.rtc_min_port,
        max_port=settings.rtc_max_port,
    )
    worker = Worker(settings)
    tracing.setup(traces, "fastsock-sfu")  # OTEL_* as for FastSock: joins get spans
    await worker.start()
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    def on_signal(action: str) -> None:
        task = asyncio.ensure_future(worker.drain() if action == "drain" else worker.stop())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    loop.add_signal_handler(signal.SIGTERM, on_signal, "drain")
    loop.add_signal_handler(signal.SIGINT, on_signal, "stop")
    print(
        f"SFU worker {worker.id} listening on {settings.host}:{settings.port} "
        f"(clients connect to {settings.public_url})",
        flush=True,
    )
    await worker.finished
    await asyncio.to_thread(tracing.shutdown)  # exports what is buffered
    return 0


def main() -> None:
    try:
        settings = load_sfu_settings()
        traces = tracing.load_config()
    except ConfigError as exc:
        print(f"sfu: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    from sfu.internals import InternalsMismatch, check_internals

    try:
        check_internals()
    except InternalsMismatch as exc:
        print(exc, file=sys.stderr)  # one line, "sfu: ..." already
        sys.exit(2)
    logs.setup(settings.log_level)  # FastSock's format: one JSON object per line on stderr
    raise_open_files_limit()  # aiortc: one UDP socket per peer
    # aiortc and aioice log every ICE check and RTCP packet at INFO.
    for noisy in ("aiortc", "aioice"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        sys.exit(asyncio.run(_run(settings, traces)))
    except OSError as exc:
        print(f"sfu: cannot start: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
