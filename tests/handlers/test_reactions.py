"""Reactions over REST (PUT/DELETE /messages/{id}/reactions/{emoji}) and WebSocket
(reaction.add/remove): idempotent, validated, bounded, and converging on every client."""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any
from urllib.parse import quote

from tests.support import Api, Response, Socket, User

THUMBS, HEART, PARTY, FLAG = "👍", "❤️", "🎉", "🇫🇷"


def _path(message_id: str, emoji: str) -> str:
    return f"/messages/{message_id}/reactions/{quote(emoji, safe='')}"


async def _put(api: Api, user: User, message_id: str, emoji: str) -> Response:
    return await api.request("PUT", _path(message_id, emoji), token=user.access_token)


async def _delete(api: Api, user: User, message_id: str, emoji: str) -> Response:
    return await api.delete(_path(message_id, emoji), user)


async def _stored(api: Api, user: User, room: str, message_id: str) -> dict[str, Any]:
    """The message as history shows it now."""
    messages = (await api.get(f"/history/room/{room}?limit=100", user)).body["messages"]
    [message] = [m for m in messages if m["id"] == message_id]
    return message


async def _ws_call(ws: Socket, type_: str, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Send with a ref; (type, data) of the `ack` or `error` answering it."""
    ref = uuid.uuid4().hex[:12]
    await ws.send(type_, data, ref)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while loop.time() < deadline and not ws.closed:
        for index, frame in enumerate(ws.frames):
            if frame.get("ref") == ref and frame["type"] in ("ack", "error"):
                ws.frames.pop(index)
                return frame["type"], frame.get("data", {})
        await ws.drain(0.02)
    raise AssertionError(f"no reply to {type_}")


def _updates(ws: Socket, message_id: str) -> list[dict[str, Any]]:
    return [
        f["data"]
        for f in ws.frames
        if f["type"] == "reaction.updated" and f["data"]["message_id"] == message_id
    ]


async def test_add_is_idempotent_and_every_member_gets_the_full_map(api: Api) -> None:
    alice, bob, carol, eve = [await api.register() for _ in range(4)]
    room = await api.group(alice, bob, carol)
    await api.group(eve, alice)  # eve is alice's contact, but not in this room
    message = await api.send(alice, room, "react to me")
    mid = message["id"]
    sockets = {u.id: await api.ws(u) for u in (alice, bob, carol)}
    eve_ws = await api.ws(eve)

    r = await _put(api, bob, mid, THUMBS)
    assert r.status == 200, r.body
    expected = {"message_id": mid, "room_id": room, "reactions": {THUMBS: [bob.id]}}
    versions = set()
    for ws in sockets.values():
        event = await ws.expect("reaction.updated")
        assert {k: event[k] for k in expected} == expected
        assert set(event) == {"message_id", "room_id", "reactions", "version"}
        versions.add(event["version"])
    [v1] = versions
    assert v1 > message["version"]

    # Adding the same reaction again changes nothing and announces nothing.
    r = await _put(api, bob, mid, THUMBS)
    assert r.status == 200 and r.body["reactions"] == {THUMBS: [bob.id]}
    for ws in sockets.values():
        await ws.assert_none("reaction.updated", quiet=0.3)
    stored = await _stored(api, alice, room, mid)
    assert stored["reactions"] == {THUMBS: [bob.id]} and stored["version"] == v1

    # Over the WebSocket: carol joins the same emoji, alice adds another one.
    kind, _ = await _ws_call(
        sockets[carol.id], "reaction.add", {"message_id": mid, "emoji": THUMBS}
    )
    assert kind == "ack"
    kind, _ = await _ws_call(sockets[alice.id], "reaction.add", {"message_id": mid, "emoji": HEART})
    assert kind == "ack"
    full = {THUMBS: [bob.id, carol.id], HEART: [alice.id]}
    for ws in sockets.values():
        await ws.expect("reaction.updated")
        last = await ws.expect("reaction.updated")
        assert last["reactions"] == full and last["version"] > v1
    # The same add again over the socket: still one entry, no event.
    kind, _ = await _ws_call(
        sockets[carol.id], "reaction.add", {"message_id": mid, "emoji": THUMBS}
    )
    assert kind == "ack"
    for ws in sockets.values():
        await ws.assert_none("reaction.updated", quiet=0.3)

    # Removing is idempotent too; the last user's removal drops the emoji from the map.
    kind, _ = await _ws_call(
        sockets[alice.id], "reaction.remove", {"message_id": mid, "emoji": HEART}
    )
    assert kind == "ack"
    r = await _delete(api, alice, mid, HEART)
    assert r.status == 200, r.body
    for ws in sockets.values():
        assert (await ws.expect("reaction.updated"))["reactions"] == {THUMBS: [bob.id, carol.id]}
        await ws.assert_none("reaction.updated", quiet=0.3)
    assert (await _stored(api, bob, room, mid))["reactions"] == {THUMBS: [bob.id, carol.id]}

    # Nobody outside the room heard any of it.
    await eve_ws.assert_none("reaction.updated", quiet=0.2)


async def test_message_version_grows_and_changed_after_returns_the_reacted_message(
    api: Api,
) -> None:
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    old = await api.send(alice, room, "older")
    target = await api.send(alice, room, "target")
    newer = await api.send(bob, room, "newer")
    synced = newer["version"]

    seen = [target["version"]]
    for change in (
        _put(api, bob, target["id"], PARTY),
        _put(api, alice, target["id"], FLAG),
        _delete(api, bob, target["id"], PARTY),
    ):
        r = await change
        assert r.status == 200, r.body
        stored = await _stored(api, alice, room, target["id"])
        assert stored["version"] > seen[-1], (stored["version"], seen)
        seen.append(stored["version"])
    assert stored["reactions"] == {FLAG: [alice.id]}

    r = await api.get(f"/history/room/{room}?changed_after={synced}", bob)
    assert r.status == 200, r.body
    changed = r.body["messages"]
    assert [m["id"] for m in changed] == [target["id"]]  # not the untouched ones
    assert changed[0]["reactions"] == {FLAG: [alice.id]} and changed[0]["version"] == seen[-1]
    assert old["id"] not in {m["id"] for m in changed}
    # Nothing changed after the last reaction.
    r = await api.get(f"/history/room/{room}?changed_after={seen[-1]}", bob)
    assert r.body["messages"] == []


async def test_concurrent_adds_and_removes_from_two_users_converge(api: Api) -> None:
    alice, bob, carol = await api.register(), await api.register(), await api.register()
    room = await api.group(alice, bob, carol)
    mid = (await api.send(alice, room, "busy message"))["id"]
    alice_ws, bob_ws, carol_ws = await api.ws(alice), await api.ws(bob), await api.ws(carol)
    emoji = [THUMBS, HEART, PARTY, FLAG]
    rng = random.Random(4)

    pending: dict[str, list[str]] = {alice.id: [], bob.id: []}

    async def op(user: User, ws: Socket) -> None:
        add = rng.random() < 0.6
        e = rng.choice(emoji)
        if rng.random() < 0.5:
            r = await (_put(api, user, mid, e) if add else _delete(api, user, mid, e))
            assert r.status == 200, r.body
        else:  # written now, answered later: one reader per socket (below)
            ref = uuid.uuid4().hex[:12]
            pending[user.id].append(ref)
            data = {"message_id": mid, "emoji": e}
            await ws.send("reaction.add" if add else "reaction.remove", data, ref)

    for _ in range(3):  # rounds of many concurrent operations
        await asyncio.gather(
            *(op(alice, alice_ws) for _ in range(25)), *(op(bob, bob_ws) for _ in range(25))
        )
    for ws, refs in ((alice_ws, pending[alice.id]), (bob_ws, pending[bob.id])):
        for ref in refs:
            await ws.expect("ack", lambda f, ref=ref: f.get("ref") == ref, timeout=10)
        assert not [f for f in ws.frames if f["type"] == "error"]
    for ws in (alice_ws, bob_ws, carol_ws):
        await ws.drain(0.5)

    stored = await _stored(api, carol, room, mid)
    final = stored["reactions"]
    assert set(final) <= set(emoji)
    for users in final.values():
        assert users and len(users) == len(set(users)) and set(users) <= {alice.id, bob.id}
    for name, ws in (("alice", alice_ws), ("bob", bob_ws), ("carol", carol_ws)):
        updates = _updates(ws, mid)
        assert updates, name
        newest = max(updates, key=lambda u: u["version"])
        assert newest["reactions"] == final and newest["version"] == stored["version"], name
        # Events arrive in version order, so the last one a client got is the final state.
        assert [u["version"] for u in updates] == sorted(u["version"] for u in updates), name
        assert updates[-1]["reactions"] == final, (name, updates[-1], final)


async def test_invalid_emoji_are_refused(api: Api) -> None:
    alice = await api.register()
    room = await api.group(alice)
    mid = (await api.send(alice, room, "x"))["id"]
    ws = await api.ws(alice)
    bad = ["a", "👍👍", "<b>", "👍 ", " 👍", "👍a", "1", "🇫", "x" * 40, "\u200d", "👍\u200d"]
    for emoji in bad:
        r = await _put(api, alice, mid, emoji)
        assert r.status == 400 and r.error_code == "invalid_request", (emoji, r.status, r.body)
        r = await _delete(api, alice, mid, emoji)
        assert r.status == 400 and r.error_code == "invalid_request", (emoji, r.status, r.body)
    for emoji in [*bad, "", 5, None]:
        kind, data = await _ws_call(ws, "reaction.add", {"message_id": mid, "emoji": emoji})
        assert kind == "error" and data["code"] == "invalid_request", (emoji, data)
    # An empty path segment is not a reaction at all.
    r = await api.request("PUT", f"/messages/{mid}/reactions/", token=alice.access_token)
    assert 400 <= r.status < 500
    await ws.assert_none("reaction.updated", quiet=0.2)
    assert (await _stored(api, alice, room, mid))["reactions"] == {}

    # Real single graphemes are accepted: ZWJ sequences, skin tones, flags, keycaps.
    good = ["👨‍👩‍👧", "👍🏽", "🇯🇵", "1️⃣", "❤️", "🏳️‍🌈"]
    for emoji in good:
        r = await _put(api, alice, mid, emoji)
        assert r.status == 200, (emoji, r.body)
    assert set((await _stored(api, alice, room, mid))["reactions"]) == set(good)


async def test_twenty_first_distinct_emoji_is_a_conflict(api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    mid = (await api.send(alice, room, "popular"))["id"]
    faces = [chr(0x1F600 + i) for i in range(21)]
    for i, face in enumerate(faces[:20]):
        r = await _put(api, alice if i % 2 else bob, mid, face)
        assert r.status == 200, (face, r.body)
    r = await _put(api, bob, mid, faces[20])
    assert r.status == 409 and r.error_code == "conflict", r.body
    # Joining an existing emoji is still fine, and freeing a slot makes room for a new one.
    assert (await _put(api, bob, mid, faces[1])).status == 200
    assert (await _delete(api, bob, mid, faces[0])).status == 200
    assert (await _put(api, bob, mid, faces[20])).status == 200
    reactions = (await _stored(api, alice, room, mid))["reactions"]
    assert len(reactions) == 20 and faces[0] not in reactions
    assert reactions[faces[1]] == [alice.id, bob.id]
    assert (await _put(api, alice, mid, faces[0])).status == 409


async def test_deleted_message_and_non_member_are_refused(api: Api) -> None:
    alice, bob, eve = await api.register(), await api.register(), await api.register()
    room = await api.group(alice, bob)
    message = await api.send(alice, room, "soon gone")
    kept = await api.send(alice, room, "kept")
    bob_ws, eve_ws = await api.ws(bob), await api.ws(eve)

    # A non-member cannot react (nor learn whether the message exists).
    for r in (
        await _put(api, eve, kept["id"], THUMBS),
        await _delete(api, eve, kept["id"], THUMBS),
        await _put(api, eve, uuid.uuid4().hex[:24], THUMBS),
    ):
        assert r.status == 403 and r.error_code == "not_a_member", r.body
    kind, data = await _ws_call(eve_ws, "reaction.add", {"message_id": kept["id"], "emoji": HEART})
    assert kind == "error" and data["code"] == "not_a_member"
    await bob_ws.assert_none("reaction.updated", quiet=0.3)
    assert (await _stored(api, alice, room, kept["id"]))["reactions"] == {}

    # A deleted message takes no reactions.
    assert (await _put(api, bob, message["id"], THUMBS)).status == 200
    await bob_ws.expect("reaction.updated")
    assert (await api.delete(f"/messages/{message['id']}", alice)).status == 204
    await bob_ws.expect("message.deleted")
    r = await _put(api, bob, message["id"], HEART)
    assert r.status == 409 and r.error_code == "conflict", r.body
    kind, data = await _ws_call(
        bob_ws, "reaction.add", {"message_id": message["id"], "emoji": PARTY}
    )
    assert kind == "error" and data["code"] == "conflict"
    await bob_ws.assert_none("reaction.updated", quiet=0.3)
    tombstone = await _stored(api, alice, room, message["id"])
    assert tombstone["deleted"] is True and tombstone["reactions"] == {}


async def test_two_users_with_the_same_emoji_are_both_stored(api: Api) -> None:
    """Emoji are data, never field names: every kind (ZWJ sequences, skin tones, flags,
    keycaps, variation selectors) keeps both reactors, in the order they reacted."""
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    mid = (await api.send(alice, room, "same emoji"))["id"]
    kinds = ["👍", "👩‍👩‍👧‍👦", "👍🏽", FLAG, "1️⃣", HEART, "🧑🏿‍🚀"]
    for emoji in kinds:
        assert (await _put(api, alice, mid, emoji)).status == 200
        assert (await _put(api, bob, mid, emoji)).status == 200
    reactions = (await _stored(api, bob, room, mid))["reactions"]
    assert list(reactions) == kinds
    assert all(users == [alice.id, bob.id] for users in reactions.values()), reactions
