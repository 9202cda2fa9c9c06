"""The processes the benchmarks start and measure (bench/README.md).

A throwaway `python -m fastsock serve` (or another command) on loopback with its own data
directory, always stopped, and the CPU time and memory of a process and its children read
from /proc.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from errors import BenchError

REPO = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 60.0  # server start-up (embedded database included)
STOP_TIMEOUT_S = 15.0


# --- the server under test ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SERVE = (sys.executable, "-m", "fastsock", "serve")


class ServerProcess:
    """`python -m fastsock serve` (or `command`, given the same environment) on loopback with a
    throwaway data directory. Its stdin is a pipe held open until `stop`: a child that watches
    it (the Mongo stand-in) stops by itself should this script die without stopping it."""

    def __init__(
        self,
        port: int,
        env: Mapping[str, str] | None = None,
        command: Sequence[str] = SERVE,
        *,
        in_tmp: bool = False,
    ) -> None:
        """`in_tmp`: run in the throwaway directory (redis-server writes there), not the
        checkout."""
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.extra_env = dict(env or {})
        self.command = list(command)
        self.in_tmp = in_tmp
        self._tmp = tempfile.TemporaryDirectory(prefix="fastsock-bench-")
        self.log_path = Path(self._tmp.name) / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def start(self) -> None:
        # Only our settings: a fresh embedded database, never the caller's FASTSOCK_* config.
        env = {k: v for k, v in os.environ.items() if not k.startswith("FASTSOCK_")}
        env |= {
            "FASTSOCK_HOST": "127.0.0.1",
            "FASTSOCK_PORT": str(self.port),
            "FASTSOCK_DATA_DIR": str(Path(self._tmp.name) / "data"),
            # Every simulated client connects from 127.0.0.1 (up to 1,000 sockets).
            "FASTSOCK_MAX_CONNECTIONS_PER_IP": "100000",
        }
        env |= self.extra_env
        with self.log_path.open("wb") as log:  # the child keeps its own copy of the fd
            self.proc = subprocess.Popen(
                self.command,
                cwd=self._tmp.name if self.in_tmp else REPO,
                env=env,
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def log_tail(self, lines: int = 20) -> str:
        return log_tail(self.log_path, lines)

    def stop(self) -> None:
        """`stop_process`; always removes the data dir."""
        try:
            stop_process(self.proc)
        finally:
            if self.proc is not None and self.proc.stdin is not None:
                self.proc.stdin.close()
            self._tmp.cleanup()

    async def wait_output(self, marker: bytes) -> None:
        """Wait until the process has printed `marker` (how a server without /readyz says it
        is ready)."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while marker not in self.log_path.read_bytes():
            if (code := self.exited()) is not None:
                raise BenchError(f"{self.command[0]} exited with code {code}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise BenchError(f"{self.command[0]} not ready after {READY_TIMEOUT_S} s")
            await asyncio.sleep(0.05)


def start_server(
    servers: list[ServerProcess],
    env: Mapping[str, str] | None = None,
    command: Sequence[str] = SERVE,
    port: int | None = None,
    *,
    in_tmp: bool = False,
) -> ServerProcess:
    """Start a `ServerProcess` that `run_servers` stops at the end."""
    server = ServerProcess(port or free_port(), env, command, in_tmp=in_tmp)
    servers.append(server)
    server.start()
    return server


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, then SIGKILL if it does not exit within STOP_TIMEOUT_S."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(STOP_TIMEOUT_S)


def log_tail(path: Path, lines: int = 20) -> str:
    """The last `lines` lines of a process's log ("" when there is none)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# --- CPU time and memory of the server and its embedded database (/proc) ---------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int | None) -> float | None:
    """utime + stime of one process in seconds; None if unknown or gone."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # fields 3.. (the name may contain spaces)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def child_pids(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(stat.parent.name))
    return sorted(children)


def proc_mem_mib(pid: int | None) -> dict[str, float] | None:
    """Resident memory now (VmRSS) and its peak (VmHWM) in MiB."""
    if pid is None:
        return None
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    out = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out["rss" if key == "VmRSS" else "peak"] = round(int(value.split()[0]) / 1024, 1)
    return out
