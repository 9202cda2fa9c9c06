"""Mentions: derived by the server from the text on send and edit, resolved among the room's
current members; `@room` for group admins only, rate-limited; reserved usernames."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from fastsock.config import Limits
from fastsock.services.schemas import RESERVED_USERNAMES
from tests.support import Api, User


async def _post(api: Api, user: User, room: str, text: str, **extra: Any) -> Any:
    body = {"client_msg_id": uuid.uuid4().hex, "text": text, **extra}
    return await api.post(f"/rooms/{room}/messages", body, user)


async def _history(api: Api, user: User, room: str) -> list[dict[str, Any]]:
    r = await api.get(f"/history/room/{room}", user)
    assert r.status == 200, r.body
    return r.body["messages"]


async def test_mentions_are_members_in_text_order_once_each(api: Api) -> None:
    alice, bob, carol = [await api.register() for _ in range(3)]
    outsider = await api.register()
    room = await api.group(alice, bob, carol)
    text = (
        f"@{carol.username.upper()}, see this @{bob.username}. and again @{carol.username}"
        f" (cc @{outsider.username} @nobody_here, mail x@{bob.username} `@@{bob.username}`)"
    )
    r = await _post(api, alice, room, text)
    assert r.status == 201, r.body
    # Any case; the trailing "." is punctuation; a repeat, a non-member, an unknown name, an
    # address and `@@name` are no mentions. The text stays as sent.
    assert r.body["mentions"] == [carol.id, bob.id]
    assert r.body["mention_room"] is False and r.body["text"] == text
    assert (await _history(api, bob, room))[0]["mentions"] == [carol.id, bob.id]


async def test_at_most_fifty_mentions_the_first_ones(api: Api) -> None:
    owner = await api.register()
    members = [await api.register() for _ in range(52)]
    room = await api.group(owner, *members)
    r = await _post(api, owner, room, " ".join(f"@{m.username}" for m in members))
    assert r.status == 201, r.body
    assert r.body["mentions"] == [m.id for m in members[:50]]


async def test_a_removed_member_is_no_longer_mentioned(api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    assert (await api.delete(f"/rooms/{room}/members/{bob.id}", alice)).status == 204
    r = await _post(api, alice, room, f"@{bob.username} are you there?")
    assert r.status == 201 and r.body["mentions"] == []


async def test_edits_recompute_mentions_and_notify_nobody_again(api: Api) -> None:
    alice, bob, carol = [await api.register() for _ in range(3)]
    room = await api.group(alice, bob, carol)
    carol_ws = await api.ws(carol)
    sent = (await _post(api, alice, room, f"hi @{bob.username}")).body
    await carol_ws.expect("message.new")
    await carol_ws.expect("unread")
    r = await api.patch(f"/messages/{sent['id']}", {"text": f"hi @{carol.username}"}, alice)
    assert r.status == 200 and r.body["mentions"] == [carol.id]
    updated = await carol_ws.expect("message.updated")
    assert updated["message"]["mentions"] == [carol.id]
    # The unread counts follow the text as it is now; the edit itself announces none.
    await carol_ws.assert_none("unread")
    rooms = (await api.get("/rooms", carol)).body["rooms"]
    assert (rooms[0]["unread_count"], rooms[0]["mention_count"]) == (1, 1)


async def test_at_room_is_for_group_admins_only(api: Api) -> None:
    admin, member = await api.register(), await api.register()
    room = await api.group(admin, member)
    member_ws = await api.ws(member)
    r = await _post(api, member, room, "hey @room")
    assert r.status == 403 and r.body["error"]["code"] == "forbidden"
    assert "@room" in r.body["error"]["message"]
    assert await _history(api, admin, room) == []  # nothing stored
    await member_ws.assert_none("message.new", quiet=0.2)
    dm = (await api.post("/rooms/direct", {"user_id": member.id}, admin)).body["id"]
    r = await _post(api, admin, dm, "@room hello")
    assert r.status == 403 and r.body["error"]["code"] == "forbidden"
    r = await _post(api, admin, room, "@room: standup in 5")
    assert r.status == 201 and r.body["mention_room"] is True and r.body["mentions"] == []
    # Not a token inside a word or an address.
    r = await _post(api, member, room, "mail me at desk@room.example")
    assert r.status == 201 and r.body["mention_room"] is False


async def test_an_edit_adding_at_room_is_checked_like_a_send(api: Api) -> None:
    admin, member = await api.register(), await api.register()
    room = await api.group(admin, member)
    mine = (await _post(api, member, room, "hello")).body
    r = await api.patch(f"/messages/{mine['id']}", {"text": "hello @room"}, member)
    assert r.status == 403 and r.body["error"]["code"] == "forbidden"
    history = await _history(api, member, room)
    assert history[0]["text"] == "hello" and history[0]["mention_room"] is False
    theirs = (await _post(api, admin, room, "plan")).body
    r = await api.patch(f"/messages/{theirs['id']}", {"text": "plan @room"}, admin)
    assert r.status == 200 and r.body["mention_room"] is True


async def test_at_room_is_rate_limited_per_user(api: Api) -> None:
    admin, member = await api.register(), await api.register()
    room = await api.group(admin, member)
    allowed = Limits().room_mentions_per_hour  # the test server keeps the default
    for i in range(allowed):
        r = await _post(api, admin, room, f"@room update {i}")
        assert r.status == 201, (i, r.body)
    last = (await _history(api, admin, room))[0]
    r = await _post(api, admin, room, "@room one more")
    assert r.status == 429 and r.body["error"]["code"] == "rate_limited"
    assert float(r.headers["Retry-After"]) > 0
    assert (await _history(api, admin, room))[0]["id"] == last["id"]  # nothing stored
    # Re-editing a message that has @room already is not another @room.
    r = await api.patch(f"/messages/{last['id']}", {"text": "@room update, fixed"}, admin)
    assert r.status == 200 and r.body["mention_room"] is True
    # Messages without @room still go out.
    assert (await _post(api, admin, room, "plain")).status == 201


@pytest.mark.parametrize("name", sorted(RESERVED_USERNAMES))
async def test_reserved_usernames_cannot_be_registered(api: Api, name: str) -> None:
    for spelled in (name, name.upper()):
        r = await api.post("/auth/register", {"username": spelled, "password": "pw-123456789"})
        assert r.status == 400 and r.body["error"]["field"] == "username", r.body
