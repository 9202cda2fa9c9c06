"""Typing indicators: relayed to the other members, throttled, expired, ended by a send or a
disconnect, and never sent by or to anyone outside the room."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from fastsock.services import typing as typing_module
from tests.support import Api, Socket


def _typing(frames: list[dict[str, Any]], active: bool | None = None) -> list[dict[str, Any]]:
    return [
        f["data"]
        for f in frames
        if f["type"] == "typing" and (active is None or f["data"]["active"] is active)
    ]


async def _type(ws: Socket, room: str, active: bool = True) -> None:
    """Send a typing frame and wait for its ack (so the server has handled it)."""
    ref = "t-" + uuid.uuid4().hex[:8]
    await ws.send("typing", {"room_id": room, "active": active}, ref)
    await ws.expect("ack", lambda f: f.get("ref") == ref)


def _is_active(active: bool) -> Any:
    return lambda f: f["data"]["active"] is active


async def test_typing_is_relayed_to_the_others_and_throttled(api: Api) -> None:
    alice, bob, carol = await api.register(), await api.register(), await api.register()
    room = await api.group(alice, bob, carol)
    alice_ws, bob_ws, carol_ws = await api.ws(alice), await api.ws(bob), await api.ws(carol)

    started = time.monotonic()
    for _ in range(5):  # a burst of keystrokes within the 2 s window: one relay
        await _type(alice_ws, room)
    assert time.monotonic() - started < 1.0
    for ws in (bob_ws, carol_ws):
        relayed = await ws.expect("typing")
        assert relayed == {"room_id": room, "user_id": alice.id, "active": True}
    # Keep refreshing until just before the 2 s window ends: still nothing more is relayed.
    while time.monotonic() - started < 1.5:
        await asyncio.sleep(0.1)
        await _type(alice_ws, room)
    await bob_ws.assert_none("typing", quiet=0.3)
    await carol_ws.assert_none("typing", quiet=0.0)
    await alice_ws.assert_none("typing", quiet=0.0)  # never to the typer itself

    # Once 2 s have passed since the last relay, a refresh is relayed again (once).
    while time.monotonic() - started < 2.2:
        await asyncio.sleep(0.1)
        await _type(alice_ws, room)
    await _type(alice_ws, room)
    for ws in (bob_ws, carol_ws):
        relayed = await ws.expect("typing")
        assert relayed == {"room_id": room, "user_id": alice.id, "active": True}
    await bob_ws.assert_none("typing", quiet=0.3)
    await alice_ws.assert_none("typing", quiet=0.0)


async def test_indicator_expires_without_a_refresh(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(typing_module, "EXPIRY_S", 1.0)
    monkeypatch.setattr(typing_module, "RELAY_INTERVAL_S", 30.0)  # refreshes relay nothing
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    alice_ws, bob_ws = await api.ws(alice), await api.ws(bob)

    await _type(alice_ws, room)
    await bob_ws.expect("typing", _is_active(True))
    # Refreshes within the expiry keep the indicator alive past its first expiry time.
    for _ in range(5):
        await bob_ws.drain(0.4)
        await _type(alice_ws, room)
    assert not _typing(bob_ws.frames, active=False), "expired despite refreshes"
    last_refresh = time.monotonic()
    ended = await bob_ws.expect("typing", _is_active(False), timeout=3.0)
    elapsed = time.monotonic() - last_refresh
    assert ended == {"room_id": room, "user_id": alice.id, "active": False}
    assert 0.8 <= elapsed <= 2.0, elapsed
    await bob_ws.assert_none("typing", quiet=0.3)  # expired once, not repeatedly

    # After expiry, typing again is a new indicator: relayed at once when the relay interval
    # (2 s by default, shorter than the expiry) has passed.
    monkeypatch.setattr(typing_module, "RELAY_INTERVAL_S", 0.5)
    await _type(alice_ws, room)
    await bob_ws.expect("typing", _is_active(True), timeout=1.0)


async def test_quick_stop_and_start_cannot_force_extra_relays(api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    alice_ws, bob_ws = await api.ws(alice), await api.ws(bob)
    for _ in range(5):  # within well under 2 s
        await _type(alice_ws, room)
        await _type(alice_ws, room, active=False)
    await _type(alice_ws, room)
    await bob_ws.drain(0.5)
    assert len(_typing(bob_ws.frames, active=True)) == 1
    # Every relayed start is matched by a stop, and nothing is relayed that did not start.
    assert len(_typing(bob_ws.frames, active=False)) == 1


async def test_default_expiry_is_six_seconds_and_inactive_is_relayed_at_once(api: Api) -> None:
    assert typing_module.EXPIRY_S == 6.0 and typing_module.RELAY_INTERVAL_S == 2.0
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    alice_ws, bob_ws = await api.ws(alice), await api.ws(bob)
    await _type(alice_ws, room)
    await bob_ws.expect("typing", _is_active(True))
    # active:false is not throttled: it is relayed immediately, within the 2 s window.
    stopped = time.monotonic()
    await _type(alice_ws, room, active=False)
    ended = await bob_ws.expect("typing", _is_active(False), timeout=1.0)
    assert ended == {"room_id": room, "user_id": alice.id, "active": False}
    assert time.monotonic() - stopped < 1.0
    # Stopping twice relays nothing more.
    await _type(alice_ws, room, active=False)
    await bob_ws.assert_none("typing", quiet=0.3)


async def test_sending_a_message_ends_the_indicator_at_once(api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    alice_ws, bob_ws = await api.ws(alice), await api.ws(bob)
    await _type(alice_ws, room)
    await bob_ws.expect("typing", _is_active(True))

    await alice_ws.send("message.send", {"room_id": room, "client_msg_id": "m1", "text": "hi"})
    await alice_ws.expect("message.ack")
    await bob_ws.expect("message.new", timeout=1.0)
    # The indicator's end arrived before (or with) the message, not seconds later.
    assert _typing(bob_ws.frames, active=False) == [
        {"room_id": room, "user_id": alice.id, "active": False}
    ]
    await bob_ws.expect("typing", _is_active(False))
    await bob_ws.assert_none("typing", quiet=0.3)


async def test_closing_the_typers_last_socket_ends_the_indicator(api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    tab1, tab2, bob_ws = await api.ws(alice), await api.ws(alice), await api.ws(bob)
    await _type(tab1, room)
    await bob_ws.expect("typing", _is_active(True))

    tab1.close()  # alice still has another tab open: she may still be typing there
    await bob_ws.assert_none("typing", quiet=0.5)
    closed = time.monotonic()
    tab2.close()
    ended = await bob_ws.expect("typing", _is_active(False), timeout=3.0)
    assert ended == {"room_id": room, "user_id": alice.id, "active": False}
    assert time.monotonic() - closed < 3.0  # well before the 6 s expiry


async def test_non_member_can_neither_send_nor_receive_typing(api: Api) -> None:
    alice, bob, eve = await api.register(), await api.register(), await api.register()
    room = await api.group(alice, bob)
    await api.group(eve, alice)  # eve shares another room with alice
    alice_ws, bob_ws, eve_ws = await api.ws(alice), await api.ws(bob), await api.ws(eve)

    # Eve cannot type into the room.
    await eve_ws.send("typing", {"room_id": room, "active": True}, "eve")
    error = await eve_ws.expect("error", lambda f: f.get("ref") == "eve")
    assert error["code"] == "not_a_member"
    # Nor into a room that does not exist (same answer, nothing learned).
    await eve_ws.send("typing", {"room_id": uuid.uuid4().hex[:24], "active": True}, "ghost")
    error = await eve_ws.expect("error", lambda f: f.get("ref") == "ghost")
    assert error["code"] == "not_a_member"

    # Eve does not hear the room's typing, even though she shares another room with alice.
    await _type(alice_ws, room)
    await bob_ws.expect("typing", _is_active(True))
    await _type(alice_ws, room, active=False)
    await bob_ws.expect("typing", _is_active(False))
    await eve_ws.assert_none("typing", quiet=0.5)
    await alice_ws.assert_none("typing", quiet=0.0)
    assert not _typing(bob_ws.frames), "bob heard eve's refused typing"

    # A member who leaves stops hearing it too.
    r = await api.delete(f"/rooms/{room}/members/{bob.id}", bob)
    assert r.status == 204, r.body
    await _type(alice_ws, room)
    await bob_ws.assert_none("typing", quiet=0.5)


async def test_invalid_typing_frames_are_refused(api: Api) -> None:
    alice = await api.register()
    room = await api.group(alice)
    ws = await api.ws(alice)
    for i, data in enumerate(
        [
            {"room_id": room},
            {"room_id": room, "active": "yes"},
            {"room_id": "nope", "active": True},
            {"active": True},
            {"room_id": room, "active": True, "extra": 1},
        ]
    ):
        await ws.send("typing", data, f"bad{i}")
        error = await ws.expect("error", lambda f, i=i: f.get("ref") == f"bad{i}")
        assert error["code"] == "invalid_request", (data, error)
