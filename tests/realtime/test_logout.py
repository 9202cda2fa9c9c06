"""Issue 10, item 6: ending a login (log out, a reused refresh token) ends it everywhere at
once: its open sockets close with 4401 and its unexpired access tokens stop working, on REST
and on the socket. The user's other logins (other devices) carry on."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import jwt
import pytest
from pymongo.errors import ConnectionFailure

from fastsock.app import Server
from fastsock.realtime.socket import ChatSocket
from tests.conftest import make_settings
from tests.realtime.test_slow_consumers import _stalled_client, masked_frame
from tests.realtime.test_socket import _raw
from tests.support import PASSWORD, Api, User


async def another_login(api: Api, user: User) -> User:
    """The same account signed in again (another device): a refresh-token family of its own."""
    r = await api.post("/auth/login", {"username": user.username, "password": PASSWORD})
    assert r.status == 200, r.body
    return User(user.id, user.username, r.body["access_token"], r.body["refresh_token"])


async def refused_socket(api: Api, access_token: str) -> int | None:
    sock = await _raw(api)
    await sock.send("auth", {"token": access_token})
    return await sock.close_code()


async def test_logout_closes_that_logins_sockets_and_refuses_its_access_token(api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    laptop = await another_login(api, alice)
    room = await api.group(bob, alice)
    tab1, tab2 = await api.ws(alice), await api.ws(alice)  # two tabs of one login
    other_device = await api.ws(laptop)

    r = await api.post("/auth/logout", {"refresh_token": alice.refresh_token}, alice)
    assert r.status == 204, r.body

    assert await tab1.close_code() == 4401
    assert await tab2.close_code() == 4401
    # The access token is 15 minutes from expiry, yet refused now, on REST and on the socket.
    r = await api.get("/users/me", alice)
    assert r.status == 401 and r.error_code == "unauthenticated", r.body
    assert await refused_socket(api, alice.access_token) == 4401
    # The other login is untouched: its socket still gets events, its token still works.
    await api.send(bob, room, "still signed in elsewhere")
    got = await other_device.expect("message.new")
    assert got["message"]["text"] == "still signed in elsewhere"
    assert (await api.get("/users/me", laptop)).status == 200
    await other_device.send("ping", ref="alive")
    assert (await other_device.expect("pong"))["__ref"] == "alive"


async def test_a_reused_refresh_token_closes_that_logins_sockets(api: Api) -> None:
    alice = await api.register()
    laptop = await another_login(api, alice)
    tab, other_device = await api.ws(alice), await api.ws(laptop)
    rotated = await api.post("/auth/refresh", {"refresh_token": alice.refresh_token})
    assert rotated.status == 200, rotated.body
    # The old token comes back: someone holds a copy, so the login ends.
    reused = await api.post("/auth/refresh", {"refresh_token": alice.refresh_token})
    assert reused.status == 401, reused.body

    assert await tab.close_code() == 4401
    new_access = rotated.body["access_token"]
    assert (await api.request("GET", "/users/me", token=new_access)).status == 401
    await other_device.send("ping", ref="alive")
    assert (await other_device.expect("pong"))["__ref"] == "alive"


async def test_a_login_revoked_before_a_restart_stays_ended(
    db_uri: str | None, tmp_path: Path
) -> None:
    settings = make_settings(db_uri, tmp_path)
    server = Server(settings)
    await server.start()
    try:
        api = Api(server.port)
        alice = await api.register()
        laptop = await another_login(api, alice)
        r = await api.post("/auth/logout", {"refresh_token": alice.refresh_token}, alice)
        assert r.status == 204, r.body
        await server.stop()
        # A new process knows nothing of the logout in memory: the store does.
        server = Server(replace(settings, port=server.port))
        await server.start()
        assert await refused_socket(api, alice.access_token) == 4401
        r = await api.get("/users/me", alice)
        assert r.status == 401 and r.error_code == "unauthenticated", r.body
        assert (await api.ws(laptop)).ready is not None  # the other login lives on
        assert (await api.get("/users/me", laptop)).status == 200
    finally:
        await server.stop()


async def test_logout_ends_the_login_even_when_its_refresh_token_record_is_gone(
    server: Server, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await api.register()
    laptop = await another_login(api, alice)
    tab, other_device = await api.ws(alice), await api.ws(laptop)
    assert server.store is not None

    async def gone(jti: str) -> None:
        return None

    # The token is still signed and unexpired; the store no longer has its record.
    monkeypatch.setattr(server.store.tokens, "get", gone)
    r = await api.post("/auth/logout", {"refresh_token": alice.refresh_token}, alice)
    assert r.status == 204, r.body
    monkeypatch.undo()

    assert await tab.close_code() == 4401
    assert (await api.get("/users/me", alice)).status == 401
    r = await api.post("/auth/refresh", {"refresh_token": alice.refresh_token})
    assert r.status == 401, r.body
    await other_device.send("ping", ref="alive")
    assert (await other_device.expect("pong"))["__ref"] == "alive"


async def test_logout_with_the_database_down_still_ends_the_login_at_once(
    server: Server, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await api.register()
    laptop = await another_login(api, alice)
    tab, other_device = await api.ws(alice), await api.ws(laptop)
    assert server.store is not None
    tokens = server.store.tokens

    async def down(family: str) -> None:
        raise ConnectionFailure("the database is down")  # what the store raises then

    monkeypatch.setattr(tokens, "revoke_family", down)
    r = await api.post("/auth/logout", {"refresh_token": alice.refresh_token}, alice)
    assert r.status == 503 and r.error_code == "unavailable", r.body
    # The store could not record it, but this process ended the login already.
    assert await tab.close_code() == 4401
    r = await api.get("/users/me", alice)
    assert r.status == 401 and r.error_code == "unauthenticated", r.body
    assert (await api.get("/users/me", laptop)).status == 200

    monkeypatch.undo()  # the database is back: the refresh token does not revive the login
    r = await api.post("/auth/refresh", {"refresh_token": alice.refresh_token})
    assert r.status == 401, r.body
    assert await tokens.family_revoked(_family(alice))  # and the store knows it now
    await other_device.send("ping", ref="alive")
    assert (await other_device.expect("pong"))["__ref"] == "alive"


def _family(user: User) -> str:
    return jwt.decode(user.refresh_token, options={"verify_signature": False})["fam"]


async def test_a_socket_that_ignores_the_close_can_do_nothing_after_logout(
    api: Api, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server closes a signed-out login's socket, but tornado goes on delivering its
    frames until the client answers the close (or 5 s pass): none of them may act."""
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    bob_ws = await api.ws(bob)
    read = asyncio.Event()
    original = ChatSocket.on_message

    async def noting(self: ChatSocket, message: str | bytes) -> None:
        await original(self, message)
        if "after logout" in str(message):
            read.set()

    monkeypatch.setattr(ChatSocket, "on_message", noting)
    sock = await asyncio.to_thread(_stalled_client, api.port, alice.access_token)
    try:
        await bob_ws.expect(
            "presence", lambda f: f["data"] == {"user_id": alice.id, "online": True}
        )
        r = await api.post("/auth/logout", {"refresh_token": alice.refresh_token}, alice)
        assert r.status == 204, r.body
        frame = {
            "type": "message.send",
            "data": {"room_id": room, "client_msg_id": "c" * 32, "text": "after logout"},
        }
        await asyncio.to_thread(sock.sendall, masked_frame(json.dumps(frame).encode()))
        await asyncio.wait_for(read.wait(), 10)
        assert server.ctx is not None
        await server.ctx.hub.wait_tasks(timeout=5)
        history = (await api.get(f"/history/room/{room}", bob)).body["messages"]
        assert [m["text"] for m in history] == []
    finally:
        sock.close()


async def test_an_upload_that_outlives_its_login_is_refused(api: Api, server: Server) -> None:
    """The token is checked when the request begins; a body may take minutes: the upload is
    refused if its login ended meanwhile."""
    alice = await api.register()
    body = b"x" * 100
    reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
    writer.write(
        (
            "POST /uploads?filename=n.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {alice.access_token}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body[:50]
    )
    await writer.drain()
    spool = server.settings.spool_path
    for _ in range(500):  # the request was authenticated once its spool file exists
        if spool.is_dir() and any(spool.iterdir()):
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("the upload never started")
    r = await api.post("/auth/logout", {"refresh_token": alice.refresh_token}, alice)
    assert r.status == 204, r.body
    writer.write(body[50:])
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    assert b" 401 " in status_line, status_line
