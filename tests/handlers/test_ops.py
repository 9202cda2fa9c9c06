"""Health, readiness, metrics, request ids and structured logs."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import pytest

from fastsock.app import Server
from fastsock.logs import JsonFormatter
from tests.conftest import make_settings
from tests.support import PASSWORD, Api


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
