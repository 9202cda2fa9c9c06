"""Room history lines (`type: "system"` messages): one per membership or settings change of a
group, posted after the change and its room event, to the members of the room at that moment;
never unread, never changed, reacted to or confirmed."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastsock.app import Server
from tests.support import Api, Socket, User


def is_line(event: str) -> Any:
    def match(frame: dict[str, Any]) -> bool:
        message = frame["data"]["message"]
        return message["type"] == "system" and message["system"]["event"] == event

    return match


def _types(ws: Socket) -> list[str]:
    return [f["type"] for f in ws.frames]


async def _until(condition: Any, what: str) -> None:
    """Wait until `condition()` holds, checked every 10 ms, 10 s at most."""
    deadline = asyncio.get_running_loop().time() + 10
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"not within 10 s: {what}"
        await asyncio.sleep(0.01)


async def _line(ws: Socket, event: str) -> dict[str, Any]:
    return (await ws.expect("message.new", is_line(event)))["message"]


async def _lines(api: Api, user: User, room: str) -> list[dict[str, Any]]:
    """The room's history lines, oldest first."""
    r = await api.get(f"/history/room/{room}?limit=100", user)
    assert r.status == 200, r.body
    return [m["system"] for m in reversed(r.body["messages"]) if m["type"] == "system"]


async def test_adding_members_leaves_one_line_that_the_new_members_get_too(api: Api) -> None:
    alice, bob, carol, dave = [await api.register() for _ in range(4)]
    room = await api.group(alice, bob)
    assert await _lines(api, alice, room) == []  # creating the group leaves no line
    sockets = [await api.ws(u) for u in (alice, bob, carol, dave)]

    r = await api.post(f"/rooms/{room}/members", {"user_ids": [carol.id, dave.id]}, alice)
    assert r.status == 200, r.body
    for ws in sockets:
        line = await _line(ws, "member_added")
        assert line["system"] == {
            "event": "member_added",
            "actor_id": alice.id,
            "user_ids": [carol.id, dave.id],
        }
        assert line["sender_id"] == alice.id and line["room_id"] == room
        assert line["text"] == "" and line["attachments"] == []
        assert line["client_msg_id"].startswith("system:")
        # Told of the change first: a socket reads frames one by one, in order.
        assert "room.member_added" in _types(ws)
    assert [s["event"] for s in await _lines(api, carol, room)] == ["member_added"]


async def test_joining_leaving_and_removing_each_leave_their_line(api: Api) -> None:
    alice, bob, carol = [await api.register() for _ in range(3)]
    room = await api.group(alice, bob, private=False)
    alice_ws = await api.ws(alice)

    r = await api.post(f"/rooms/{room}/join", None, carol)
    assert r.status == 200, r.body
    joined = await _line(alice_ws, "member_joined")
    assert joined["system"] == {
        "event": "member_joined",
        "actor_id": carol.id,
        "user_ids": [carol.id],
    }
    assert joined["sender_id"] == carol.id
    # Joining again changes nothing and leaves no second line.
    assert (await api.post(f"/rooms/{room}/join", None, carol)).status == 200

    assert (await api.delete(f"/rooms/{room}/members/{carol.id}", carol)).status == 204
    left = await _line(alice_ws, "member_left")
    assert left["system"] == {"event": "member_left", "actor_id": carol.id, "user_ids": [carol.id]}

    assert (await api.delete(f"/rooms/{room}/members/{bob.id}", alice)).status == 204
    removed = await _line(alice_ws, "member_removed")
    assert removed["system"] == {
        "event": "member_removed",
        "actor_id": alice.id,
        "user_ids": [bob.id],
        "banned": True,
    }
    assert [s["event"] for s in await _lines(api, alice, room)] == [
        "member_joined",
        "member_left",
        "member_removed",
    ]


async def test_the_removed_member_hears_the_removal_but_not_its_line(api: Api) -> None:
    alice, bob = [await api.register() for _ in range(2)]
    room = await api.group(alice, bob)
    other = await api.group(alice, bob)  # where the marker goes, after the removal
    bob_ws = await api.ws(bob)

    assert (await api.delete(f"/rooms/{room}/members/{bob.id}", alice)).status == 204
    await bob_ws.expect("room.member_removed")
    await api.send(alice, other, "marker")
    # Events reach a socket in order: whatever the removal sent bob came before the marker.
    await bob_ws.expect("message.new", lambda f: f["data"]["message"]["text"] == "marker")
    lines = [f for f in bob_ws.frames if f["type"] == "message.new"]
    assert lines == []
    assert (await _lines(api, alice, room))[-1]["event"] == "member_removed"


async def test_a_rename_and_a_privacy_change_leave_two_lines_and_no_change_none(
    api: Api,
) -> None:
    alice, bob = [await api.register() for _ in range(2)]
    r = await api.post("/rooms", {"name": "Old", "member_ids": [bob.id], "private": True}, alice)
    room = r.body["id"]
    bob_ws = await api.ws(bob)

    r = await api.patch(f"/rooms/{room}", {"name": "New", "private": False}, alice)
    assert r.status == 200, r.body
    await bob_ws.expect("room.updated")
    renamed = await _line(bob_ws, "room_renamed")
    assert renamed["system"] == {
        "event": "room_renamed",
        "actor_id": alice.id,
        "user_ids": [],
        "name": "New",
        "old_name": "Old",
    }
    privacy = await _line(bob_ws, "privacy_changed")
    assert privacy["system"] == {
        "event": "privacy_changed",
        "actor_id": alice.id,
        "user_ids": [],
        "private": False,
    }
    assert privacy["version"] > renamed["version"]

    # Setting what is already so: the room event as before, no line.
    r = await api.patch(f"/rooms/{room}", {"name": "New", "private": False}, alice)
    assert r.status == 200, r.body
    assert [s["event"] for s in await _lines(api, bob, room)] == [
        "room_renamed",
        "privacy_changed",
    ]


async def test_direct_rooms_get_no_lines(api: Api) -> None:
    alice, bob = [await api.register() for _ in range(2)]
    r = await api.post("/rooms/direct", {"user_id": bob.id}, alice)
    room = r.body["id"]
    assert (await api.delete(f"/rooms/{room}/members/{bob.id}", bob)).status == 403
    assert await _lines(api, alice, room) == []


async def test_lines_are_never_unread_and_show_as_the_last_message(api: Api) -> None:
    alice, bob, carol = [await api.register() for _ in range(3)]
    room = await api.group(alice, bob)
    bob_ws = await api.ws(bob)
    await api.post(f"/rooms/{room}/members", {"user_ids": [carol.id]}, alice)
    await api.patch(f"/rooms/{room}", {"name": "Renamed"}, alice)
    for user in (bob, carol):
        [entry] = [e for e in (await api.get("/rooms", user)).body["rooms"] if e["id"] == room]
        assert (entry["unread_count"], entry["mention_count"]) == (0, 0), entry
        assert entry["last_message"]["type"] == "system"
        assert entry["last_message"]["system"]["event"] == "room_renamed"
    # A real message counts, the lines before it still do not; the `unread` event comes for
    # the message only (a socket gets its events in order: none came for the lines).
    await api.send(alice, room, "hello @" + carol.username)
    [entry] = [e for e in (await api.get("/rooms", bob)).body["rooms"] if e["id"] == room]
    assert entry["unread_count"] == 1
    await bob_ws.expect("message.new", lambda f: f["data"]["message"]["type"] == "text")
    assert [f for f in bob_ws.frames if f["type"] == "unread"] == []  # none for the lines
    assert await bob_ws.expect("unread") == {"room_id": room, "unread_count": 1, "mention_count": 0}
    [entry] = [e for e in (await api.get("/rooms", carol)).body["rooms"] if e["id"] == room]
    assert (entry["unread_count"], entry["mention_count"]) == (1, 1), entry


async def test_lines_cannot_be_edited_deleted_reacted_to_replied_to_or_confirmed(api: Api) -> None:
    alice, bob = [await api.register() for _ in range(2)]
    room = await api.group(alice, bob)
    await api.patch(f"/rooms/{room}", {"name": "Renamed"}, alice)
    [line] = [m for m in (await api.get(f"/history/room/{room}", alice)).body["messages"]]
    mid = line["id"]

    for user in (alice, bob):  # the actor (its sender) and a room admin or not: the same
        r = await api.patch(f"/messages/{mid}", {"text": "changed"}, user)
        assert (r.status, r.error_code) == (409, "conflict"), r.body
        r = await api.delete(f"/messages/{mid}", user)
        assert (r.status, r.error_code) == (409, "conflict"), r.body
        r = await api.request(
            "PUT", f"/messages/{mid}/reactions/%F0%9F%91%8D", token=user.access_token
        )
        assert (r.status, r.error_code) == (409, "conflict"), r.body

        body = {"client_msg_id": uuid.uuid4().hex, "text": "re", "reply_to_id": mid}
        r = await api.post(f"/rooms/{room}/messages", body, user)
        assert (r.status, r.error_code) == (409, "conflict"), r.body
        assert r.body["error"]["field"] == "reply_to_id"

    bob_ws = await api.ws(bob)
    for type_, data in (
        ("message.edit", {"message_id": mid, "text": "changed"}),
        ("message.delete", {"message_id": mid}),
        ("reaction.add", {"message_id": mid, "emoji": "👍"}),
        (
            "message.send",
            {"room_id": room, "client_msg_id": "r1", "text": "re", "reply_to_id": mid},
        ),
    ):
        reply = await bob_ws.request(type_, data)
        assert reply["type"] == "error" and reply["data"]["code"] == "conflict", reply
    reply = await bob_ws.request("message.delivered", {"message_ids": [mid]})
    assert reply["data"] == {"message_ids": []}, reply
    [unchanged] = (await api.get(f"/history/room/{room}", alice)).body["messages"]
    assert unchanged == line  # and no reply was stored
    r = await api.get(f"/messages/{mid}/receipts", alice)
    assert r.status == 200 and all(rc["delivered_at"] is None for rc in r.body["receipts"])


async def test_clients_cannot_send_lines(api: Api) -> None:
    alice, bob = [await api.register() for _ in range(2)]
    room = await api.group(alice, bob)
    cid = "system:" + uuid.uuid4().hex
    r = await api.post(f"/rooms/{room}/messages", {"client_msg_id": cid, "text": "hi"}, alice)
    assert (r.status, r.error_code) == (400, "invalid_request"), r.body
    assert r.body["error"]["field"] == "client_msg_id"
    ws = await api.ws(alice)
    reply = await ws.request("message.send", {"room_id": room, "client_msg_id": cid, "text": "hi"})
    assert reply["type"] == "error" and reply["data"]["code"] == "invalid_request", reply
    assert (await api.get(f"/history/room/{room}", alice)).body["messages"] == []


async def test_history_sync_and_replay_carry_the_lines(api: Api) -> None:
    alice, bob, carol = [await api.register() for _ in range(3)]
    room = await api.group(alice, bob)
    before = (await api.get(f"/rooms/{room}", bob)).body["version"]
    bob_ws = await api.ws(bob)
    assert bob_ws.ready is not None
    await api.send(alice, room, "first")
    await bob_ws.expect("message.new")
    session, last_seq = bob_ws.ready["session"], bob_ws.seqs[-1]
    bob_ws.close()
    await bob_ws.close_code()

    await api.post(f"/rooms/{room}/members", {"user_ids": [carol.id]}, alice)
    await api.patch(f"/rooms/{room}", {"private": False}, alice)

    # Replay: the resumed session gets the lines it missed.
    resumed = await api.ws(bob, resume={"session": session, "last_seq": last_seq})
    assert resumed.ready is not None and resumed.ready["resume"] == "ok"
    await _line(resumed, "member_added")
    await _line(resumed, "privacy_changed")

    # Sync: changed_after finds them like any message.
    r = await api.get(f"/history/room/{room}?changed_after={before}", bob)
    assert r.status == 200, r.body
    events = [m["system"]["event"] for m in r.body["messages"] if m["type"] == "system"]
    assert events == ["member_added", "privacy_changed"]
    assert [s["event"] for s in await _lines(api, carol, room)] == [
        "member_added",
        "privacy_changed",
    ]


async def test_concurrent_changes_are_told_in_the_order_of_their_lines(
    server: Server, api: Api
) -> None:
    """Two adds at once: the second waits until the first has told the room and posted its
    line, so every member hears change, line, change, line."""
    assert server.ctx is not None
    rooms = server.ctx.services.rooms
    alice, bob, carol, dave = [await api.register() for _ in range(4)]
    room = await api.group(alice, bob)
    bob_ws = await api.ws(bob)
    lock, asked, release = rooms.change_lock, [], asyncio.Event()

    class Watched:  # the room's lock, noting who asks for which key
        def hold(self, key: str) -> AbstractAsyncContextManager[None]:
            asked.append(key)
            return lock.hold(key)

    async def stall(_room_id: str, _actor_id: str, line: dict[str, Any]) -> None:
        if line["user_ids"] == [carol.id]:  # the first change's line waits to be let go
            await release.wait()

    rooms.change_lock = Watched()
    rooms.on_history_line.insert(0, stall)
    key = f"history:{room}"
    try:
        first = asyncio.create_task(
            api.post(f"/rooms/{room}/members", {"user_ids": [carol.id]}, alice)
        )
        await _until(lambda: key in asked, "the first change holds the room's history")
        second = asyncio.create_task(
            api.post(f"/rooms/{room}/members", {"user_ids": [dave.id]}, alice)
        )
        await _until(lambda: asked.count(key) == 2, "the second change waits for it")
        release.set()
        assert (await first).status == 200 and (await second).status == 200
    finally:
        rooms.change_lock = lock
        rooms.on_history_line.remove(stall)
    frames: list[dict[str, Any]] = []

    def noted(frame: dict[str, Any]) -> bool:
        frames.append(frame)
        return True

    for _ in range(2):
        await bob_ws.expect("room.member_added", noted)
        await bob_ws.expect("message.new", lambda f: is_line("member_added")(f) and noted(f))
    told = [
        (f["type"], f["data"].get("user_ids") or f["data"]["message"]["system"]["user_ids"])
        for f in sorted(frames, key=lambda f: f["seq"])
    ]
    assert told == [
        ("room.member_added", [carol.id]),
        ("message.new", [carol.id]),
        ("room.member_added", [dave.id]),
        ("message.new", [dave.id]),
    ], told
