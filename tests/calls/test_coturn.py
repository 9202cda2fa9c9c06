"""coturn's side: the FASTSOCK_TURN_* settings, the rendered config, `fastsock turn` and
`turn/run` as real processes, and a real coturn that takes the config without complaint and
keeps relays away from loopback and private networks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aioice import stun
from aioice.turn import TurnClientUdpProtocol

from fastsock.calls.coturn import REDACTED, render, write_config
from fastsock.calls.turn import credential
from fastsock.config import ConfigError, Settings, load_settings
from tests.coturn import Coturn, free_port, wait_answering
from tests.test_cli import clean_env

ROOT = Path(__file__).resolve().parents[2]
FASTSOCK = ROOT / ".venv" / "bin" / "fastsock"
SECRET = "coturn-test-secret-0123456789"
# coturn's log lines for a directive it did not understand or a value it could not use.
COTURN_COMPLAINTS = re.compile(r"ERROR|Bad configuration format|Wrong address|Cannot", re.I)

# --- settings --------------------------------------------------------------------------------


def test_coturn_settings_defaults_and_values(tmp_path: Path) -> None:
    s = load_settings({})
    assert (s.turn_listen_ip, s.turn_listen_port, s.turn_realm) == (None, 3478, "fastsock")
    assert (s.turn_min_port, s.turn_max_port) == (49152, 65535)
    assert s.turn_relay_ip is s.turn_external_ip is s.turn_cert is s.turn_pkey is None
    s = load_settings(
        {
            "FASTSOCK_TURN_SECRET": SECRET,
            "FASTSOCK_TURN_LISTEN_IP": "10.0.0.5",
            "FASTSOCK_TURN_LISTEN_PORT": "3479",
            "FASTSOCK_TURN_REALM": "chat.example.org",
            "FASTSOCK_TURN_RELAY_IP": "10.0.0.5",
            "FASTSOCK_TURN_EXTERNAL_IP": "203.0.113.7/10.0.0.5",
            "FASTSOCK_TURN_MIN_PORT": "40000",
            "FASTSOCK_TURN_MAX_PORT": "40099",
            "FASTSOCK_TURN_CERT": "/etc/tls/turn.pem",
            "FASTSOCK_TURN_PKEY": "/etc/tls/turn.key",
            "FASTSOCK_TURN_USER_QUOTA": "4",
            "FASTSOCK_TURN_TOTAL_QUOTA": "400",
            "FASTSOCK_TURN_MAX_BPS": "250000",
        }
    )
    assert s.turn_secret == SECRET
    assert (s.turn_listen_ip, s.turn_listen_port, s.turn_relay_ip) == ("10.0.0.5", 3479, "10.0.0.5")
    assert s.turn_realm == "chat.example.org" and s.turn_external_ip == "203.0.113.7/10.0.0.5"
    assert (s.turn_min_port, s.turn_max_port) == (40000, 40099)
    assert (s.turn_cert, s.turn_pkey) == (Path("/etc/tls/turn.pem"), Path("/etc/tls/turn.key"))
    assert (s.turn_user_quota, s.turn_total_quota, s.turn_max_bps) == (4, 400, 250000)
    assert load_settings({"FASTSOCK_TURN_LISTEN_IP": "::1"}).turn_listen_ip == "::1"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"FASTSOCK_TURN_SECRET": "short"}, "FASTSOCK_TURN_SECRET"),
        ({"FASTSOCK_TURN_SECRET": " " + SECRET}, "FASTSOCK_TURN_SECRET"),
        ({"FASTSOCK_TURN_SECRET": SECRET + " "}, "FASTSOCK_TURN_SECRET"),
        ({"FASTSOCK_TURN_SECRET": f'"{SECRET}"'}, "FASTSOCK_TURN_SECRET"),
        ({"FASTSOCK_TURN_SECRET": SECRET + "\nno-auth"}, "FASTSOCK_TURN_SECRET"),
        ({"FASTSOCK_TURN_LISTEN_IP": "turn.example.org"}, "FASTSOCK_TURN_LISTEN_IP"),
        ({"FASTSOCK_TURN_RELAY_IP": "10.0.0"}, "FASTSOCK_TURN_RELAY_IP"),
        ({"FASTSOCK_TURN_EXTERNAL_IP": "203.0.113.7/"}, "FASTSOCK_TURN_EXTERNAL_IP"),
        ({"FASTSOCK_TURN_LISTEN_PORT": "0"}, "FASTSOCK_TURN_LISTEN_PORT"),
        ({"FASTSOCK_TURN_LISTEN_PORT": "70000"}, "FASTSOCK_TURN_LISTEN_PORT"),
        ({"FASTSOCK_TURN_REALM": "two words"}, "FASTSOCK_TURN_REALM"),
        ({"FASTSOCK_TURN_MIN_PORT": "80"}, "FASTSOCK_TURN_MIN_PORT"),
        ({"FASTSOCK_TURN_MAX_PORT": "x"}, "FASTSOCK_TURN_MAX_PORT"),
        ({"FASTSOCK_TURN_MIN_PORT": "50000", "FASTSOCK_TURN_MAX_PORT": "49999"}, "MIN_PORT"),
        ({"FASTSOCK_TURN_MIN_PORT": "65535", "FASTSOCK_TURN_MAX_PORT": "65534"}, "MAX_PORT"),
        ({"FASTSOCK_TURN_CERT": "/etc/tls/turn.pem"}, "FASTSOCK_TURN_PKEY"),
        ({"FASTSOCK_TURN_PKEY": "/etc/tls/turn.key"}, "FASTSOCK_TURN_CERT"),
        ({"FASTSOCK_TURN_USER_QUOTA": "0"}, "FASTSOCK_TURN_USER_QUOTA"),
        ({"FASTSOCK_TURN_TOTAL_QUOTA": "-5"}, "FASTSOCK_TURN_TOTAL_QUOTA"),
        ({"FASTSOCK_TURN_MAX_BPS": "fast"}, "FASTSOCK_TURN_MAX_BPS"),
        (
            {
                "FASTSOCK_TURN_ALLOW_LOOPBACK": "true",
                "FASTSOCK_ENV": "production",
                "FASTSOCK_JWT_SECRET": "j" * 40,
            },
            "FASTSOCK_TURN_ALLOW_LOOPBACK",
        ),
    ],
)
def test_bad_coturn_settings_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert variable in str(info.value) and "\n" not in str(info.value)


# --- rendering -------------------------------------------------------------------------------


def directives(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_render_needs_the_secret(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="FASTSOCK_TURN_SECRET"):
        render(Settings(data_dir=tmp_path))
    with pytest.raises(ConfigError, match="FASTSOCK_TURN_SECRET"):
        write_config(Settings(data_dir=tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_render_production_defaults(tmp_path: Path) -> None:
    lines = directives(render(Settings(data_dir=tmp_path, turn_secret=SECRET)))
    for expected in (
        "listening-port=3478",
        "min-port=49152",
        "max-port=65535",
        "use-auth-secret",
        f"static-auth-secret={SECRET}",
        "realm=fastsock",
        "fingerprint",
        "stale-nonce=600",
        "no-cli",
        "no-multicast-peers",
        "no-tcp-relay",
        "no-tls",
        "no-dtls",
        "user-quota=12",
        "total-quota=1200",
        "max-bps=1000000",
        "log-file=stdout",
        "simple-log",
        f"userdb={tmp_path.resolve() / 'turndb'}",
        f"pidfile={tmp_path.resolve() / 'turnserver.pid'}",
        "denied-peer-ip=10.0.0.0-10.255.255.255",
        "denied-peer-ip=172.16.0.0-172.31.255.255",
        "denied-peer-ip=192.168.0.0-192.168.255.255",
        "denied-peer-ip=169.254.0.0-169.254.255.255",
        "denied-peer-ip=100.64.0.0-100.127.255.255",
        "denied-peer-ip=127.0.0.0-127.255.255.255",
        "denied-peer-ip=::1",
        "denied-peer-ip=::ffff:0.0.0.0-::ffff:255.255.255.255",
        "denied-peer-ip=fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "denied-peer-ip=fe80::-febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    ):
        assert expected in lines
    assert not [line for line in lines if line.startswith(("listening-ip", "relay-ip", "external"))]
    assert not [line for line in lines if "loopback" in line or line.startswith(("cert", "pkey"))]
    assert not [line for line in lines if "$" in line or "#[" in line]


def test_render_loopback_tls_and_addresses(tmp_path: Path) -> None:
    cert, key = tmp_path / "turn.pem", tmp_path / "turn.key"
    cert.write_text("cert")
    key.write_text("key")
    settings = Settings(
        data_dir=tmp_path,
        turn_secret=SECRET,
        turn_allow_loopback=True,
        turn_listen_ip="127.0.0.1",
        turn_relay_ip="127.0.0.1",
        turn_external_ip="203.0.113.7",
        turn_cert=cert,
        turn_pkey=key,
    )
    lines = directives(render(settings))
    assert "allow-loopback-peers" in lines
    assert not [line for line in lines if line.startswith("denied-peer-ip")]
    for expected in (
        "listening-ip=127.0.0.1",
        "relay-ip=127.0.0.1",
        "external-ip=203.0.113.7",
        f"cert={cert}",
        f"pkey={key}",
        "no-tlsv1",
        "no-tlsv1_1",
    ):
        assert expected in lines
    assert "no-tls" not in lines and "no-dtls" not in lines
    key.unlink()
    with pytest.raises(ConfigError, match="FASTSOCK_TURN_PKEY"):
        render(settings)


def test_redacted_render_and_private_file(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", turn_secret=SECRET)
    shown = render(settings, redact=True)
    assert SECRET not in shown and f"static-auth-secret={REDACTED}" in shown
    path = write_config(settings)
    assert path == (tmp_path / "data" / "turnserver.conf").resolve()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == render(settings)
    path.chmod(0o644)  # rewriting replaces the file: the new one is private again
    assert stat.S_IMODE(write_config(settings).stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["turnserver.conf"]


# --- a real coturn with the production peer policy ------------------------------------------


@pytest.fixture(scope="module")
def production_coturn() -> Iterator[Coturn]:
    with Coturn(SECRET, allow_loopback=False) as turn:
        yield turn


def test_coturn_takes_the_rendered_config_without_complaint(production_coturn: Coturn) -> None:
    log = production_coturn.log()
    assert not COTURN_COMPLAINTS.findall(log), log
    rendered = render(Settings(turn_secret=SECRET))
    denied = [line for line in directives(rendered) if line.startswith("denied-peer-ip=")]
    # coturn logs each range it accepted ("Black listing: <range>").
    assert sorted(re.findall(r"Black listing: (\S+)", log)) == sorted(
        line.split("=", 1)[1] for line in denied
    )
    assert "allow_loopback_peers" not in log


async def test_relays_refuse_loopback_and_private_peers(production_coturn: Coturn) -> None:
    username = f"{int(time.time()) + 600}:peer-policy"
    server = (production_coturn.host, production_coturn.port)
    loop = asyncio.get_running_loop()
    transport, turn = await loop.create_datagram_endpoint(
        lambda: TurnClientUdpProtocol(
            server,
            username=username,
            password=credential(SECRET, username),
            lifetime=600,
            channel_refresh_time=500,
        ),
        remote_addr=server,
    )
    try:
        await turn.connect()
        # A channel binding only installs a permission: nothing is sent to the peer.
        await turn.channel_bind(0x4000, ("8.8.8.8", 9))
        for number, peer in enumerate(
            [
                "127.0.0.1",
                "10.1.2.3",
                "172.20.0.1",
                "192.168.1.1",
                "169.254.169.254",  # cloud metadata
                "100.64.0.1",
                "0.0.0.1",
            ],
            0x4001,
        ):
            with pytest.raises(stun.TransactionFailed) as info:
                await turn.channel_bind(number, (peer, 9))
            assert info.value.response.error_code == 403, peer
    finally:
        await turn.delete()
        transport.close()


# --- `fastsock turn` and turn/run ------------------------------------------------------------


def run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        env=clean_env(FASTSOCK_DATA_DIR=str(tmp_path / "data"), **env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


@pytest.mark.parametrize("command", [[str(FASTSOCK), "turn"], [str(ROOT / "turn" / "run")]])
def test_print_redacts_the_secret_and_starts_nothing(command: list[str], tmp_path: Path) -> None:
    proc = run([*command, "--print"], tmp_path, FASTSOCK_TURN_SECRET=SECRET)
    assert proc.returncode == 0, proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    assert f"static-auth-secret={REDACTED}" in proc.stdout
    assert "use-auth-secret" in directives(proc.stdout)
    assert not (tmp_path / "data").exists()


def test_turn_without_a_secret_fails_with_one_line(tmp_path: Path) -> None:
    for args in (["turn"], ["turn", "--print"]):
        proc = run([str(FASTSOCK), *args], tmp_path)
        assert proc.returncode == 2
        lines = proc.stderr.splitlines()
        assert len(lines) == 1 and "FASTSOCK_TURN_SECRET" in lines[0], proc.stderr
        assert not (tmp_path / "data").exists()


def test_turn_without_turnserver_says_so(tmp_path: Path) -> None:
    proc = run([str(FASTSOCK), "turn"], tmp_path, FASTSOCK_TURN_SECRET=SECRET, PATH=str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "fastsock: cannot start: turnserver not found on PATH (install coturn)"
    )


def test_turn_needs_only_the_standard_library() -> None:
    """turn/run works with any Python 3.13 and the checkout, without the server's packages."""
    code = (
        "import sys, fastsock.__main__, fastsock.calls.coturn;"
        "heavy = {'pymongo', 'tornado', 'jwt', 'boto3', 'PIL', 'prometheus_client'};"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-c", code],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    assert out.stdout.strip() == "[]"


def test_fastsock_turn_runs_coturn_on_a_private_config(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "turn.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(FASTSOCK), "turn"],
            env=clean_env(
                FASTSOCK_DATA_DIR=str(tmp_path / "data"),
                FASTSOCK_TURN_SECRET=SECRET,
                FASTSOCK_TURN_LISTEN_IP="127.0.0.1",
                FASTSOCK_TURN_LISTEN_PORT=str(port),
            ),
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_answering(proc, port, lambda: log.read_text(errors="replace"))
        # `fastsock turn` replaced itself with coturn: the process we started is turnserver.
        assert os.path.basename(os.readlink(f"/proc/{proc.pid}/exe")) == "turnserver"
        config = tmp_path / "data" / "turnserver.conf"
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
        assert f"listening-port={port}" in config.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) in (0, -signal.SIGTERM)  # coturn 4.6 just dies of it
        output = log.read_text(errors="replace")
        assert SECRET not in output
        assert not COTURN_COMPLAINTS.findall(output), output
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
