"""FastSock nodes as processes of their own (`python -m fastsock serve`), for the tests that
kill one with SIGKILL: a node that dies without a word, as a crash or an OOM kill leaves it.

`NodeProcess.start()` waits (bounded) for the JSON `server_started` log line and reads the
port from it; the log goes to a file in the node's data directory (a pipe nobody reads would
fill and stall the node), and is shown when the node fails to start. Tests get them from the
`node_process` fixture (conftest.py), which reaps every one it started."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

from fastsock.config import LIMIT_VARS
from tests.conftest import JWT_SECRET, RELAXED
from tests.support import Api

ROOT = Path(__file__).resolve().parents[2]  # the checkout: `-m fastsock` imports from here
START_TIMEOUT_S = 60.0  # a loaded 2-core machine imports slowly
STOP_TIMEOUT_S = 15.0


def relaxed_limits_env() -> dict[str, str]:
    """tests.conftest.RELAXED as FASTSOCK_LIMIT_* variables."""
    return {
        f"FASTSOCK_LIMIT_{name}": str(getattr(RELAXED, f)) for name, (f, _) in LIMIT_VARS.items()
    }


class NodeProcess:
    def __init__(self, mongo_uri: str, redis_url: str, data_dir: Path, **env: str) -> None:
        self.data_dir = data_dir
        self.log_path = data_dir / "node.log"
        self.port = 0
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("FASTSOCK_")}
        self.env = (
            inherited
            | relaxed_limits_env()
            | {
                "FASTSOCK_MONGO_URI": mongo_uri,
                "FASTSOCK_REDIS_URL": redis_url,
                "FASTSOCK_HOST": "127.0.0.1",
                "FASTSOCK_PORT": "0",
                "FASTSOCK_DATA_DIR": str(data_dir),
                "FASTSOCK_JWT_SECRET": JWT_SECRET,
            }
            | env
        )
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def api(self) -> Api:
        assert self.port, "start() the node first"
        return Api(self.port)

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self._proc = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "fastsock", "serve"),
                cwd=ROOT,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while (port := self._started_port()) is None:
            if self._proc.returncode is not None or time.monotonic() > deadline:
                await self.kill()
                raise RuntimeError(f"FastSock node did not start:\n{self.log_path.read_text()}")
            await asyncio.sleep(0.05)
        self.port = port

    def _started_port(self) -> int | None:
        for line in self.log_path.read_text(errors="replace").splitlines():
            if '"server_started"' in line:
                return int(json.loads(line)["port"])
        return None

    async def kill(self) -> None:
        """SIGKILL: the node stops at once, telling nobody."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.send_signal(signal.SIGKILL)
            await self._proc.wait()

    async def stop(self) -> None:
        """SIGTERM (a clean stop), SIGKILL if it does not end in time."""
        if self._proc is None or self._proc.returncode is not None:
            return
        self._proc.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._proc.wait(), STOP_TIMEOUT_S)
        await self.kill()
