"""The MongoDB stand-in the Mongo backend is tested against: mongoeco's wire server, run as a
child process on loopback (its memory engine; its SQLite engine where a test restarts it).

`EmbeddedMongo` starts `python -m tests.mongo_standin`, which binds a free port, prints
`LISTENING <port>` and serves until it is told to stop (SIGTERM/SIGINT) or its parent goes away
(stdin closes). If the child dies unexpectedly the parent restarts it on the same port, so the
app recovers the way it would from a MongoDB restart.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

log = logging.getLogger("tests.mongo_standin")
ROOT = Path(__file__).resolve().parents[1]  # the checkout, so `-m tests.mongo_standin` imports

READY_PREFIX = "LISTENING "
START_TIMEOUT_S = 30.0


class EmbeddedMongo:
    def __init__(self, *, sqlite_path: Path | None, host: str = "127.0.0.1", port: int = 0) -> None:
        """`sqlite_path=None` runs the in-memory engine (tests)."""
        self.sqlite_path = sqlite_path
        self.host = host
        self.port = port
        self._proc: asyncio.subprocess.Process | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._stopping = False

    def uri_for(self, database: str) -> str:
        return f"mongodb://{self.host}:{self.port}/{database}?directConnection=true"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def start(self) -> None:
        self._stopping = False
        await self._spawn()
        self._watchdog = asyncio.create_task(self._watch())

    async def _spawn(self) -> None:
        args = [sys.executable, "-m", "tests.mongo_standin", "--host", self.host]
        args += ["--port", str(self.port)]
        if self.sqlite_path is not None:
            args += ["--sqlite", str(self.sqlite_path)]
        proc = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT
        )
        self._proc = proc
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT_S)
        except TimeoutError:
            line = b""
        text = line.decode(errors="replace").strip()
        if not text.startswith(READY_PREFIX):
            await self._terminate(proc)
            raise RuntimeError(f"MongoDB stand-in did not start (exit {proc.returncode})")
        self.port = int(text.removeprefix(READY_PREFIX))

    async def _watch(self) -> None:
        delay = 0.5
        while not self._stopping:
            assert self._proc is not None
            code = await self._proc.wait()
            if self._stopping:
                return
            log.error("MongoDB stand-in exited (code %s); restarting", code)
            await asyncio.sleep(delay)
            try:
                await self._spawn()
                delay = 0.5
            except (RuntimeError, OSError):
                log.exception("MongoDB stand-in restart failed")
                delay = min(delay * 2, 10.0)

    async def stop(self) -> None:
        self._stopping = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None
        if self._proc is not None:
            await self._terminate(self._proc)
            self._proc = None

    @staticmethod
    async def _terminate(proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()


class _ParentWatch(asyncio.Protocol):
    def __init__(self, stop: asyncio.Event) -> None:
        self.stop = stop

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop.set()


async def _serve(host: str, port: int, sqlite_path: str | None) -> None:
    from mongoeco.engines.memory import MemoryEngine
    from mongoeco.engines.sqlite import SQLiteEngine
    from mongoeco.wire import AsyncMongoEcoProxyServer

    engine = SQLiteEngine(path=sqlite_path) if sqlite_path else MemoryEngine()
    server = AsyncMongoEcoProxyServer(engine=engine, host=host, port=port)
    address = await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    # stdin is a pipe from the parent: when it closes, the parent has gone.
    await loop.connect_read_pipe(lambda: _ParentWatch(stop), sys.stdin)
    print(f"{READY_PREFIX}{address.port}", flush=True)
    await stop.wait()
    await server.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="MongoDB wire stand-in for FastSock's tests")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--sqlite", help="SQLite file; omitted: in-memory engine")
    args = parser.parse_args(argv)
    if args.sqlite:
        Path(args.sqlite).parent.mkdir(parents=True, exist_ok=True)
    asyncio.run(_serve(args.host, args.port, args.sqlite))


if __name__ == "__main__":
    main()
