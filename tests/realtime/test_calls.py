"""1:1 call signaling and the call state machine, with real WebSocket clients (docs/calls.md):
every outcome, per-device relay, glare, dropped devices, the call records and timeline
entries, and what a third user can (not) do or learn."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fastsock.app import Server
from fastsock.config import Limits
from fastsock.logs import JsonFormatter
from tests.conftest import RELAXED, make_settings
from tests.support import Api, Socket, User

OFFER = {"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\n"}
ANSWER = {"type": "answer", "sdp": "v=0\r\no=- 3 4 IN IP4 127.0.0.1\r\ns=-\r\n"}
CANDIDATE = {
    "candidate": "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host",
    "sdpMid": "0",
    "sdpMLineIndex": 0,
}


async def _server(db_uri: str | None, tmp_path: Path, **overrides: Any) -> Server:
    settings = make_settings(
        db_uri,
        tmp_path,
        call_ring_s=1.5,
        call_grace_s=1.0,
        **overrides,
    )
    srv = Server(settings)
    await srv.start()
    return srv


@pytest.fixture
async def calls_server(db_uri: str | None, tmp_path: Path) -> AsyncIterator[Server]:
    srv = await _server(db_uri, tmp_path)
    yield srv
    await srv.stop()


@pytest.fixture
def calls_api(calls_server: Server) -> Api:
    return Api(calls_server.port)


async def _dm(api: Api, a: User, b: User) -> str:
    r = await api.post("/rooms/direct", {"user_id": b.id}, a)
    assert r.status in (200, 201), r.body
    return r.body["id"]


async def _invite(ws: Socket, room: str, media: str = "video") -> dict[str, Any]:
    """Invite and return the reply event's (type, data)."""
    ref = "inv-" + uuid.uuid4().hex[:6]
    await ws.send("call.invite", {"room_id": room, "media": media}, ref)
    for _ in range(50):
        frames = [f for f in await ws.drain(0.1) if f.get("ref") == ref]
        if frames:
            ws.frames.remove(frames[0])
            return frames[0]
    raise AssertionError("no reply to call.invite")


async def _do(ws: Socket, type_: str, data: dict[str, Any]) -> dict[str, Any]:
    """Send an event; its `ack` or `error` reply frame."""
    ref = type_ + "-" + uuid.uuid4().hex[:6]
    await ws.send(type_, data, ref)
    for _ in range(50):
        frames = [f for f in await ws.drain(0.1) if f.get("ref") == ref]
        if frames:
            ws.frames.remove(frames[0])
            return frames[0]
    raise AssertionError(f"no reply to {type_}")


def _call_frames(ws: Socket) -> list[dict[str, Any]]:
    return [f for f in ws.frames if f.get("type", "").startswith("call.")]


async def _history(api: Api, user: User, room: str) -> list[dict[str, Any]]:
    r = await api.get(f"/history/room/{room}", user)
    assert r.status == 200, r.body
    return r.body["messages"]


async def _unread(api: Api, user: User, room: str) -> int:
    rooms = (await api.get("/rooms", user)).body["rooms"]
    return next(r["unread_count"] for r in rooms if r["id"] == room)


async def test_a_video_call_rings_every_device_and_relays_only_between_the_two_in_it(
    calls_api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    api = calls_api
    alice, bob = await api.register(), await api.register()
    room = await _dm(api, alice, bob)
    alice_ws, alice_tab = await api.ws(alice), await api.ws(alice)
    bob_phone, bob_laptop = await api.ws(bob), await api.ws(bob)

    created = await _invite(alice_ws, room)
    assert created["type"] == "call.created" and created["data"]["here"] is True
    call = created["data"]["call"]
    assert call["state"] == "ringing" and call["media"] == "video"
    assert (call["caller_id"], call["callee_id"], call["room_id"]) == (alice.id, bob.id, room)
    for ws in (bob_phone, bob_laptop):
        ringing = await ws.expect("call.ringing")
        assert ringing["call"]["id"] == call["id"] and ringing["here"] is False
    await alice_tab.assert_none("call.created", quiet=0.2)  # only the inviting device
    bob_new_tab = await api.ws(bob)  # opened while ringing: it rings too
    assert (await bob_new_tab.expect("call.ringing"))["call"]["id"] == call["id"]

    assert (await _do(bob_laptop, "call.accept", {"call_id": call["id"]}))["type"] == "ack"
    for ws, here in (
        (alice_ws, True),
        (alice_tab, False),
        (bob_phone, False),
        (bob_new_tab, False),
        (bob_laptop, True),
    ):
        accepted = await ws.expect("call.accepted")
        assert accepted["call"]["state"] == "active" and accepted["here"] is here

    # SDP and candidates go between alice_ws and bob_laptop only.
    await _do(alice_ws, "call.signal", {"call_id": call["id"], "sdp": OFFER})
    assert await bob_laptop.expect("call.signal") == {
        "call_id": call["id"],
        "from": alice.id,
        "sdp": OFFER,
    }
    await _do(bob_laptop, "call.signal", {"call_id": call["id"], "sdp": ANSWER})
    assert (await alice_ws.expect("call.signal"))["sdp"] == ANSWER
    await _do(alice_ws, "call.signal", {"call_id": call["id"], "candidate": CANDIDATE})
    assert (await bob_laptop.expect("call.signal"))["candidate"] == CANDIDATE
    await _do(bob_laptop, "call.signal", {"call_id": call["id"], "candidate": None})
    assert (await alice_ws.expect("call.signal"))["candidate"] is None
    for ws in (alice_tab, bob_phone):
        await ws.assert_none("call.signal", quiet=0.2)
    # The other devices are not in the call: they cannot signal into it.
    refused = await _do(bob_phone, "call.signal", {"call_id": call["id"], "sdp": ANSWER})
    assert refused["type"] == "error" and refused["data"]["code"] == "forbidden"

    await asyncio.sleep(1.1)
    await _do(alice_ws, "call.hangup", {"call_id": call["id"]})
    for ws in (alice_ws, alice_tab, bob_phone, bob_laptop):
        ended = await ws.expect("call.ended")
        assert ended["reason"] == "hangup" and ended["duration_s"] >= 1
        assert ended["call"]["outcome"] == "completed" and ended["call"]["state"] == "ended"

    # The timeline entry: a call message from the caller, not unread for either side.
    entry = (await bob_phone.expect("message.new"))["message"]
    assert entry["type"] == "call" and entry["sender_id"] == alice.id
    assert entry["call"]["id"] == call["id"] and entry["call"]["duration_s"] >= 1
    assert (await _history(api, bob, room))[0]["id"] == entry["id"]
    assert await _unread(api, bob, room) == 0 and await _unread(api, alice, room) == 0

    calls = (await api.get(f"/rooms/{room}/calls", bob)).body
    assert [c["id"] for c in calls["calls"]] == [call["id"]] and calls["has_more"] is False
    assert calls["calls"][0]["outcome"] == "completed"
    metrics = (await api.get("/metrics")).body
    assert 'fastsock_calls_total{outcome="completed"} 1.0' in metrics
    assert "fastsock_call_setup_seconds_count 1.0" in metrics
    assert "fastsock_calls_active 0.0" in metrics
    # Logged: the outcome, never the SDP or candidates (they hold the users' addresses).
    lines = [JsonFormatter().format(r) for r in caplog.records]
    ended = [json.loads(line) for line in lines if '"call_ended"' in line]
    assert ended and ended[0]["outcome"] == "completed" and ended[0]["call_id"] == call["id"]
    assert not [line for line in lines if "IN IP4" in line or "typ host" in line]


@pytest.mark.parametrize(
    ("who", "event", "outcome", "unread"),
    [
        ("callee", "call.reject", "declined", 0),
        ("caller", "call.cancel", "cancelled", 1),
        ("callee", "call.hangup", "declined", 0),
        ("caller", "call.hangup", "cancelled", 1),
    ],
)
async def test_unanswered_calls_end_for_both_and_missed_ones_count_as_unread(
    calls_api: Api, who: str, event: str, outcome: str, unread: int
) -> None:
    api = calls_api
    alice, bob = await api.register(), await api.register()
    room = await _dm(api, alice, bob)
    alice_ws, bob_ws = await api.ws(alice), await api.ws(bob)
    call = (await _invite(alice_ws, room, "audio"))["data"]["call"]
    await bob_ws.expect("call.ringing")

    actor = bob_ws if who == "callee" else alice_ws
    assert (await _do(actor, event, {"call_id": call["id"]}))["type"] == "ack"
    for ws in (alice_ws, bob_ws):
        ended = await ws.expect(f"call.{outcome}")
        assert ended["call"]["outcome"] == outcome and ended["call"]["duration_s"] == 0
    entry = (await bob_ws.expect("message.new"))["message"]
    assert entry["call"]["outcome"] == outcome and entry["call"]["media"] == "audio"
    if unread == 0:
        # The entry is announced first, then bob's pointer moves past it: wait for that move
        # (on a loaded machine the REST read below could land in between).
        # (The entry's own `unread` event may come first: it counts the entry.)
        moved = await bob_ws.expect(
            "unread", lambda f: f["data"]["room_id"] == room and f["data"]["unread_count"] == 0
        )
        assert moved["mention_count"] == 0
    assert await _unread(api, bob, room) == unread
    # A finished call takes no more requests, and both can call again.
    late = await _do(bob_ws, "call.accept", {"call_id": call["id"]})
    assert late["type"] == "error" and late["data"]["code"] == "not_found"
    assert (await _invite(bob_ws, room))["type"] == "call.created"


async def test_a_declined_call_does_not_mark_earlier_messages_read(calls_api: Api) -> None:
    api = calls_api
    alice, bob = await api.register(), await api.register()
    room = await _dm(api, alice, bob)
    for text in ("are you there?", "call me"):
        await api.send(alice, room, text)
    alice_ws, bob_ws = await api.ws(alice), await api.ws(bob)
    call = (await _invite(alice_ws, room))["data"]["call"]
    await _do(bob_ws, "call.reject", {"call_id": call["id"]})
    entry = await bob_ws.expect("message.new")
    assert entry["message"]["call"]["outcome"] == "declined"
    # Bob has not read the two messages: declining does not say he did.
    assert await _unread(api, bob, room) == 3
    await alice_ws.assert_none("message.read", quiet=0.3)


async def test_a_call_nobody_answers_is_missed(calls_api: Api) -> None:
    api = calls_api
    alice, bob = await api.register(), await api.register()
    room = await _dm(api, alice, bob)
    alice_ws, bob_ws = await api.ws(alice), await api.ws(bob)
    call = (await _invite(alice_ws, room))["data"]["call"]
    await bob_ws.expect("call.ringing")
    for ws in (alice_ws, bob_ws):  # the test server rings for 1.5 s
        missed = await ws.expect("call.missed", timeout=5)
        assert missed["call"]["id"] == call["id"] and missed["call"]["outcome"] == "missed"
    entry = (await bob_ws.expect("message.new"))["message"]
    assert (await _history(api, bob, room))[0] == entry
    assert entry["call"]["outcome"] == "missed"
    assert await _unread(api, bob, room) == 1


async def test_busy_and_unavailable_callees(calls_api: Api) -> None:
    api = calls_api
    alice, bob, carol = await api.register(), await api.register(), await api.register()
    bob_room, carol_room = await _dm(api, alice, bob), await _dm(api, carol, bob)

    # Bob is offline: unavailable at once, and a missed call waits for him.
    alice_ws = await api.ws(alice)
    reply = await _invite(alice_ws, bob_room)
    assert reply["type"] == "call.unavailable" and reply["data"]["here"] is True
    assert reply["data"]["call"]["outcome"] == "unavailable"
    assert await _unread(api, bob, bob_room) == 1

    # Bob is on a call with Carol: busy.
    bob_ws, carol_ws = await api.ws(bob), await api.ws(carol)
    with_carol = (await _invite(carol_ws, carol_room))["data"]["call"]
    await _do(bob_ws, "call.accept", {"call_id": with_carol["id"]})
    reply = await _invite(alice_ws, bob_room)
    assert reply["type"] == "call.busy" and reply["data"]["call"]["outcome"] == "busy"
    entry = await bob_ws.expect("message.new", lambda f: f["data"]["message"]["type"] == "call")
    assert entry["message"]["call"]["outcome"] == "busy"
    assert [f["type"] for f in _call_frames(bob_ws) if f["type"] == "call.busy"] == []
    # The busy attempt changed nothing in Bob's call.
    await _do(carol_ws, "call.signal", {"call_id": with_carol["id"], "sdp": OFFER})
    assert (await bob_ws.expect("call.signal"))["sdp"] == OFFER

    # A caller already in a call cannot place another.
    refused = await _do(carol_ws, "call.invite", {"room_id": carol_room, "media": "audio"})
    assert refused["type"] == "error" and refused["data"]["code"] == "conflict"
    outcomes = [
        c["outcome"] for c in (await api.get(f"/rooms/{bob_room}/calls", bob)).body["calls"]
    ]
    assert outcomes == ["busy", "unavailable"]


async def test_glare_resolves_to_one_call(calls_api: Api) -> None:
    api = calls_api
    alice, bob = await api.register(), await api.register()
    room = await _dm(api, alice, bob)
    alice_ws, bob_ws = await api.ws(alice), await api.ws(bob)
    first = (await _invite(alice_ws, room))["data"]["call"]
    await bob_ws.expect("call.ringing")
    # Bob calls Alice at the same moment: his invite answers her call from his device.
    reply = await _invite(bob_ws, room)
    assert reply["type"] == "call.accepted" and reply["data"]["here"] is True
    assert reply["data"]["call"]["id"] == first["id"]
    assert (await alice_ws.expect("call.accepted"))["call"]["id"] == first["id"]
    await _do(alice_ws, "call.signal", {"call_id": first["id"], "sdp": OFFER})
    assert (await bob_ws.expect("call.signal"))["sdp"] == OFFER
    calls = (await api.get(f"/rooms/{room}/calls", alice)).body["calls"]
    assert [c["id"] for c in calls] == [first["id"]]


async def test_simultaneous_invites_make_one_call_created_before_it_is_accepted(
    calls_api: Api,
) -> None:
    api = calls_api
    alice, bob = await api.register(), await api.register()
    room = await _dm(api, alice, bob)
    alice_ws, bob_ws = await api.ws(alice), await api.ws(bob)
    # Both press "call" at once: neither waits for the other's invite to be answered.
    await alice_ws.send("call.invite", {"room_id": room, "media": "video"}, "a")
    await bob_ws.send("call.invite", {"room_id": room, "media": "video"}, "b")
    frames: dict[str, list[dict[str, Any]]] = {}
    for ref, ws in (("a", alice_ws), ("b", bob_ws)):
        for _ in range(50):
            if any(f.get("type") == "call.accepted" for f in ws.frames):
                break
            await ws.drain(0.1)
        frames[ref] = [f for f in ws.frames if f.get("type", "").startswith("call.")]
    replies = {ref: next(f for f in fs if f.get("ref") == ref) for ref, fs in frames.items()}
    # One of them placed the call (call.created) and the other's invite answered it.
    assert sorted(f["type"] for f in replies.values()) == ["call.accepted", "call.created"]
    caller = next(r for r, f in replies.items() if f["type"] == "call.created")
    call_id = replies[caller]["data"]["call"]["id"]
    assert [f["type"] for f in frames[caller]] == ["call.created", "call.accepted"]
    assert all(f["data"]["call"]["id"] == call_id for fs in frames.values() for f in fs)
    calls = (await api.get(f"/rooms/{room}/calls", alice)).body["calls"]
    assert [c["id"] for c in calls] == [call_id]


async def test_outsiders_cannot_place_join_signal_or_observe_calls(calls_api: Api) -> None:
    api = calls_api
    alice, bob, mallory = await api.register(), await api.register(), await api.register()
    room = await _dm(api, alice, bob)
    alice_ws, bob_ws, mallory_ws = await api.ws(alice), await api.ws(bob), await api.ws(mallory)

    refused = await _do(mallory_ws, "call.invite", {"room_id": room, "media": "audio"})
    assert refused["type"] == "error" and refused["data"]["code"] == "not_a_member"
    assert (await api.get(f"/rooms/{room}/calls", mallory)).status == 403

    call = (await _invite(alice_ws, room))["data"]["call"]
    await bob_ws.expect("call.ringing")
    for event, data in (
        ("call.accept", {"call_id": call["id"]}),
        ("call.reject", {"call_id": call["id"]}),
        ("call.hangup", {"call_id": call["id"]}),
        ("call.cancel", {"call_id": call["id"]}),
        ("call.signal", {"call_id": call["id"], "sdp": OFFER}),
        ("call.signal", {"call_id": "0" * 24, "candidate": CANDIDATE}),
    ):
        refused = await _do(mallory_ws, event, data)
        # The same answer as for a call that does not exist: nothing to learn.
        assert refused["type"] == "error" and refused["data"]["code"] == "not_found", event
    await _do(bob_ws, "call.accept", {"call_id": call["id"]})
    await _do(alice_ws, "call.signal", {"call_id": call["id"], "sdp": OFFER})
    await bob_ws.expect("call.signal")
    await mallory_ws.drain(0.3)
    assert _call_frames(mallory_ws) == []
    assert (await alice_ws.expect("call.accepted"))["call"]["state"] == "active"


async def test_calls_are_placed_in_direct_rooms_with_valid_signals(calls_api: Api) -> None:
    api = calls_api
    alice, bob = await api.register(), await api.register()
    group = await api.group(alice, bob)
    room = await _dm(api, alice, bob)
    alice_ws, bob_ws = await api.ws(alice), await api.ws(bob)

    for data in (
        {"room_id": group, "media": "video"},
        {"room_id": room, "media": "screen"},
        {"room_id": room},
        {"room_id": room, "media": "audio", "extra": 1},
    ):
        refused = await _do(alice_ws, "call.invite", data)
        assert refused["data"]["code"] == "invalid_request", data
    call = (await _invite(alice_ws, room))["data"]["call"]
    early = await _do(alice_ws, "call.signal", {"call_id": call["id"], "sdp": OFFER})
    assert early["data"]["code"] == "conflict"  # nothing is relayed before the callee accepts
    await _do(bob_ws, "call.accept", {"call_id": call["id"]})
    for bad in (
        {"call_id": call["id"]},
        {"call_id": call["id"], "sdp": OFFER, "candidate": CANDIDATE},
        {"call_id": call["id"], "sdp": {"type": "rollback", "sdp": "x"}},
        {"call_id": call["id"], "sdp": {"type": "offer", "sdp": "x" * 60_001}},
        {"call_id": call["id"], "candidate": {"candidate": 5}},
        {"call_id": call["id"], "candidate": {"candidate": "c", "port": 1}},
    ):
        refused = await _do(alice_ws, "call.signal", bad)
        assert refused["data"]["code"] == "invalid_request", bad
    await bob_ws.assert_none("call.signal", quiet=0.2)
    # Callers cannot forge call entries with a reserved client_msg_id.
    r = await api.post(
        f"/rooms/{room}/messages", {"client_msg_id": "call:" + call["id"], "text": "x"}, alice
    )
    assert r.status == 400 and r.body["error"]["field"] == "client_msg_id"
    assert await _history(api, alice, room) == []


async def test_a_dropped_device_can_resume_within_the_grace_period(calls_api: Api) -> None:
    api = calls_api
    alice, bob = await api.register(), await api.register()
    room = await _dm(api, alice, bob)
    alice_ws, bob_ws = await api.ws(alice), await api.ws(bob)
    call = (await _invite(alice_ws, room))["data"]["call"]
    await _do(bob_ws, "call.accept", {"call_id": call["id"]})
    await alice_ws.expect("call.accepted")

    # Alice's socket drops; Bob's answer reaches her session while she is away.
    session, last_seq = alice_ws.ready["session"], alice_ws.seqs[-1]
    alice_ws.close()
    await asyncio.sleep(0.2)
    await _do(bob_ws, "call.signal", {"call_id": call["id"], "sdp": ANSWER})
    back = await api.ws(alice, resume={"session": session, "last_seq": last_seq})
    assert back.ready["resume"] == "ok"
    assert (await back.expect("call.signal"))["sdp"] == ANSWER
    await asyncio.sleep(1.3)  # past the 1 s grace: resumed in time, the call goes on
    await bob_ws.assert_none("call.ended", quiet=0.1)

    # This time she does not come back: the call ends for Bob.
    back.close()
    ended = await bob_ws.expect("call.ended", timeout=5)
    assert ended["reason"] == "connection_lost" and ended["call"]["outcome"] == "completed"


async def test_call_invites_are_rate_limited(db_uri: str | None, tmp_path: Path) -> None:
    srv = await _server(
        db_uri, tmp_path, limits=Limits(**{**_relaxed(), "call_invites_per_min": 5})
    )
    try:
        api = Api(srv.port)
        alice, bob = await api.register(), await api.register()
        room = await _dm(api, alice, bob)
        alice_ws, _bob_ws = await api.ws(alice), await api.ws(bob)
        for _ in range(5):
            call = (await _invite(alice_ws, room))["data"]["call"]
            await _do(alice_ws, "call.cancel", {"call_id": call["id"]})
        refused = await _invite(alice_ws, room)
        assert refused["type"] == "error" and refused["data"]["code"] == "rate_limited"
        assert refused["data"]["retry_after"] > 0
    finally:
        await srv.stop()


async def test_shutdown_ends_live_calls(db_uri: str | None, tmp_path: Path) -> None:
    srv = await _server(db_uri, tmp_path)
    api = Api(srv.port)
    alice, bob = await api.register(), await api.register()
    room = await _dm(api, alice, bob)
    alice_ws, bob_ws = await api.ws(alice), await api.ws(bob)
    call = (await _invite(alice_ws, room))["data"]["call"]
    await _do(bob_ws, "call.accept", {"call_id": call["id"]})
    await srv.stop()
    ended = await bob_ws.expect("call.ended")
    assert ended["reason"] == "shutdown" and ended["call"]["outcome"] == "completed"
    entry = (await bob_ws.expect("message.new"))["message"]  # recorded before the close
    assert entry["call"]["end_reason"] == "shutdown"


async def test_no_call_starts_once_shutdown_has_begun(calls_server: Server) -> None:
    api = Api(calls_server.port)
    alice, bob = await api.register(), await api.register()
    room = await _dm(api, alice, bob)
    alice_ws, _bob_ws = await api.ws(alice), await api.ws(bob)
    assert calls_server.ctx is not None
    await calls_server.ctx.services.calls.close()  # the first step of a shutdown
    refused = await _do(alice_ws, "call.invite", {"room_id": room, "media": "audio"})
    assert refused["type"] == "error" and refused["data"]["code"] == "unavailable"


def _relaxed() -> dict[str, Any]:
    return {f: getattr(RELAXED, f) for f in RELAXED.__dataclass_fields__}


async def _active_call(api: Api) -> tuple[User, User, str, str, Socket, Socket]:
    """Alice calls Bob, who answers: (alice, bob, room, call id, alice's and bob's devices)."""
    alice, bob = await api.register(), await api.register()
    room = await _dm(api, alice, bob)
    alice_ws, bob_ws = await api.ws(alice), await api.ws(bob)
    call = (await _invite(alice_ws, room))["data"]["call"]
    assert (await _do(bob_ws, "call.accept", {"call_id": call["id"]}))["type"] == "ack"
    await alice_ws.expect("call.accepted")
    return alice, bob, room, call["id"], alice_ws, bob_ws


async def test_media_state_goes_only_to_the_other_device_in_the_call(calls_api: Api) -> None:
    api = calls_api
    alice, bob, mallory = await api.register(), await api.register(), await api.register()
    room = await _dm(api, alice, bob)
    alice_ws, alice_tab = await api.ws(alice), await api.ws(alice)
    bob_phone, bob_laptop, mallory_ws = await api.ws(bob), await api.ws(bob), await api.ws(mallory)
    call = (await _invite(alice_ws, room))["data"]["call"]
    muted = {"call_id": call["id"], "audio": False, "video": True}
    # Ringing: there is no media to speak of yet.
    early = await _do(alice_ws, "call.media_state", muted)
    assert early["type"] == "error" and early["data"]["code"] == "not_found"
    await _do(bob_laptop, "call.accept", {"call_id": call["id"]})
    await alice_ws.expect("call.accepted")

    assert (await _do(alice_ws, "call.media_state", muted))["type"] == "ack"
    assert await bob_laptop.expect("call.media_state") == {**muted, "from": alice.id}
    camera_off = {"call_id": call["id"], "audio": True, "video": False}
    assert (await _do(bob_laptop, "call.media_state", camera_off))["type"] == "ack"
    assert await alice_ws.expect("call.media_state") == {**camera_off, "from": bob.id}
    # Bob's other device is not in the call: it cannot speak for it.
    refused = await _do(bob_phone, "call.media_state", muted)
    assert refused["type"] == "error" and refused["data"]["code"] == "forbidden"
    # Outsiders get the answer a call that does not exist gets.
    for call_id in (call["id"], "0" * 24):
        refused = await _do(mallory_ws, "call.media_state", {**muted, "call_id": call_id})
        assert refused["type"] == "error" and refused["data"]["code"] == "not_found"

    # A message to the room reaches every device after any relay sent before it: none but
    # the two expected above (which `expect` took) went anywhere, and no echo came back.
    await api.send(alice, room, "barrier")
    for ws in (alice_ws, alice_tab, bob_phone, bob_laptop):
        await ws.expect("message.new")
        assert not [f for f in ws.frames if f.get("type") == "call.media_state"]
    await mallory_ws.drain(0.3)
    assert _call_frames(mallory_ws) == []

    await _do(alice_ws, "call.hangup", {"call_id": call["id"]})
    late = await _do(bob_laptop, "call.media_state", camera_off)
    assert late["type"] == "error" and late["data"]["code"] == "not_found"


async def test_media_state_bodies_are_checked(calls_api: Api) -> None:
    api = calls_api
    _alice, _bob, _room, call_id, alice_ws, bob_ws = await _active_call(api)
    for bad, field in (
        ({"call_id": call_id, "audio": True}, "video"),
        ({"call_id": call_id, "video": True}, "audio"),
        ({"call_id": call_id, "audio": "yes", "video": True}, "audio"),
        ({"call_id": call_id, "audio": True, "video": 1}, "video"),
        ({"call_id": call_id, "audio": None, "video": True}, "audio"),
        ({"call_id": "nope", "audio": True, "video": True}, "call_id"),
        ({"audio": True, "video": True}, "call_id"),
        ({"call_id": call_id, "audio": True, "video": True, "screen": True}, "screen"),
    ):
        refused = await _do(alice_ws, "call.media_state", bad)
        assert refused["type"] == "error", bad
        assert refused["data"]["code"] == "invalid_request", bad
        assert refused["data"]["field"] == field, bad
    # Nothing was relayed, and the connection still works.
    await _do(alice_ws, "call.signal", {"call_id": call_id, "sdp": OFFER})
    assert (await bob_ws.expect("call.signal"))["sdp"] == OFFER
    assert not [f for f in bob_ws.frames if f.get("type") == "call.media_state"]


async def test_media_state_is_rate_limited(db_uri: str | None, tmp_path: Path) -> None:
    # One budget for a call's signals and media-state changes: a client cannot flood the peer.
    limits = Limits(**{**_relaxed(), "call_signals_per_s": 0.01, "call_signals_burst": 2})
    srv = await _server(db_uri, tmp_path, limits=limits)
    try:
        api = Api(srv.port)
        alice, _bob, room, call_id, alice_ws, bob_ws = await _active_call(api)
        state = {"call_id": call_id, "audio": False, "video": False}
        for _ in range(2):
            assert (await _do(alice_ws, "call.media_state", state))["type"] == "ack"
        for event, data in (
            ("call.media_state", state),
            ("call.signal", {"call_id": call_id, "sdp": OFFER}),
        ):
            refused = await _do(alice_ws, event, data)
            assert refused["type"] == "error" and refused["data"]["code"] == "rate_limited"
            assert refused["data"]["retry_after"] > 0
        await bob_ws.expect("call.media_state")
        await bob_ws.expect("call.media_state")
        # A room message reaches Bob after any relay sent before it: there was no other.
        await api.send(alice, room, "barrier")
        await bob_ws.expect("message.new")
        assert not [
            f for f in bob_ws.frames if f.get("type") in ("call.signal", "call.media_state")
        ]
    finally:
        await srv.stop()


async def test_large_sdps_cost_more_of_the_signal_budget(
    db_uri: str | None, tmp_path: Path
) -> None:
    # A burst of large SDPs would get the callee's socket closed as too slow: each 4 KiB costs
    # one more signal, so the default burst lets about 400 KB through, not 6 MB.
    limits = Limits(**{**_relaxed(), "call_signals_per_s": 0.01, "call_signals_burst": 100})
    srv = await _server(db_uri, tmp_path, limits=limits)
    try:
        api = Api(srv.port)
        *_, call_id, alice_ws, bob_ws = await _active_call(api)
        big = {"type": "offer", "sdp": OFFER["sdp"] + "a=x-pad:" + "p" * 59_000 + "\r\n"}
        answers = [await _do(alice_ws, "call.signal", {"call_id": call_id, "sdp": big})]
        while answers[-1]["type"] == "ack" and len(answers) < 20:
            answers.append(await _do(alice_ws, "call.signal", {"call_id": call_id, "sdp": big}))
        assert [a["type"] for a in answers] == ["ack"] * 6 + ["error"]  # 15 tokens each
        assert answers[-1]["data"]["code"] == "rate_limited"
        for _ in range(6):
            await bob_ws.expect("call.signal")
        assert not bob_ws.closed
    finally:
        await srv.stop()
