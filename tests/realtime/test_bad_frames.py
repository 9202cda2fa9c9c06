"""Frames that used to drop the socket, break another user's stream, or lose their `ref`:
each now gets `error` (with the ref, when it is usable), changes nothing, and the socket stays
open. REST inputs: tests/handlers/test_bad_inputs.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.handlers.test_bad_inputs import DEEP, LONE, deep_json, token_for
from tests.realtime.test_calls import _dm, _do, _invite
from tests.realtime.test_socket import _raw
from tests.support import Api, Socket


def frame_with_lone_surrogate(frame: dict[str, Any]) -> str:
    """`frame` as JSON, every "<S>" replaced by a lone surrogate escape."""
    return json.dumps(frame).replace("<S>", LONE)


async def assert_open(ws: Socket) -> None:
    await ws.send("ping", ref="still-open")
    assert (await ws.expect("pong"))["__ref"] == "still-open"


async def error_for(ws: Socket, ref: Any) -> dict[str, Any]:
    error = await ws.expect("error", match=lambda f: f.get("ref") == ref)
    assert error["code"] == "invalid_request", error
    return error


async def test_lone_surrogates_in_any_event_are_refused_with_the_ref(api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    msg = await api.send(alice, room, "unchanged")
    ws, bob_ws = await api.ws(alice), await api.ws(bob)
    cases: list[tuple[str, dict[str, Any], str | None]] = [
        ("message.send", {"room_id": room, "client_msg_id": "c1", "text": "a<S>"}, "text"),
        ("message.send", {"room_id": room, "client_msg_id": "<S>", "text": "a"}, "client_msg_id"),
        ("message.edit", {"message_id": msg["id"], "text": "<S>"}, "text"),
        ("reaction.add", {"message_id": msg["id"], "emoji": "<S>"}, "emoji"),
        ("typing", {"room_id": room, "active": True, "<S>": 1}, None),
        ("message.delivered", {"message_ids": [msg["id"], "<S>"]}, "message_ids"),
        ("no.such.event", {"x": {"y": ["<S>"]}}, "x"),
        ("ping", {"<S>": "<S>"}, None),
    ]
    for n, (type_, data, field) in enumerate(cases):
        await ws.send_raw(frame_with_lone_surrogate({"type": type_, "data": data, "ref": n}))
        error = await error_for(ws, n)
        assert error.get("field") == field, (type_, error)
    await assert_open(ws)
    history = (await api.get(f"/history/room/{room}", alice)).body["messages"]
    assert [(m["text"], m["reactions"]) for m in history] == [("unchanged", {})]
    # Nothing reached bob (a typing indicator, an edit, a reaction).
    await assert_open(bob_ws)
    assert [f for f in bob_ws.frames if f["type"] != "presence"] == []


async def test_a_lone_surrogate_in_a_call_signal_never_reaches_the_partner(api: Api) -> None:
    """It used to be relayed, fail to encode on the way out, and leave the callee's replay
    buffer unable to resume; now it is refused at the door."""
    alice, bob = await api.register(), await api.register()
    room = await _dm(api, alice, bob)
    alice_ws, bob_ws = await api.ws(alice), await api.ws(bob)
    call_id = (await _invite(alice_ws, room, "audio"))["data"]["call"]["id"]
    await bob_ws.expect("call.ringing")
    assert (await _do(bob_ws, "call.accept", {"call_id": call_id}))["type"] == "ack"
    for data in (
        {"call_id": call_id, "sdp": {"type": "offer", "sdp": "v=0<S>"}},
        {"call_id": call_id, "candidate": {"candidate": "a<S>", "sdpMid": "0"}},
    ):
        await alice_ws.send_raw(
            frame_with_lone_surrogate({"type": "call.signal", "data": data, "ref": "sig"})
        )
        assert (await error_for(alice_ws, "sig"))["field"] in ("sdp", "candidate")
    await assert_open(alice_ws)
    assert not [f for f in await bob_ws.drain() if f["type"] == "call.signal"]
    # The callee's stream still resumes, and a proper signal still gets through.
    assert bob_ws.ready is not None
    bob_ws.close()
    await bob_ws.close_code()
    sdp = {"type": "offer", "sdp": "v=0"}
    ok = await _do(alice_ws, "call.signal", {"call_id": call_id, "sdp": sdp})
    assert ok["type"] == "ack", ok
    resumed = await api.ws(
        bob, resume={"session": bob_ws.ready["session"], "last_seq": bob_ws.seqs[-1]}
    )
    assert resumed.ready is not None and resumed.ready["resume"] == "ok"
    assert (await resumed.expect("call.signal"))["sdp"] == sdp


async def test_json_nested_thousands_deep_is_refused_and_the_socket_stays_open(
    api: Api,
) -> None:
    alice = await api.register()
    ws = await api.ws(alice)
    frame = b'{"type": "ping", "ref": "deep", "data": {"x": ' + deep_json(DEEP) + b"}}"
    await ws.send_raw(frame.decode())
    error = await ws.expect("error")
    assert error["code"] == "invalid_request" and "__ref" not in error  # unparsed: no ref
    await assert_open(ws)


@pytest.mark.parametrize(
    ("frame", "ref"),
    [
        ('{"type": "ping", "data": [], "ref": "r1"}', "r1"),
        ('{"type": "message.send", "data": "text", "ref": 7}', 7),
        ('{"type": 7, "ref": "r2"}', "r2"),
        ('{"data": {}, "ref": "r3"}', "r3"),
        ('{"type": "ping", "ref": "r4", "extra": 1}', "r4"),
        (f'{{"type": "ping", "ref": "r5", "{LONE}": 1}}', "r5"),
    ],
)
async def test_a_malformed_frame_with_a_usable_ref_gets_it_back(
    api: Api, frame: str, ref: Any
) -> None:
    alice = await api.register()
    ws = await api.ws(alice)
    await ws.send_raw(frame)
    await error_for(ws, ref)
    await assert_open(ws)


@pytest.mark.parametrize(
    "frame",
    [
        f'{{"type": "ping", "ref": "a{LONE}"}}',
        '{"type": "ping", "ref": 1.5}',
        json.dumps({"type": "ping", "data": [], "ref": "r" * 65}),
    ],
)
async def test_an_unusable_ref_is_not_echoed(api: Api, frame: str) -> None:
    alice = await api.register()
    ws = await api.ws(alice)
    await ws.send_raw(frame)
    error = await ws.expect("error")
    assert error["code"] == "invalid_request" and "__ref" not in error
    await assert_open(ws)


async def test_auth_with_a_signed_token_for_a_malformed_user_id_closes_4401(api: Api) -> None:
    alice = await api.register()
    for sub in ("zzz", alice.id.upper(), 5):
        sock = await _raw(api)
        await sock.send("auth", {"token": token_for(sub)})
        assert await sock.close_code() == 4401, sub
        assert not [f for f in sock.frames if f["type"] == "ready"]
