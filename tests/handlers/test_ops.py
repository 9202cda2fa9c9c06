"""Health, readiness, metrics, request ids and structured logs."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from fastsock.app import Server
from fastsock.config import ConfigError
from fastsock.logs import JsonFormatter
from tests.conftest import JWT_SECRET, make_settings
from tests.support import PASSWORD, Api

FASTSOCK = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "fastsock"


async def test_health_and_readiness(api: Api) -> None:
    r = await api.get("/healthz")
    assert r.status == 200 and r.body == {"status": "ok"}
    r = await api.get("/readyz")
    assert r.status == 200 and r.body["database"] == "ok"


async def test_unknown_route_and_method_are_json_errors(api: Api) -> None:
    r = await api.get("/no/such/thing")
    assert r.status == 404 and r.error_code == "not_found"
    r = await api.request("PUT", "/auth/login", {"username": "x"})
    assert r.status == 405 and r.body["error"]["code"] == "method_not_allowed"
    assert r.headers["Allow"] == "POST"  # RFC 9110: a 405 says what the resource takes


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("TRACE", "/rooms/{room}", "GET, PATCH"),  # no method tornado knows
        ("DELETE", "/users/me", "GET, PATCH"),
        ("PUT", "/messages/{room}", "PATCH, DELETE"),
    ],
)
async def test_a_405_lists_the_allowed_methods(
    api: Api, method: str, path: str, allow: str
) -> None:
    alice = await api.register()
    room = await api.group(alice)
    r = await api.request(method, path.format(room=room), token=alice.access_token)
    assert r.status == 405 and r.error_code == "method_not_allowed"
    assert r.headers["Allow"] == allow


async def test_request_id_is_echoed_or_generated(api: Api) -> None:
    r = await api.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert r.headers["X-Request-Id"] == "abc-123"
    r = await api.get("/healthz", headers={"X-Request-Id": "bad id with spaces"})
    assert r.headers["X-Request-Id"] != "bad id with spaces" and r.headers["X-Request-Id"]


async def test_metrics_count_connections_messages_and_requests(api: Api) -> None:
    alice = await api.register()
    room = await api.group(alice)
    ws = await api.ws(alice)
    await api.send(alice, room, "counted")
    await ws.expect("message.new")
    text = (await api.get("/metrics")).body
    assert "fastsock_ws_connections 1.0" in text
    assert "fastsock_messages_total 1.0" in text
    assert 'fastsock_events_delivered_total{type="message.new"} 1.0' in text
    assert 'route="/rooms/{id}/messages"' in text and "fastsock_http_request_seconds" in text
    assert "fastsock_db_operation_seconds" in text
    assert "fastsock_event_delivery_seconds" in text


async def test_metrics_token_protects_the_endpoint(db_uri: str | None, tmp_path: Path) -> None:
    settings = make_settings(db_uri, tmp_path, metrics_token="m-token")
    server = Server(settings)
    await server.start()
    try:
        api = Api(server.port)
        assert (await api.get("/metrics")).status == 401
        r = await api.request("GET", "/metrics", token="wrong")
        assert r.status == 401
        r = await api.request("GET", "/metrics", token="m-token")
        assert r.status == 200 and "fastsock_ws_connections" in r.body
    finally:
        await server.stop()


def test_production_refuses_to_start_with_metrics_open_to_all(tmp_path: Path) -> None:
    production = make_settings(None, tmp_path, env="production")
    with pytest.raises(ConfigError) as info:
        Server(production)
    assert "FASTSOCK_METRICS_TOKEN" in str(info.value) and "\n" not in str(info.value)
    # Either protection is enough.
    Server(make_settings(None, tmp_path, env="production", metrics_token="m-token"))
    Server(make_settings(None, tmp_path, env="production", metrics_port=0))


@pytest.mark.once
def test_serve_in_production_without_a_metrics_token_says_so_in_one_line(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTSOCK_")}
    env |= {
        "FASTSOCK_ENV": "production",
        "FASTSOCK_JWT_SECRET": JWT_SECRET,
        "FASTSOCK_DATA_DIR": str(tmp_path / "data"),
        "FASTSOCK_PORT": "0",
    }
    proc = subprocess.run(
        [str(FASTSOCK), "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "FASTSOCK_METRICS_TOKEN" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "data").exists()


def _listening_addresses(port: int) -> set[str]:
    """The local addresses listening on `port` (IPv4, from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
            found.add(".".join(str(b) for b in reversed(bytes.fromhex(address))))
    return found


async def test_metrics_port_serves_only_metrics_on_loopback(
    db_uri: str | None, tmp_path: Path
) -> None:
    # Production without a token is fine with a separate port: only local scrapers reach it.
    settings = make_settings(db_uri, tmp_path, env="production", metrics_port=0, host="0.0.0.0")
    server = Server(settings)
    await server.start()
    try:
        assert server.metrics_port and server.metrics_port != server.port
        assert _listening_addresses(server.metrics_port) == {"127.0.0.1"}
        api, metrics = Api(server.port), Api(server.metrics_port)
        r = await metrics.get("/metrics")
        assert r.status == 200 and "fastsock_ws_connections" in r.body
        assert r.headers["Content-Type"].startswith("text/plain")
        # The public port no longer serves /metrics, and the metrics port nothing else.
        r = await api.get("/metrics")
        assert r.status == 404 and r.error_code == "not_found"
        assert (await metrics.get("/healthz")).status == 404
        assert (await api.get("/healthz")).status == 200
    finally:
        await server.stop()


async def test_metrics_token_also_guards_the_metrics_port(
    db_uri: str | None, tmp_path: Path
) -> None:
    settings = make_settings(db_uri, tmp_path, metrics_port=0, metrics_token="m-token")
    server = Server(settings)
    await server.start()
    try:
        assert server.metrics_port is not None
        metrics = Api(server.metrics_port)
        assert (await metrics.get("/metrics")).status == 401
        assert (await metrics.request("GET", "/metrics", token="m-token")).status == 200
    finally:
        await server.stop()


async def test_logs_are_json_with_request_ids_and_never_hold_secrets(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    secret_text = "top secret message " + uuid.uuid4().hex
    alice = await api.register()
    login = await api.post("/auth/login", {"username": alice.username, "password": PASSWORD})
    room = await api.group(alice)
    ws = await api.ws(alice)
    await ws.send("message.send", {"room_id": room, "client_msg_id": "x", "text": secret_text})
    await ws.expect("message.ack")
    await api.get(f"/users?q={alice.username}", alice)
    await api.post("/auth/login", {"username": alice.username, "password": "wrong password"})

    formatter = JsonFormatter()
    lines = [formatter.format(r) for r in caplog.records]
    assert lines, "the server logged nothing"
    forbidden = [
        PASSWORD,
        "wrong password",
        secret_text,
        alice.access_token,
        alice.refresh_token,
        login.body["access_token"],
        login.body["refresh_token"],
    ]
    for line in lines:
        entry = json.loads(line)
        assert {"ts", "level", "event"} <= entry.keys()
        for value in forbidden:
            assert value not in line
    requests = [json.loads(line) for line in lines if '"http_request"' in line]
    assert requests and all(r.get("request_id") for r in requests)
    assert all("?" not in r["path"] for r in requests)
    assert any(r.get("user_id") == alice.id for r in requests)
