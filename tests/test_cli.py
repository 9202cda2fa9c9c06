"""`fastsock serve` as a real process: configuration errors, start on the embedded database,
graceful SIGTERM, data that survives a restart, and acked sends that survive `kill -9`."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.once  # runs the embedded database, whichever pass this is

FASTSOCK = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "fastsock"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
PASSWORD = "correct horse battery"


def clean_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTSOCK_")}
    env.update(overrides)
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_to_exit(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(FASTSOCK), "serve"],
        env=clean_env(FASTSOCK_DATA_DIR=str(tmp_path / "data"), **env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


# --- configuration errors -------------------------------------------------------------------


def test_bad_port_exits_with_one_line_naming_the_variable(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = run_to_exit(tmp_path, FASTSOCK_PORT="notaport")
    assert time.monotonic() - started < 10
    assert proc.returncode != 0
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "FASTSOCK_PORT" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "data").exists()  # nothing was started or written


def test_production_without_jwt_secret_refuses_to_start(tmp_path: Path) -> None:
    proc = run_to_exit(tmp_path, FASTSOCK_ENV="production", FASTSOCK_PORT=str(free_port()))
    assert proc.returncode != 0
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "FASTSOCK_JWT_SECRET" in lines[0]
    assert not (tmp_path / "data" / "jwt-secret").exists()


def test_redis_with_the_embedded_database_refuses_to_start(tmp_path: Path) -> None:
    proc = run_to_exit(
        tmp_path, FASTSOCK_REDIS_URL="redis://127.0.0.1:1/0", FASTSOCK_PORT=str(free_port())
    )
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "FASTSOCK_REDIS_URL" in lines[0] and "FASTSOCK_MONGO_URI" in lines[0]
    assert not (tmp_path / "data").exists()


def test_unreachable_redis_stops_start_up_with_one_line(tmp_path: Path) -> None:
    proc = run_to_exit(
        tmp_path,
        FASTSOCK_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        FASTSOCK_MONGO_URI=f"mongodb://127.0.0.1:{free_port()}/x?serverSelectionTimeoutMS=200",
        FASTSOCK_PORT=str(free_port()),
    )
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert "Traceback" not in proc.stderr
    assert lines[-1].startswith("fastsock: cannot start:"), proc.stderr


# --- a real start on the embedded database --------------------------------------------------


def http(
    method: str, port: int, path: str, body: Any = None, token: str | None = None
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else None


@contextlib.contextmanager
def serve(
    tmp_path: Path, data_dir: Path, port: int, name: str
) -> Iterator[subprocess.Popen[bytes]]:
    """Start `fastsock serve`; on the way out make sure nothing it started is left running."""
    log = (tmp_path / f"{name}.log").open("wb")
    proc = subprocess.Popen(
        [str(FASTSOCK), "serve"],
        env=clean_env(FASTSOCK_DATA_DIR=str(data_dir), FASTSOCK_PORT=str(port)),
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        log.close()


def wait_ready(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"server exited early: {log.read_text(errors='replace')}"
        try:
            status, body = http("GET", port, "/readyz")
        except OSError:
            status, body = 0, None
        if status == 200:
            assert body == {"status": "ready", "database": "ok"}
            return
        time.sleep(0.2)
    pytest.fail(f"/readyz not 200 within {READY_TIMEOUT_S}s: {log.read_text(errors='replace')}")


def stop(proc: subprocess.Popen[bytes], log: Path) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"no exit within {STOP_TIMEOUT_S}s of SIGTERM: {log.read_text(errors='replace')}"
        )


def is_sqlite(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(16) == b"SQLite format 3\x00"


def test_serve_embedded_sigterm_and_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()

    with serve(tmp_path, data_dir, port, "first") as proc:
        wait_ready(proc, port, tmp_path / "first.log")
        log = (tmp_path / "first.log").read_text(errors="replace")
        database = data_dir / "fastsock.db"
        line = f"FastSock is running at http://127.0.0.1:{port} (embedded database: {database})"
        assert line in log.splitlines(), log

        status, health = http("GET", port, "/healthz")
        assert status == 200 and health == {"status": "ok"}
        status, session = http(
            "POST", port, "/auth/register", {"username": "persisted", "password": PASSWORD}
        )
        assert status == 201, session
        user_id = session["user"]["id"]
        old_access = session["access_token"]

        code = stop(proc, tmp_path / "first.log")
        assert code == 0, (tmp_path / "first.log").read_text(errors="replace")

    assert is_sqlite(database)
    private = [database, data_dir / "jwt-secret", *data_dir.glob("fastsock.db-*")]
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in private), private
    for directory in (data_dir, data_dir / "uploads"):
        assert directory.stat().st_mode & 0o777 == 0o700, directory

    port2 = free_port()
    with serve(tmp_path, data_dir, port2, "second") as proc2:
        wait_ready(proc2, port2, tmp_path / "second.log")
        status, login = http(
            "POST", port2, "/auth/login", {"username": "persisted", "password": PASSWORD}
        )
        assert status == 200, login
        assert login["user"]["id"] == user_id
        # The generated JWT secret was kept in the data dir: old tokens still verify.
        status, me = http("GET", port2, "/users/me", token=old_access)
        assert status == 200 and me["id"] == user_id
        assert stop(proc2, tmp_path / "second.log") == 0


def test_acked_sends_survive_kill_9(tmp_path: Path) -> None:
    """SIGKILL in the middle of a send burst from four writers: after a restart every send that
    was acknowledged is stored exactly once (sends in flight may or may not be)."""
    data_dir = tmp_path / "data"
    port = free_port()
    acked: list[str] = []
    with serve(tmp_path, data_dir, port, "burst") as proc:
        wait_ready(proc, port, tmp_path / "burst.log")
        account = {"username": "killer", "password": PASSWORD}
        _, session = http("POST", port, "/auth/register", account)
        token = session["access_token"]
        _, room = http("POST", port, "/rooms", {"name": "burst", "member_ids": []}, token)
        counter = itertools.count()
        stop_at = 150  # acks before the kill: well inside the burst

        def writer() -> None:
            while len(acked) < stop_at * 4:
                cid = f"c{next(counter)}"
                try:
                    status, _ = http(
                        "POST",
                        port,
                        f"/rooms/{room['id']}/messages",
                        {"client_msg_id": cid, "text": f"message {cid}"},
                        token,
                    )
                except OSError:
                    return  # the server is gone
                if status in (200, 201):
                    acked.append(cid)

        threads = [threading.Thread(target=writer) for _ in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(acked) < stop_at and time.monotonic() < deadline:
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
        for t in threads:
            t.join(10)
    assert len(acked) >= stop_at, "the burst did not get going"

    port2 = free_port()
    with serve(tmp_path, data_dir, port2, "after") as proc2:
        wait_ready(proc2, port2, tmp_path / "after.log")
        _, login = http("POST", port2, "/auth/login", account)
        stored: list[str] = []
        path = f"/history/room/{room['id']}?limit=100"
        while True:
            status, page = http("GET", port2, path, token=login["access_token"])
            assert status == 200, page
            stored += [m["client_msg_id"] for m in page["messages"]]
            if not page["has_more"]:
                break
            path = f"/history/room/{room['id']}?limit=100&before={page['messages'][-1]['id']}"
        assert stop(proc2, tmp_path / "after.log") == 0
    assert len(stored) == len(set(stored)), "a message was stored twice"
    missing = set(acked) - set(stored)
    assert not missing, f"{len(missing)} acknowledged messages were lost"
