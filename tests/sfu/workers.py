"""Real SFU worker processes (`python -m sfu`) for tests.

    async with SfuWorker(control_url, secret, capacity=4) as worker:   # registered when it begins
        worker.url            # "ws://127.0.0.1:PORT/ws" (what clients connect to)
        worker.id             # its worker id (from /healthz)
        await worker.health() # its /healthz
        worker.terminate()    # SIGTERM: drain;  worker.interrupt(): SIGINT;  worker.kill(): SIGKILL
        worker.pause()        # SIGSTOP (frozen);  worker.resume(): SIGCONT
        await worker.wait_exit()  # its exit status
        worker.log()          # what it printed (for failure messages)
    # killed if still running, its files removed

Keyword arguments are further settings, named without the SFU_ prefix (`capacity=4` is
SFU_CAPACITY=4). Each worker gets its own HTTP port and its own RTC UDP port range (below
aioice's client range in tests/sfu/media.loopback_ice), ICE on 127.0.0.1 only. The process
needs FastSock (or a stand-in) answering at `control_url` to register: start that first.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from tornado.httpclient import AsyncHTTPClient

from tests.coturn import free_port

START_TIMEOUT_S = 30.0  # importing aiortc and registering, on a loaded 2-core machine
STOP_TIMEOUT_S = 10.0
# RTC port ranges: a block per worker, per test process (pid), below 32768 (the kernel's
# ephemeral ports) and below the clients' range.
RTC_BASE, RTC_BLOCK, BLOCKS = 20000, 64, 12
_blocks = itertools.count()


def _rtc_range() -> tuple[int, int]:
    block = (os.getpid() % 16) * BLOCKS + next(_blocks) % BLOCKS
    low = RTC_BASE + block * RTC_BLOCK
    return low, low + RTC_BLOCK - 1


class SfuWorker:
    def __init__(self, control_url: str, secret: str, **settings: object) -> None:
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/ws"
        self.health_url = f"http://127.0.0.1:{self.port}/healthz"
        low, high = _rtc_range()
        self.env = {
            "SFU_PUBLIC_URL": self.url,
            "SFU_HOST": "127.0.0.1",
            "SFU_PORT": str(self.port),
            "SFU_CONTROL_URL": control_url,
            "SFU_SECRET": secret,
            "SFU_RTC_IPS": "127.0.0.1",
            "SFU_RTC_MIN_PORT": str(low),
            "SFU_RTC_MAX_PORT": str(high),
            "SFU_CAPACITY": "16",
        } | {"SFU_" + key.upper(): str(value) for key, value in settings.items()}
        self.id = ""
        self._dir: Path | None = None
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.returncode

    def log(self) -> str:
        if self._dir is None or not (self._dir / "sfu.log").exists():
            return ""
        return (self._dir / "sfu.log").read_text(errors="replace")

    async def start(self, *, wait: bool = True) -> SfuWorker:
        """Spawn the process; `wait`: until FastSock (or the stand-in) has registered it."""
        self._dir = Path(tempfile.mkdtemp(prefix="fastsock-sfu-"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("SFU_")} | self.env
        with (self._dir / "sfu.log").open("wb") as out:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "sfu",
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # a Ctrl-C in the terminal reaches pytest only
            )
        if wait:
            try:
                await self.wait_registered()
            except BaseException:
                await self.stop()
                raise
        return self

    async def health(self) -> dict[str, Any]:
        response = await AsyncHTTPClient().fetch(self.health_url, raise_error=False)
        return json.loads(response.body)

    async def wait_registered(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.returncode is not None:
                raise RuntimeError(f"sfu worker exited with {self.returncode}:\n{self.log()}")
            try:
                health = await self.health()
            except OSError:  # not listening yet
                health = {}
            if health.get("registered"):
                self.id = health["worker_id"]
                return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"sfu worker not registered within {START_TIMEOUT_S}s:\n{self.log()}")

    def _signal(self, sig: signal.Signals) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.send_signal(sig)

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def interrupt(self) -> None:
        self._signal(signal.SIGINT)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def pause(self) -> None:
        """SIGSTOP: frozen (no heartbeat, no answer) until `resume()`."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    async def wait_exit(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """The exit status; TimeoutError (with the log) if it is still running after `timeout`."""
        assert self._proc is not None
        try:
            return await asyncio.wait_for(self._proc.wait(), timeout)
        except TimeoutError:
            raise TimeoutError(
                f"sfu worker still running after {timeout}s:\n{self.log()}"
            ) from None

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    async def __aenter__(self) -> SfuWorker:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
