"""A real coturn (`turnserver`) on loopback for tests.

    from tests.coturn import Coturn

    with Coturn(secret) as turn:      # started and answering when the block begins
        turn.uri                      # "turn:127.0.0.1:PORT?transport=udp"
        turn.stun_uri                 # "stun:127.0.0.1:PORT"
        turn.host, turn.port          # ("127.0.0.1", PORT)
        turn.log()                    # coturn's output so far (for failure messages)
    # stopped, its files removed

Give the FastSock server the same secret and the URI (`turn_secret=secret,
turn_uris=(turn.uri,)`; add `turn_relay_only=True` for a relay-only call) and the
credentials from `GET /calls/ice-servers` work on this coturn.

The config is rendered by fastsock.calls.coturn, the code operators run, with
`allow_loopback=True` by default: both peers of a test call are on this machine, and coturn
only relays to loopback peers with `allow-loopback-peers`. `allow_loopback=False` gives the
production peer policy (loopback and private ranges refused with 403).

`start()` waits at most START_TIMEOUT_S for coturn to answer a STUN binding request and
raises RuntimeError (with coturn's output) otherwise, or when `turnserver` is not installed;
`stop()` always ends the process (SIGTERM, then SIGKILL) and is safe to call twice.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from fastsock.calls.coturn import write_config
from fastsock.config import Settings

HOST = "127.0.0.1"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
# A STUN binding request (RFC 5389): type 0x0001, length 0, magic cookie, transaction id.
_BINDING = bytes.fromhex("000100002112a442") + b"fastsocktest"


def free_port() -> int:
    """A port free for both UDP and TCP on HOST (coturn listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((HOST, 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((HOST, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no port free for both UDP and TCP")


def wait_answering(proc: subprocess.Popen[bytes], port: int, log: Callable[[], str]) -> None:
    """Until coturn on HOST:port answers a STUN binding request; RuntimeError (with `log()`)
    if `proc` exits or START_TIMEOUT_S passes first."""
    deadline = time.monotonic() + START_TIMEOUT_S
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.05)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"turnserver exited with {proc.returncode}:\n{log()}")
            with contextlib.suppress(OSError):  # refused, or no answer yet, until coturn binds
                sock.sendto(_BINDING, (HOST, port))
                if sock.recv(2048)[:2] == b"\x01\x01":  # binding success response
                    return
    raise RuntimeError(f"turnserver did not answer within {START_TIMEOUT_S}s:\n{log()}")


class Coturn:
    def __init__(self, secret: str, *, allow_loopback: bool = True) -> None:
        self.secret = secret
        self.allow_loopback = allow_loopback
        self.host = HOST
        self.port = 0
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"turn:{self.host}:{self.port}?transport=udp"

    @property
    def stun_uri(self) -> str:
        return f"stun:{self.host}:{self.port}"

    def log(self) -> str:
        if self._dir is None or not (self._dir / "turnserver.log").exists():
            return ""
        return (self._dir / "turnserver.log").read_text(errors="replace")

    def start(self) -> Coturn:
        binary = shutil.which("turnserver")
        if binary is None:
            raise RuntimeError(
                "turnserver not found on PATH: install coturn (apt-get install coturn; .ci/run "
                "does it)"
            )
        self._dir = Path(tempfile.mkdtemp(prefix="fastsock-coturn-"))
        self.port = free_port()
        settings = Settings(
            data_dir=self._dir,
            turn_secret=self.secret,
            turn_listen_ip=HOST,
            turn_relay_ip=HOST,
            turn_listen_port=self.port,
            turn_allow_loopback=self.allow_loopback,
        )
        config = write_config(settings)
        with (self._dir / "turnserver.log").open("wb") as out:
            self._proc = subprocess.Popen(
                [binary, "-c", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal reaches pytest, not coturn
            )
        try:
            wait_answering(self._proc, self.port, self.log)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(STOP_TIMEOUT_S)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> Coturn:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
