"""Delivery states (Sent -> Delivered -> Read) seen by the sender, and message receipts."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from tests.support import Api, Socket, User


async def _dm(api: Api, a: User, b: User) -> str:
    r = await api.post("/rooms/direct", {"user_id": b.id}, a)
    assert r.status in (200, 201), r.body
    return r.body["id"]


async def _send_ws(ws: Socket, room: str, text: str) -> dict[str, Any]:
    """Send over the socket and wait for its Sent state (message.ack with our ref)."""
    ref = "send-" + uuid.uuid4().hex[:8]
    cid = uuid.uuid4().hex
    await ws.send("message.send", {"room_id": room, "client_msg_id": cid, "text": text}, ref)
    ack = await ws.expect("message.ack", lambda f: f.get("ref") == ref)
    assert ack["client_msg_id"] == cid and ack["message"]["text"] == text
    return ack["message"]


async def _reply(ws: Socket, type_: str, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Send an event with a ref; (type, data) of the `ack` or `error` that answers it."""
    ref = type_ + "-" + uuid.uuid4().hex[:8]
    await ws.send(type_, data, ref)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not ws.closed:
        for index, frame in enumerate(ws.frames):
            if frame.get("ref") == ref and frame["type"] in ("ack", "error"):
                ws.frames.pop(index)
                return frame["type"], frame.get("data", {})
        await ws.drain(0.05)
    raise AssertionError(f"no reply to {type_} within 5s; got {[f['type'] for f in ws.frames]}")


async def _receipts(api: Api, message_id: str, user: User) -> dict[str, dict[str, Any]]:
    r = await api.get(f"/messages/{message_id}/receipts", user)
    assert r.status == 200, r.body
    assert set(r.body) == {"receipts"}
    by_user = {rc["user_id"]: rc for rc in r.body["receipts"]}
    assert len(by_user) == len(r.body["receipts"]), "one receipt per member"
    for rc in r.body["receipts"]:
        assert set(rc) == {"user_id", "delivered_at", "read_at"}
    return by_user


def _is_for(message_id: str, user_id: str | None = None) -> Any:
    def match(frame: dict[str, Any]) -> bool:
        data = frame.get("data", {})
        return data.get("message_id") == message_id and (
            user_id is None or data.get("user_id") == user_id
        )

    return match


async def test_dm_sent_delivered_read_across_two_tabs_each(api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    room = await _dm(api, alice, bob)
    a1, a2 = await api.ws(alice), await api.ws(alice)
    b1, b2 = await api.ws(bob), await api.ws(bob)

    # Sent: the ack reaches both of the sender's tabs; the message reaches both of bob's.
    message = await _send_ws(a1, room, "hello bob")
    mid = message["id"]
    assert (await a2.expect("message.ack"))["message"]["id"] == mid
    for tab in (b1, b2):
        assert (await tab.expect("message.new"))["message"]["id"] == mid

    receipts = await _receipts(api, mid, alice)
    assert receipts == {bob.id: {"user_id": bob.id, "delivered_at": None, "read_at": None}}

    # Delivered: bob's first tab confirms; both of alice's tabs hear it once.
    kind, _ = await _reply(b1, "message.delivered", {"message_ids": [mid]})
    assert kind == "ack"
    events = [await tab.expect("message.delivered", _is_for(mid)) for tab in (a1, a2)]
    for event in events:
        assert set(event) == {"room_id", "message_id", "user_id", "delivered_at"}
        assert event["room_id"] == room and event["user_id"] == bob.id
        assert event["delivered_at"] == events[0]["delivered_at"]
    delivered_at = events[0]["delivered_at"]
    assert delivered_at

    # Bob's second tab confirms the same message: the first delivery stands, nothing is re-told.
    kind, _ = await _reply(b2, "message.delivered", {"message_ids": [mid]})
    assert kind == "ack"
    for tab in (a1, a2):
        await tab.assert_none("message.delivered", quiet=0.4)
    for tab in (b1, b2):  # receipts go to the sender, not back to the recipient
        await tab.assert_none("message.delivered", quiet=0.1)

    receipts = await _receipts(api, mid, alice)
    assert receipts[bob.id] == {"user_id": bob.id, "delivered_at": delivered_at, "read_at": None}

    # Read: bob reads on his second tab; alice's tabs get message.read.
    kind, _ = await _reply(b2, "message.read", {"room_id": room, "message_id": mid})
    assert kind == "ack"
    for tab in (a1, a2):
        read = await tab.expect("message.read", _is_for(mid, bob.id))
        assert read["room_id"] == room and read["read_at"]
    receipts = await _receipts(api, mid, alice)
    assert receipts[bob.id]["delivered_at"] == delivered_at
    assert receipts[bob.id]["read_at"] == read["read_at"]
    assert receipts[bob.id]["read_at"] >= delivered_at  # ISO-8601 UTC strings sort by time
    # Bob may look at the receipts of alice's message too: the same single entry, for him.
    assert set(await _receipts(api, mid, bob)) == {bob.id}


async def test_group_of_three_delivery_and_read_per_recipient(api: Api) -> None:
    alice, bob, carol = await api.register(), await api.register(), await api.register()
    room = await api.group(alice, bob, carol)
    a1 = await api.ws(alice)
    b1, b2 = await api.ws(bob), await api.ws(bob)
    c1 = await api.ws(carol)

    first = await _send_ws(a1, room, "first")
    second = await _send_ws(a1, room, "second")
    for tab in (b1, b2, c1):
        for m in (first, second):
            await tab.expect("message.new", lambda f, m=m: f["data"]["message"]["id"] == m["id"])

    receipts = await _receipts(api, first["id"], alice)
    assert set(receipts) == {bob.id, carol.id}  # every member but the sender
    assert all(rc["delivered_at"] is None and rc["read_at"] is None for rc in receipts.values())

    # Both of bob's tabs confirm both messages at once: one delivery per message for bob.
    replies = await asyncio.gather(
        _reply(b1, "message.delivered", {"message_ids": [first["id"], second["id"]]}),
        _reply(b2, "message.delivered", {"message_ids": [second["id"], first["id"]]}),
    )
    assert [kind for kind, _ in replies] == ["ack", "ack"]
    for m in (first, second):
        event = await a1.expect("message.delivered", _is_for(m["id"], bob.id))
        assert event["room_id"] == room
    await a1.assert_none("message.delivered", quiet=0.5)
    for tab in (b1, b2, c1):  # only the sender hears deliveries
        await tab.assert_none("message.delivered", quiet=0.1)

    receipts = await _receipts(api, first["id"], alice)
    assert receipts[bob.id]["delivered_at"] and receipts[bob.id]["read_at"] is None
    assert receipts[carol.id] == {"user_id": carol.id, "delivered_at": None, "read_at": None}

    # Carol reads up to the first message without ever confirming delivery: reading implies it.
    kind, _ = await _reply(c1, "message.read", {"room_id": room, "message_id": first["id"]})
    assert kind == "ack"
    read = await a1.expect("message.read", _is_for(first["id"], carol.id))
    assert read["room_id"] == room
    receipts = await _receipts(api, first["id"], alice)
    assert receipts[carol.id]["read_at"] == read["read_at"]
    assert receipts[carol.id]["delivered_at"] == read["read_at"]
    assert receipts[bob.id]["read_at"] is None
    # The read pointer is at `first`: `second` is not read by carol yet.
    later = await _receipts(api, second["id"], alice)
    assert later[carol.id] == {"user_id": carol.id, "delivered_at": None, "read_at": None}

    # Bob reads up to the second message: both count as read for him, and alice hears it.
    kind, _ = await _reply(b1, "message.read", {"room_id": room, "message_id": second["id"]})
    assert kind == "ack"
    await a1.expect("message.read", _is_for(second["id"], bob.id))
    for m in (first, second):
        rc = (await _receipts(api, m["id"], alice))[bob.id]
        assert rc["read_at"] and rc["delivered_at"] and rc["delivered_at"] <= rc["read_at"]


async def test_receipts_never_reach_or_come_from_outside_the_room(api: Api) -> None:
    alice, bob, eve = await api.register(), await api.register(), await api.register()
    room = await api.group(alice, bob)
    await api.group(eve, alice)  # eve shares another room with alice: she is a contact
    a1, b1, e1 = await api.ws(alice), await api.ws(bob), await api.ws(eve)
    message = await _send_ws(a1, room, "members only")
    mid = message["id"]
    await b1.expect("message.new")

    # A non-member confirming delivery records nothing and tells nobody.
    kind, _ = await _reply(e1, "message.delivered", {"message_ids": [mid]})
    assert kind in ("ack", "error")
    await a1.assert_none("message.delivered", quiet=0.4)
    receipts = await _receipts(api, mid, alice)
    assert set(receipts) == {bob.id}
    assert receipts[bob.id]["delivered_at"] is None

    # Real delivery and read by bob: eve's socket sees none of it.
    assert (await _reply(b1, "message.delivered", {"message_ids": [mid]}))[0] == "ack"
    assert (await _reply(b1, "message.read", {"room_id": room, "message_id": mid}))[0] == "ack"
    await a1.expect("message.delivered", _is_for(mid, bob.id))
    await a1.expect("message.read", _is_for(mid, bob.id))
    await e1.drain(0.4)
    leaked = [
        f
        for f in e1.frames
        if f["type"] in ("message.new", "message.ack", "message.delivered", "message.read")
        or f.get("data", {}).get("room_id") == room
    ]
    assert not leaked, leaked

    # A non-member cannot read the receipts either, nor mark the message read.
    r = await api.get(f"/messages/{mid}/receipts", eve)
    assert r.status == 403 and r.error_code == "not_a_member"
    kind, data = await _reply(e1, "message.read", {"room_id": room, "message_id": mid})
    assert kind == "error" and data["code"] == "not_a_member"
    assert set(await _receipts(api, mid, alice)) == {bob.id}


async def test_sender_confirming_its_own_message_is_ignored(api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    room = await _dm(api, alice, bob)
    a1, a2 = await api.ws(alice), await api.ws(alice)
    mid = (await _send_ws(a1, room, "mine"))["id"]
    kind, _ = await _reply(a1, "message.delivered", {"message_ids": [mid]})
    assert kind == "ack"
    for tab in (a1, a2):
        await tab.assert_none("message.delivered", quiet=0.4)
    receipts = await _receipts(api, mid, alice)
    assert receipts == {bob.id: {"user_id": bob.id, "delivered_at": None, "read_at": None}}


async def test_invalid_delivery_confirmations_are_refused(api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    room = await _dm(api, alice, bob)
    a1, b1 = await api.ws(alice), await api.ws(bob)
    mid = (await _send_ws(a1, room, "x"))["id"]
    await b1.expect("message.new")
    too_many = [uuid.uuid4().hex[:24] for _ in range(101)]
    for data in [
        {"message_ids": []},
        {"message_ids": too_many},
        {"message_ids": ["not-an-id"]},
        {"message_ids": [mid, 7]},
        {"message_ids": mid},
        {"message_ids": None},
        {},
        {"message_ids": [mid], "extra": 1},
    ]:
        kind, reply = await _reply(b1, "message.delivered", data)
        assert kind == "error" and reply["code"] == "invalid_request", (data, reply)
    # Nothing was recorded by the refused frames, and the socket still works.
    await a1.assert_none("message.delivered", quiet=0.3)
    assert (await _receipts(api, mid, alice))[bob.id]["delivered_at"] is None
    assert (await _reply(b1, "message.delivered", {"message_ids": [mid]}))[0] == "ack"
    await a1.expect("message.delivered", _is_for(mid, bob.id))
    # A malformed receipts request is refused too.
    r = await api.get("/messages/not-an-id/receipts", alice)
    assert r.status == 400 and r.error_code == "invalid_request"
