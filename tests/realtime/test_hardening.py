"""Limits on what one user can make the server hold or do (review findings)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import jwt
import pytest
from tornado.websocket import websocket_connect

from fastsock.app import Server
from fastsock.config import Limits
from fastsock.realtime import hub as hub_module
from tests.conftest import JWT_SECRET, make_settings
from tests.realtime.test_socket import _raw
from tests.support import Api, Socket


async def test_sessions_per_user_are_capped(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_module, "SESSIONS_PER_USER", 3)
    alice = await api.register()
    first = await api.ws(alice)
    assert first.ready is not None
    first.close()
    await asyncio.sleep(0.2)  # detached, kept for a resume
    kept = [await api.ws(alice) for _ in range(3)]  # the oldest detached one makes room
    kept[0].close()
    await asyncio.sleep(0.2)
    stale = await api.ws(alice, resume={"session": first.ready["session"], "last_seq": 0})
    assert stale.ready is not None and stale.ready["resume"] == "resync"  # it was dropped
    # Now every held session is attached: one more socket is refused.
    sock = await _raw(api)
    await sock.send("auth", {"token": alice.access_token})
    assert await sock.close_code() == 4429
    await kept[1].send("ping", ref="alive")
    assert (await kept[1].expect("pong"))["__ref"] == "alive"


async def test_socket_closes_when_its_token_expires_and_can_resume(api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    now = int(__import__("time").time())
    short = jwt.encode(
        {"sub": bob.id, "typ": "access", "iat": now, "exp": now + 1, "jti": uuid.uuid4().hex},
        JWT_SECRET,
        algorithm="HS256",
    )
    sock = await _raw(api)
    await sock.send("auth", {"token": short})
    ready = await sock.expect("ready")
    assert await sock.close_code(timeout=5) == 4401
    await api.send(alice, room, "while re-authenticating")
    again = await api.ws(bob, resume={"session": ready["session"], "last_seq": 0})
    assert again.ready is not None and again.ready["resume"] == "ok"
    assert (await again.expect("message.new"))["message"]["text"] == "while re-authenticating"


async def test_unknown_http_methods_do_not_grow_metric_labels(api: Api) -> None:
    for i in range(5):
        r = await api.request(f"BREW{i}", "/healthz")
        assert r.status == 405
    metrics = (await api.get("/metrics")).body
    assert "BREW" not in metrics and 'method="other"' in metrics


async def test_registrations_are_throttled_per_address(db_uri: str | None, tmp_path: Path) -> None:
    uri = db_uri
    server = Server(make_settings(uri, tmp_path, limits=Limits(registrations_per_min=3)))
    await server.start()
    try:
        api = Api(server.port)
        for _ in range(3):
            await api.register()
        r = await api.post("/auth/register", {"username": "onetoomany", "password": "p" * 10})
        assert r.status == 429 and r.error_code == "rate_limited" and r.headers["Retry-After"]
    finally:
        await server.stop()


async def test_login_username_length_is_bounded(api: Api) -> None:
    r = await api.post("/auth/login", {"username": "u" * 65, "password": "whatever1"})
    assert r.status == 400 and r.body["error"]["field"] == "username"


async def test_bidirectional_overrides_are_refused_in_names_and_text(api: Api) -> None:
    alice = await api.register()
    r = await api.patch("/users/me", {"display_name": "admin\u202egnp.exe"}, alice)
    assert r.status == 400 and r.body["error"]["field"] == "display_name"
    room = await api.group(alice)
    r = await api.post(f"/rooms/{room}/messages", {"client_msg_id": "b", "text": "a\u2066b"}, alice)
    assert r.status == 400
    # Joiners used by emoji are fine.
    assert (await api.send(alice, room, "👨\u200d👩\u200d👧"))["text"] == "👨\u200d👩\u200d👧"


async def test_edits_are_rate_limited(db_uri: str | None, tmp_path: Path) -> None:
    uri = db_uri
    limits = Limits(send_per_s=1, send_burst=3)
    server = Server(make_settings(uri, tmp_path, limits=limits))
    await server.start()
    try:
        api = Api(server.port)
        alice = await api.register()
        room = await api.group(alice)
        msg = await api.send(alice, room, "v0")
        codes = [
            (await api.patch(f"/messages/{msg['id']}", {"text": f"v{i}"}, alice)).status
            for i in range(1, 5)
        ]
        assert codes.count(429) >= 2, codes
    finally:
        await server.stop()


async def test_a_slow_request_does_not_stall_the_socket_or_its_keepalive(
    server: Server, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests are handled in order, but reading goes on meanwhile: the client's keepalive
    pongs are read, so a request stuck on a slow database does not get the socket closed
    for a ping timeout, and an app-level `ping` is answered at once."""
    assert server.http is not None
    app_settings = server.http.request_callback.settings  # type: ignore[attr-defined]
    monkeypatch.setitem(app_settings, "websocket_ping_interval", 0.1)
    monkeypatch.setitem(app_settings, "websocket_ping_timeout", 0.3)
    release = asyncio.Event()
    services = server.ctx.services  # type: ignore[union-attr]
    real_update = services.typing.update

    async def slow_update(user_id: str, data: dict) -> None:
        await release.wait()
        await real_update(user_id, data)

    monkeypatch.setattr(services.typing, "update", slow_update)
    alice = await api.register()
    room = await api.group(alice)
    ws = await api.ws(alice)
    await ws.send("typing", {"room_id": room, "active": True}, "stuck")
    await ws.send("ping", {}, "after")
    await ws.send("typing", {"room_id": room, "active": False}, "queued")
    await ws.drain(1.0)  # ten ping intervals with the typing request stuck
    assert not ws.closed
    # The app-level ping is answered at once; requests wait their turn, in order.
    assert [f.get("ref") for f in ws.frames] == ["after"]
    release.set()
    assert (await ws.expect("ack"))["__ref"] == "stuck"
    assert (await ws.expect("ack"))["__ref"] == "queued"


async def test_a_socket_authenticating_while_the_server_stops_is_closed(
    db_uri: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shutdown closes every socket it knows of; one still looking its user up at that moment
    must not come out of auth as a live session of a stopped server."""
    server = Server(make_settings(db_uri, tmp_path))
    await server.start()
    api = Api(server.port)
    user = await api.register()
    assert server.ctx is not None
    accounts = server.ctx.services.accounts
    looking_up, release = asyncio.Event(), asyncio.Event()
    profile = await accounts.me(user.id)

    async def held_me(user_id: str) -> dict:
        looking_up.set()
        await release.wait()
        return profile  # (the store may be closed by then)

    monkeypatch.setattr(accounts, "me", held_me)
    sock = Socket(await websocket_connect(f"ws://127.0.0.1:{server.port}/ws"))
    await sock.send("auth", {"token": user.access_token})
    await asyncio.wait_for(looking_up.wait(), 10)
    stopping = asyncio.create_task(server.stop())
    while not server.ctx.hub.closing:
        await asyncio.sleep(0.01)
    release.set()
    await stopping
    await sock.drain()
    assert sock.closed
    assert sock.conn.close_code == 1001
    assert not any(f["type"] == "ready" for f in sock.frames)
