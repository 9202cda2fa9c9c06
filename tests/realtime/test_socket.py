"""The /ws protocol: authentication, frame validation, limits, presence, refused requests.
Slow consumers: test_slow_consumers.py."""

from __future__ import annotations

import json

import pytest
from tornado.websocket import websocket_connect

from fastsock.realtime import socket as ws_module
from fastsock.realtime.socket import ChatSocket
from tests.support import Api, Socket


async def _raw(api: Api) -> Socket:
    return Socket(await websocket_connect(f"ws://127.0.0.1:{api.port}/ws"))


@pytest.mark.parametrize(
    "first_frame",
    [
        '{"type": "auth", "data": {"token": "garbage"}}',
        '{"type": "auth", "data": {}}',
        '{"type": "message.send", "data": {}}',
        "not json",
        '["auth"]',
    ],
)
async def test_bad_first_frame_closes_4401(api: Api, first_frame: str) -> None:
    sock = await _raw(api)
    await sock.send_raw(first_frame)
    assert await sock.close_code() == 4401
    assert not [f for f in sock.frames if f["type"] == "ready"]


async def test_refresh_token_cannot_open_a_socket(api: Api) -> None:
    alice = await api.register()
    sock = await _raw(api)
    await sock.send("auth", {"token": alice.refresh_token})
    assert await sock.close_code() == 4401


async def test_silent_socket_is_closed_after_auth_timeout(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ws_module, "AUTH_TIMEOUT_S", 0.3)
    sock = await _raw(api)
    assert await sock.close_code(timeout=5) == 4401


async def test_ready_carries_user_session_and_resume_state(api: Api) -> None:
    alice = await api.register()
    ws = await api.ws(alice)
    assert ws.ready is not None
    assert ws.ready["user"]["id"] == alice.id and ws.ready["resume"] is None
    assert ws.ready["session"]
    again = await api.ws(alice, resume={"session": ws.ready["session"], "last_seq": 1})
    assert again.ready is not None and again.ready["resume"] == "resync"


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[]",
        '{"data": {}}',
        '{"type": 7}',
        '{"type": "message.send", "data": []}',
        '{"type": "no.such.event", "data": {}}',
        '{"type": "ping", "extra": 1}',
        '{"type": "ping", "ref": {"x": 1}}',
        json.dumps({"type": "ping", "ref": "r" * 65}),
        '{"type": "message.send", "data": {"room_id": "zz", "client_msg_id": "a", "text": "x"}}',
    ],
)
async def test_malformed_frames_get_invalid_request_and_socket_stays_open(
    api: Api, frame: str
) -> None:
    alice = await api.register()
    ws = await api.ws(alice)
    await ws.send_raw(frame)
    assert (await ws.expect("error"))["code"] == "invalid_request"
    await ws.send("ping", ref="still-here")
    assert (await ws.expect("pong"))["__ref"] == "still-here"


async def test_binary_frames_are_refused(api: Api) -> None:
    alice = await api.register()
    ws = await api.ws(alice)
    await ws.send_raw(b"\x00\x01")
    assert (await ws.expect("error"))["code"] == "invalid_request"


async def test_oversize_frame_refused_then_closed_if_repeated(api: Api) -> None:
    alice = await api.register()
    room = await api.group(alice)
    ws = await api.ws(alice)
    big = {"room_id": room, "client_msg_id": "big", "text": "x" * (65 * 1024)}
    await ws.send("message.send", big)
    assert (await ws.expect("error"))["code"] == "too_large"
    await ws.send("ping", ref="p")
    await ws.expect("pong")
    await ws.send("message.send", big)
    assert await ws.close_code() == 1009
    assert (await api.get(f"/history/room/{room}", alice)).body["messages"] == []


async def test_seq_increases_by_one_per_event(api: Api) -> None:
    alice = await api.register()
    room = await api.group(alice)
    ws = await api.ws(alice)
    for i in range(5):
        await api.send(alice, room, f"m{i}")
    for _ in range(5):
        await ws.expect("message.new")
    await ws.drain()
    assert ws.seqs == list(range(1, 11))  # an ack and a message.new per send; ready has none


async def test_presence_goes_to_contacts_only_once_per_user(api: Api) -> None:
    alice, bob, carol = await api.register(), await api.register(), await api.register()
    await api.group(alice, bob)
    alice_ws, carol_ws = await api.ws(alice), await api.ws(carol)
    bob_tab1 = await api.ws(bob)
    assert await alice_ws.expect("presence") == {"user_id": bob.id, "online": True}
    assert (await api.get(f"/users/{bob.id}", alice)).body["online"] is True
    bob_tab2 = await api.ws(bob)
    bob_tab1.close()
    await alice_ws.assert_none("presence")  # bob still has a tab open
    bob_tab2.close()
    assert await alice_ws.expect("presence") == {"user_id": bob.id, "online": False}
    await carol_ws.assert_none("presence")


async def test_integer_refs_are_echoed_as_sent(api: Api) -> None:
    alice = await api.register()
    ws = await api.ws(alice)
    await ws.send_raw('{"type": "ping", "ref": 42}')
    assert (await ws.expect("pong"))["__ref"] == 42
    await ws.send_raw('{"type": "ping", "ref": true}')
    assert (await ws.expect("error"))["code"] == "invalid_request"


async def test_a_method_other_than_get_gets_the_json_error_shape(api: Api) -> None:
    r = await api.post("/ws", {})
    assert r.status == 405
    assert r.body == {"error": {"code": "method_not_allowed", "message": "Method Not Allowed"}}


async def test_a_failure_before_the_upgrade_is_an_internal_error(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: ChatSocket, origin: str) -> bool:
        raise RuntimeError("a bug")

    monkeypatch.setattr(ChatSocket, "check_origin", broken)
    upgrade = {"Upgrade": "websocket", "Connection": "Upgrade", "Origin": "https://elsewhere"}
    r = await api.get("/ws", headers=upgrade)
    assert r.status == 500
    assert r.body == {"error": {"code": "internal_error", "message": "Internal Server Error"}}
