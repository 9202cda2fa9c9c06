"""The member cache in a running server (services/members.py): room events and the membership
check are answered from memory, and every membership change reaches the cache at once, also
when the change's write failed; `Rooms.on_members_changed` hears of each change, after the
store and before anyone is told."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from fastsock.app import Server
from fastsock.services.rooms import Rooms
from fastsock.store.sqlite.errors import Closed
from tests.support import Api, Socket, User

Changes = list[tuple[str, list[str], list[str]]]


def rooms_of(server: Server) -> Rooms:
    assert server.ctx is not None
    return server.ctx.services.rooms


def record_changes(server: Server) -> Changes:
    changes: Changes = []

    async def hook(room_id: str, added: list[str], removed: list[str]) -> None:
        changes.append((room_id, sorted(added), sorted(removed)))

    rooms_of(server).on_members_changed.append(hook)
    return changes


async def warm(api: Api, sender: User, room: str, *sockets: Socket) -> None:
    """Send a message every socket receives: the room's members are now cached."""
    sent = await api.send(sender, room, "warming " + uuid.uuid4().hex)
    for ws in sockets:
        await ws.expect("message.new", match=lambda f: f["data"]["message"]["id"] == sent["id"])


async def can_send(api: Api, user: User, room: str) -> int:
    r = await api.post(
        f"/rooms/{room}/messages", {"client_msg_id": uuid.uuid4().hex, "text": "hi"}, user
    )
    return r.status


async def test_a_removed_member_is_cut_off_at_once(api: Api) -> None:
    alice, bob, carol = await api.register(), await api.register(), await api.register()
    room = await api.group(alice, bob, carol)
    bob_ws, carol_ws = await api.ws(bob), await api.ws(carol)
    await warm(api, alice, room, bob_ws, carol_ws)

    assert (await api.delete(f"/rooms/{room}/members/{carol.id}", alice)).status == 204
    await carol_ws.expect("room.member_removed")
    after = await api.send(alice, room, "after the removal")
    await bob_ws.expect("message.new", match=lambda f: f["data"]["message"]["id"] == after["id"])
    await carol_ws.drain(0.3)
    assert not [f for f in carol_ws.frames if f.get("type") == "message.new"], carol_ws.frames
    r = await api.get(f"/history/room/{room}", carol)
    assert r.status == 403 and r.error_code == "not_a_member"
    assert await can_send(api, carol, room) == 403


async def test_an_added_member_is_let_in_at_once(api: Api) -> None:
    alice, bob, dave = await api.register(), await api.register(), await api.register()
    room = await api.group(alice, bob)
    bob_ws, dave_ws = await api.ws(bob), await api.ws(dave)
    await warm(api, alice, room, bob_ws)

    r = await api.post(f"/rooms/{room}/members", {"user_ids": [dave.id]}, alice)
    assert r.status == 200, r.body
    sent = await api.send(alice, room, "welcome")
    await dave_ws.expect("message.new", match=lambda f: f["data"]["message"]["id"] == sent["id"])
    reply = await dave_ws.request(
        "message.send", {"room_id": room, "client_msg_id": uuid.uuid4().hex, "text": "hello"}
    )
    assert reply["type"] == "message.ack", reply


async def test_a_member_who_joins_a_public_room_is_let_in_at_once(api: Api) -> None:
    alice, bob, erin = await api.register(), await api.register(), await api.register()
    room = await api.group(alice, bob, private=False)
    bob_ws, erin_ws = await api.ws(bob), await api.ws(erin)
    await warm(api, alice, room, bob_ws)
    assert await can_send(api, erin, room) == 403  # not yet: the cache answers no

    assert (await api.post(f"/rooms/{room}/join", None, erin)).status == 200
    sent = await api.send(alice, room, "hello erin")
    await erin_ws.expect("message.new", match=lambda f: f["data"]["message"]["id"] == sent["id"])
    assert await can_send(api, erin, room) == 201


async def test_the_new_admin_can_act_at_once_after_the_last_admin_leaves(
    api: Api, server: Server
) -> None:
    rooms = rooms_of(server)

    async def reader(room_id: str, added: list[str], removed: list[str]) -> None:
        await rooms.members.of(room_id)  # a request reading the room at the worst moment

    rooms.on_members_changed.append(reader)
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    assert (await api.delete(f"/rooms/{room}/members/{alice.id}", alice)).status == 204
    r = await api.patch(f"/rooms/{room}", {"name": "bob's now"}, bob)
    assert r.status == 200, r.body


async def test_a_failed_write_still_reaches_the_cache(
    api: Api, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write whose answer was lost may have been stored: the cache forgets the room."""
    memberships = rooms_of(server).store.memberships
    add, remove = memberships.add, memberships.remove

    async def add_then_fail(*args: Any) -> bool:
        await add(*args)
        raise Closed("the answer was lost")

    async def remove_then_fail(*args: Any) -> bool:
        await remove(*args)
        raise Closed("the answer was lost")

    alice, bob, dave = await api.register(), await api.register(), await api.register()
    room = await api.group(alice, bob)
    bob_ws = await api.ws(bob)
    await warm(api, alice, room, bob_ws)

    monkeypatch.setattr(memberships, "add", add_then_fail)
    r = await api.post(f"/rooms/{room}/members", {"user_ids": [dave.id]}, alice)
    assert r.status == 503, r.body
    monkeypatch.setattr(memberships, "add", add)
    assert await can_send(api, dave, room) == 201

    await warm(api, alice, room, bob_ws)
    monkeypatch.setattr(memberships, "remove", remove_then_fail)
    assert (await api.delete(f"/rooms/{room}/members/{bob.id}", alice)).status == 503
    assert await can_send(api, bob, room) == 403


async def test_every_membership_change_is_told_to_the_hooks(api: Api, server: Server) -> None:
    changes = record_changes(server)
    alice, bob, carol, dave = [await api.register() for _ in range(4)]
    room = await api.group(alice, bob)
    assert changes == [(room, sorted([alice.id, bob.id]), [])]

    r = await api.post("/rooms/direct", {"user_id": bob.id}, alice)
    assert r.status == 201, r.body
    dm = r.body["id"]
    assert changes[-1] == (dm, sorted([alice.id, bob.id]), [])
    assert (await api.post("/rooms/direct", {"user_id": alice.id}, bob)).status == 200
    assert len(changes) == 2  # the DM existed: nothing changed

    await api.post(f"/rooms/{room}/members", {"user_ids": [carol.id, bob.id]}, alice)
    assert changes[-1] == (room, [carol.id], [])
    public = await api.group(alice, private=False)
    assert (await api.post(f"/rooms/{public}/join", None, dave)).status == 200
    assert changes[-1] == (public, [dave.id], [])
    assert (await api.delete(f"/rooms/{room}/members/{carol.id}", alice)).status == 204
    assert changes[-1] == (room, [], [carol.id])
    assert (await api.delete(f"/rooms/{room}/members/{alice.id}", alice)).status == 204
    # The last admin left (alice), then bob became admin: a second change, of a role.
    assert changes[-2:] == [(room, [], [alice.id]), (room, [], [])]


async def test_the_hooks_run_after_the_removal_and_before_anyone_is_told(
    api: Api, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    rooms = rooms_of(server)
    seen: list[tuple[str, Any]] = []

    async def hook(room_id: str, added: list[str], removed: list[str]) -> None:
        for user_id in removed:
            stored = await rooms.store.memberships.get(room_id, user_id)
            seen.append(("hook", stored))

    publish = rooms.sink.publish

    async def spy(user_ids: Any, type_: str, data: Any, **kw: Any) -> None:
        seen.append(("publish", type_))
        await publish(user_ids, type_, data, **kw)

    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    rooms.on_members_changed.append(hook)
    monkeypatch.setattr(rooms.sink, "publish", spy)
    assert (await api.delete(f"/rooms/{room}/members/{bob.id}", alice)).status == 204
    # Then the history line for those who stay (message.new), after everyone was told.
    assert seen[:2] == [("hook", None), ("publish", "room.member_removed")]
    assert [type_ for _, type_ in seen[2:]] == ["message.new"]
