"""Slow consumers: a socket that stops reading is closed (1013) once too much waits unsent
for it, without delaying anyone else; a resume's replay, written in one go, does not count
against that bound."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import time
from typing import Any

import pytest

from fastsock.app import Server
from fastsock.realtime import socket as ws_module
from fastsock.realtime.socket import ChatSocket
from tests.realtime.test_replay import until_detached
from tests.realtime.test_socket import _raw
from tests.support import Api

# About 16 KB as UTF-8: 3,980 emoji, and room for a label in a 4,000-character message.
BIG = "😀" * 3980


@pytest.fixture
def small_send_buffers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the kernel's send buffer of every server socket small, so that what a client has
    not read yet waits in the server's own buffer after a few frames."""
    original_open = ChatSocket.open

    def open_with_small_send_buffer(self: ChatSocket) -> None:
        assert self.ws_connection is not None
        self.ws_connection.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        original_open(self)

    monkeypatch.setattr(ChatSocket, "open", open_with_small_send_buffer)


def masked_frame(payload: bytes) -> bytes:
    """A client's text frame (clients mask theirs), for payloads of 126 to 65535 bytes."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | 126]) + struct.pack(">H", len(payload)) + mask + masked


def _stalled_client(port: int, token: str, resume: dict[str, Any] | None = None) -> socket.socket:
    """A WebSocket client that authenticates (and resumes) and then never reads again."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    assert b" 101 " in response.split(b"\r\n")[0]
    auth: dict[str, Any] = {"token": token} | ({"resume": resume} if resume else {})
    sock.sendall(masked_frame(json.dumps({"type": "auth", "data": auth}).encode()))
    return sock


async def _slow_closes(api: Api) -> str:
    metrics = (await api.get("/metrics")).body
    return next(line for line in metrics.splitlines() if line.startswith("fastsock_ws_slow_"))


async def test_stalled_socket_never_delays_others_and_is_dropped(
    api: Api, server: Server, monkeypatch: pytest.MonkeyPatch, small_send_buffers: None
) -> None:
    monkeypatch.setattr(ws_module, "MAX_PENDING_BYTES", 256 * 1024)
    alice, bob, slow = await api.register(), await api.register(), await api.register()
    room = await api.group(alice, bob, slow)
    bob_ws = await api.ws(bob)
    stalled = await asyncio.to_thread(_stalled_client, api.port, slow.access_token)
    try:
        await bob_ws.expect("presence")  # the stalled user is online
        count = 60

        async def receive() -> list[dict]:
            return [await bob_ws.expect("message.new", timeout=30) for _ in range(count)]

        bob_reads = asyncio.ensure_future(receive())  # bob keeps up while alice sends
        for i in range(count):
            await api.send(alice, room, f"{i:03} {BIG}")
        received = await bob_reads
        assert len({m["message"]["id"] for m in received}) == count
        assert (await bob_ws.expect("presence")) == {"user_id": slow.id, "online": False}
        assert await _slow_closes(api) == "fastsock_ws_slow_consumer_closed_total 1.0"
    finally:
        stalled.close()


async def test_a_resume_may_replay_more_than_a_socket_may_leave_unsent(
    api: Api, server: Server, small_send_buffers: None
) -> None:
    """The replay is written at once: with small kernel buffers, nearly all of it (770 KB,
    more than MAX_PENDING_BYTES) waits in the server's buffer, and the client reading it
    as fast as it can is no slow consumer."""
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    away = await api.ws(bob)
    await until_detached(server, away)
    texts = [f"{i:03} {BIG}" for i in range(48)]
    for text in texts:
        await api.send(alice, room, text)
    assert away.ready is not None
    resumed = await _raw(api)
    # Small buffers on both ends: most of the replay waits in the server's, as over a network.
    resumed.conn.protocol.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    resume = {"session": away.ready["session"], "last_seq": 0}
    await resumed.send("auth", {"token": bob.access_token, "resume": resume})
    assert (await resumed.expect("ready"))["resume"] == "ok"
    replayed = [await resumed.expect("message.new", timeout=30) for _ in texts]
    assert [m["message"]["text"] for m in replayed] == texts
    await resumed.send("ping", ref="still open")
    assert (await resumed.expect("pong"))["__ref"] == "still open"
    assert await _slow_closes(api) == "fastsock_ws_slow_consumer_closed_total 0.0"


async def test_a_resumed_socket_that_stops_reading_is_still_dropped(
    api: Api, server: Server, small_send_buffers: None
) -> None:
    """The replay's allowance covers the replay only: what is sent after it still counts."""
    assert server.ctx is not None
    hub = server.ctx.hub
    alice, slow = await api.register(), await api.register()
    room = await api.group(alice, slow)
    away = await api.ws(slow)
    await until_detached(server, away)
    for i in range(48):
        await api.send(alice, room, f"missed {i:03} {BIG}")
    assert away.ready is not None
    session = away.ready["session"]
    resume = {"session": session, "last_seq": 0}
    stalled = await asyncio.to_thread(_stalled_client, api.port, slow.access_token, resume)
    try:
        deadline = time.monotonic() + 10
        while not hub.attached(session):
            assert time.monotonic() < deadline, "the resume did not attach"
            await asyncio.sleep(0.02)
        assert await _slow_closes(api) == "fastsock_ws_slow_consumer_closed_total 0.0"
        sent = 0
        while await _slow_closes(api) != "fastsock_ws_slow_consumer_closed_total 1.0":
            assert sent < 48, "a socket that reads nothing was never closed"  # 770 KB more
            await api.send(alice, room, f"later {sent:03} {BIG}")
            sent += 1
    finally:
        stalled.close()
