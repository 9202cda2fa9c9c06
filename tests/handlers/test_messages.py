"""Sending (idempotent), editing and deleting messages over REST and WebSocket."""

from __future__ import annotations

import asyncio

from tests.support import Api


async def test_same_client_msg_id_twice_gives_one_message(api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    bob_ws = await api.ws(bob)
    body = {"client_msg_id": "once", "text": "hello"}
    first = await api.post(f"/rooms/{room}/messages", body, alice)
    again = await api.post(f"/rooms/{room}/messages", body, alice)
    assert (first.status, again.status) == (201, 200)
    assert first.body["id"] == again.body["id"]
    await bob_ws.expect("message.new")
    await bob_ws.assert_none("message.new")
    history = (await api.get(f"/history/room/{room}", alice)).body["messages"]
    assert len(history) == 1
    # Reusing the id in another room is a client bug, refused rather than misfiled.
    other = await api.group(alice)
    r = await api.post(f"/rooms/{other}/messages", body, alice)
    assert r.status == 409 and r.body["error"]["field"] == "client_msg_id"
    # Another sender may use the same client id.
    r = await api.post(f"/rooms/{room}/messages", body, bob)
    assert r.status == 201 and r.body["id"] != first.body["id"]


async def test_concurrent_retries_on_two_sockets_store_one_message(api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    tab1, tab2, bob_ws = await api.ws(alice), await api.ws(alice), await api.ws(bob)
    data = {"room_id": room, "client_msg_id": "dup", "text": "once"}
    await asyncio.gather(tab1.send("message.send", data, "a"), tab2.send("message.send", data, "b"))
    ack1 = await tab1.expect("message.ack", lambda f: f.get("ref") == "a")
    ack2 = await tab2.expect("message.ack", lambda f: f.get("ref") == "b")
    assert ack1["message"]["id"] == ack2["message"]["id"]
    await bob_ws.expect("message.new")
    await bob_ws.assert_none("message.new")


async def test_message_shape_and_validation(api: Api) -> None:
    alice = await api.register()
    room = await api.group(alice)
    msg = await api.send(alice, room, "  padded  ")
    assert set(msg) == {
        "id",
        "room_id",
        "sender_id",
        "type",
        "text",
        "attachments",
        "client_msg_id",
        "created_at",
        "edited_at",
        "deleted",
        "reactions",
        "version",
        "mentions",
        "mention_room",
        "reply_to",
        "system",
    }
    assert (msg["mentions"], msg["mention_room"], msg["reply_to"], msg["system"]) == (
        [],
        False,
        None,
        None,
    )
    assert msg["text"] == "padded" and msg["type"] == "text" and msg["sender_id"] == alice.id
    assert msg["created_at"].endswith("Z") and msg["deleted"] is False
    for body, field in [
        ({"client_msg_id": "a", "text": ""}, "text"),
        ({"client_msg_id": "a", "text": "x" * 4001}, "text"),
        ({"client_msg_id": "a", "text": 5}, "text"),
        ({"client_msg_id": "", "text": "x"}, "client_msg_id"),
        ({"client_msg_id": "x" * 65, "text": "x"}, "client_msg_id"),
        ({"text": "x"}, "client_msg_id"),
        ({"client_msg_id": "a", "text": "bell\x07"}, "text"),
    ]:
        r = await api.post(f"/rooms/{room}/messages", body, alice)
        assert r.status == 400 and r.body["error"]["field"] == field, (body, r.body)
    r = await api.post(f"/rooms/{room}/messages", raw=b"{not json", user=alice)
    assert r.status == 400 and r.error_code == "invalid_request"
    r = await api.post(f"/rooms/{room}/messages", raw=b"[1, 2]", user=alice)
    assert r.status == 400
    assert len((await api.get(f"/history/room/{room}", alice)).body["messages"]) == 1
    assert (await api.send(alice, room, "x" * 4000))["text"] == "x" * 4000


async def test_edit_rules_and_event(api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    bob_ws = await api.ws(bob)
    msg = await api.send(alice, room, "draft")
    r = await api.patch(f"/messages/{msg['id']}", {"text": "final"}, alice)
    assert r.status == 200 and r.body["text"] == "final" and r.body["edited_at"]
    assert r.body["version"] > msg["version"]
    updated = await bob_ws.expect("message.updated")
    assert updated["message"]["text"] == "final"
    assert (await api.patch(f"/messages/{msg['id']}", {"text": "bob's"}, bob)).status == 403
    assert (await api.patch(f"/messages/{msg['id']}", {"text": ""}, alice)).status == 400
    # A missing id answers like someone else's message: ids cannot be probed.
    missing = await api.patch(f"/messages/{'0' * 24}", {"text": "x"}, alice)
    assert missing.status == 403 and missing.error_code == "not_a_member"
    assert (await api.delete(f"/messages/{'0' * 24}", alice)).status == 403
    assert (await api.patch("/messages/bad", {"text": "x"}, alice)).status == 400
    await api.delete(f"/messages/{msg['id']}", alice)
    r = await api.patch(f"/messages/{msg['id']}", {"text": "revive"}, alice)
    assert r.status == 409
    history = (await api.get(f"/history/room/{room}", alice)).body["messages"]
    assert history[0]["deleted"] is True and history[0]["text"] == ""


async def test_delete_by_author_or_admin_leaves_tombstone_once(api: Api) -> None:
    alice, bob, carol = await api.register(), await api.register(), await api.register()
    room = await api.group(alice, bob, carol)
    bob_ws = await api.ws(bob)
    by_bob = await api.send(bob, room, "bob says")
    by_carol = await api.send(carol, room, "carol says")
    assert (await api.delete(f"/messages/{by_carol['id']}", bob)).status == 403
    assert (await api.delete(f"/messages/{by_bob['id']}", bob)).status == 204
    assert (await api.delete(f"/messages/{by_carol['id']}", alice)).status == 204  # admin
    assert (await api.delete(f"/messages/{by_carol['id']}", alice)).status == 204  # idempotent
    deleted = [
        (await bob_ws.expect("message.deleted"))["message_id"],
        (await bob_ws.expect("message.deleted"))["message_id"],
    ]
    assert sorted(deleted) == sorted([by_bob["id"], by_carol["id"]])
    await bob_ws.assert_none("message.deleted")
    history = (await api.get(f"/history/room/{room}", carol)).body["messages"]
    assert all(m["deleted"] and m["text"] == "" for m in history)


async def test_websocket_edit_and_delete_reply_with_ack(api: Api) -> None:
    alice = await api.register()
    room = await api.group(alice)
    ws = await api.ws(alice)
    await ws.send("message.send", {"room_id": room, "client_msg_id": "w1", "text": "a"}, "s")
    msg = (await ws.expect("message.ack"))["message"]
    await ws.send("message.edit", {"message_id": msg["id"], "text": "b"}, "e")
    assert (await ws.expect("ack", lambda f: f.get("ref") == "e"))["message"]["text"] == "b"
    assert (await ws.expect("message.updated"))["message"]["text"] == "b"
    await ws.send("message.delete", {"message_id": msg["id"]}, "d")
    assert (await ws.expect("ack", lambda f: f.get("ref") == "d"))["message"]["deleted"] is True
    assert (await ws.expect("message.deleted"))["message_id"] == msg["id"]
    await ws.send("message.edit", {"message_id": msg["id"], "text": "c"}, "e2")
    err = await ws.expect("error")
    assert err["code"] == "conflict" and err["__ref"] == "e2"


async def test_oversized_json_body_is_413(api: Api) -> None:
    alice = await api.register()
    room = await api.group(alice)
    body = {"client_msg_id": "big", "text": "x", "pad": "y" * (70 * 1024)}
    r = await api.post(f"/rooms/{room}/messages", body, alice)
    assert r.status == 413 and r.error_code == "too_large"
    assert (await api.get(f"/history/room/{room}", alice)).body["messages"] == []


async def test_edits_and_deletes_do_not_reorder_the_room_list(api: Api) -> None:
    alice = await api.register()
    first = await api.group(alice)
    old = await api.send(alice, first, "old")
    second = await api.group(alice)
    await api.send(alice, second, "newer")
    await api.patch(f"/messages/{old['id']}", {"text": "edited"}, alice)
    rooms = (await api.get("/rooms", alice)).body["rooms"]
    assert [r["id"] for r in rooms] == [second, first]


async def test_lone_surrogates_are_refused_and_change_nothing(api: Api) -> None:
    """A JSON escape can carry half of a UTF-16 pair; it is not text, so it is a 400 naming the
    field (not a 500 from the database), and the room does not move."""
    alice = await api.register()
    room = await api.group(alice)
    before = (await api.get("/rooms", alice)).body
    r = await api.post(
        f"/rooms/{room}/messages", {"client_msg_id": "c1", "text": "x\ud800y"}, alice
    )
    assert r.status == 400 and r.error_code == "invalid_request", r.body
    assert r.body["error"]["field"] == "text"
    assert (await api.get("/rooms", alice)).body == before
