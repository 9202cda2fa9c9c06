"""Rooms: groups, direct messages, the room list, membership changes."""

from __future__ import annotations

import asyncio

from tests.support import Api


async def test_create_group_validates_and_makes_creator_admin(api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    for body, field in [
        ({"name": "", "member_ids": []}, "name"),
        ({"name": "x" * 81}, "name"),
        ({"name": "ok", "member_ids": ["nope"]}, "member_ids"),
        ({"name": "ok", "member_ids": ["0" * 24]}, "member_ids"),
        ({"name": "ok", "private": "yes"}, "private"),
        ({"name": "ok", "colour": "red"}, "colour"),
    ]:
        r = await api.post("/rooms", body, alice)
        assert r.status == 400 and r.body["error"]["field"] == field, (body, r.body)
    r = await api.post("/rooms", {"name": " Team ", "member_ids": [bob.id], "private": True}, alice)
    assert r.status == 201
    room = r.body
    assert room["name"] == "Team" and room["kind"] == "group" and room["private"] is True
    assert sorted(room["member_ids"]) == sorted([alice.id, bob.id])
    detail = (await api.get(f"/rooms/{room['id']}", bob)).body
    roles = {m["user_id"]: m["role"] for m in detail["members"]}
    assert roles == {alice.id: "admin", bob.id: "member"}
    assert (await api.get("/rooms", bob)).body["rooms"][0]["id"] == room["id"]


async def test_direct_room_is_get_or_create_and_idempotent_under_races(api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    results = await asyncio.gather(
        api.post("/rooms/direct", {"user_id": bob.id}, alice),
        api.post("/rooms/direct", {"user_id": alice.id}, bob),
        api.post("/rooms/direct", {"user_id": bob.id}, alice),
    )
    assert {r.body["id"] for r in results} == {results[0].body["id"]}
    assert sorted(r.status for r in results) == [200, 200, 201]
    assert results[0].body["kind"] == "direct"
    assert sorted(results[0].body["member_ids"]) == sorted([alice.id, bob.id])
    assert (await api.post("/rooms/direct", {"user_id": alice.id}, alice)).status == 400
    assert (await api.post("/rooms/direct", {"user_id": "0" * 24}, alice)).status == 400
    rooms = (await api.get("/rooms", alice)).body["rooms"]
    assert len(rooms) == 1


async def test_room_list_orders_by_activity_with_unread_and_last_message(api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    older = await api.group(alice, bob)
    newer = await api.group(alice, bob)
    await api.send(bob, newer, "in newer")
    last = await api.send(bob, older, "in older")
    await api.send(alice, older, "mine")  # my own messages never count as unread
    rooms = (await api.get("/rooms", alice)).body["rooms"]
    assert [r["id"] for r in rooms] == [older, newer]
    assert rooms[0]["unread_count"] == 1 and rooms[1]["unread_count"] == 1
    assert rooms[0]["last_message"]["text"] == "mine"
    assert rooms[0]["last_read_message_id"] is None
    r = await api.post(f"/rooms/{older}/read", {"message_id": last["id"]}, alice)
    assert r.status == 200 and r.body["unread_count"] == 0
    rooms = (await api.get("/rooms", alice)).body["rooms"]
    assert rooms[0]["unread_count"] == 0 and rooms[0]["last_read_message_id"] == last["id"]


async def test_unread_excludes_deleted_and_read_pointer_never_moves_back(api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    msgs = [await api.send(bob, room, f"m{i}") for i in range(5)]
    await api.delete(f"/messages/{msgs[1]['id']}", bob)

    async def unread() -> int:
        rooms = (await api.get("/rooms", alice)).body["rooms"]
        return next(r["unread_count"] for r in rooms if r["id"] == room)

    assert await unread() == 4
    r = await api.post(f"/rooms/{room}/read", {"message_id": msgs[2]["id"]}, alice)
    assert r.body["unread_count"] == 2 and r.body["last_read_message_id"] == msgs[2]["id"]
    r = await api.post(f"/rooms/{room}/read", {"message_id": msgs[0]["id"]}, alice)
    assert r.status == 200 and r.body["last_read_message_id"] == msgs[2]["id"]
    assert await unread() == 2
    other = await api.group(alice, bob)
    foreign = await api.send(bob, other, "elsewhere")
    r = await api.post(f"/rooms/{room}/read", {"message_id": foreign["id"]}, alice)
    assert r.status == 404
    r = await api.post(f"/rooms/{room}/read", {"message_id": "bad"}, alice)
    assert r.status == 400


async def test_unread_syncs_across_two_users_and_two_tabs(api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    tab1, tab2, bob_ws = await api.ws(alice), await api.ws(alice), await api.ws(bob)
    m1 = await api.send(bob, room, "one")
    m2 = await api.send(bob, room, "two")
    counted = {"room_id": room, "mention_count": 0}
    for tab in (tab1, tab2):
        await tab.expect("message.new", lambda f: f["data"]["message"]["id"] == m2["id"])
        # New messages tell the count, coalesced (tests/realtime/test_unread_event.py).
        await tab.expect("unread", lambda f: f["data"] == {**counted, "unread_count": 2})
    await tab1.send("message.read", {"room_id": room, "message_id": m1["id"]}, "r1")
    ack = await tab1.expect("ack")
    assert ack["__ref"] == "r1" and ack["unread_count"] == 1
    for tab in (tab1, tab2):
        assert (await tab.expect("unread")) == {**counted, "unread_count": 1}
    receipt = await bob_ws.expect("message.read")
    assert receipt["user_id"] == alice.id and receipt["message_id"] == m1["id"]
    await bob_ws.assert_none("unread")  # unread counts are the reader's own business
    rooms = (await api.get("/rooms", bob)).body["rooms"]
    assert rooms[0]["unread_count"] == 0


async def test_rename_add_remove_leave_and_admin_succession(api: Api) -> None:
    alice, bob, carol = await api.register(), await api.register(), await api.register()
    room = await api.group(alice, bob)
    bob_ws = await api.ws(bob)
    r = await api.patch(f"/rooms/{room}", {"name": "Renamed"}, alice)
    assert r.status == 200 and r.body["name"] == "Renamed"
    assert (await bob_ws.expect("room.updated"))["room"]["name"] == "Renamed"
    assert (await api.patch(f"/rooms/{room}", {}, alice)).status == 400

    r = await api.post(f"/rooms/{room}/members", {"user_ids": [carol.id]}, alice)
    assert r.status == 200 and carol.id in r.body["member_ids"]
    added = await bob_ws.expect("room.member_added")
    assert added["user_ids"] == [carol.id]
    assert (await api.post(f"/rooms/{room}/members", {"user_ids": []}, alice)).status == 400

    assert (await api.delete(f"/rooms/{room}/members/{carol.id}", alice)).status == 204
    removed = await bob_ws.expect("room.member_removed")
    assert removed["user_id"] == carol.id and carol.id not in removed["room"]["member_ids"]
    assert (await api.delete(f"/rooms/{room}/members/{carol.id}", alice)).status == 404

    # The only admin leaves: the longest-standing member (bob) becomes admin.
    assert (await api.delete(f"/rooms/{room}/members/{alice.id}", alice)).status == 204
    detail = (await api.get(f"/rooms/{room}", bob)).body
    assert [(m["user_id"], m["role"]) for m in detail["members"]] == [(bob.id, "admin")]
    assert (await api.patch(f"/rooms/{room}", {"private": False}, bob)).status == 200


async def test_public_rooms_can_be_browsed_and_joined(api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    public = await api.group(alice, private=False)
    private = await api.group(alice, private=True)
    await api.send(alice, public, "welcome")
    listed = (await api.get("/rooms/public", bob)).body["rooms"]
    assert [r["id"] for r in listed] == [public]
    assert set(listed[0]) == {"id", "name", "member_count"}
    assert (await api.get(f"/history/room/{public}", bob)).status == 403
    assert (await api.post(f"/rooms/{private}/join", None, bob)).status == 404
    r = await api.post(f"/rooms/{public}/join", None, bob)
    assert r.status == 200 and bob.id in r.body["member_ids"]
    history = (await api.get(f"/history/room/{public}", bob)).body["messages"]
    assert [m["text"] for m in history if m["type"] != "system"] == ["welcome"]
