"""Mentions: derived by the server from the text on send and edit, resolved among the room's
current members; `@room` for group admins only, rate-limited; reserved usernames."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from fastsock.app import Server
from fastsock.config import Limits
from fastsock.services.mentions import no_mentions
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
    # The counts follow the text as it is now: carol, named by the edit, hears hers (no new
    # message: clients notify on message.new only).
    assert await carol_ws.expect("unread") == {
        "room_id": room,
        "unread_count": 1,
        "mention_count": 1,
    }
    assert [f["type"] for f in carol_ws.frames if f["type"] == "message.new"] == []
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
    # Nothing announced: the first message.new the member hears is the admin's next one.
    marker = await _post(api, admin, room, "marker")
    assert (await member_ws.expect("message.new"))["message"]["id"] == marker.body["id"]
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
    # Worded for people: the limit and the wait (about an hour / allowed, in minutes).
    wording = rf"You can mention @room {allowed} times an hour; try again in \d+ minutes"
    assert re.fullmatch(wording, r.body["error"]["message"]), r.body
    assert (await _history(api, admin, room))[0]["id"] == last["id"]  # nothing stored
    # Re-editing a message that has @room already is not another @room.
    r = await api.patch(f"/messages/{last['id']}", {"text": "@room update, fixed"}, admin)
    assert r.status == 200 and r.body["mention_room"] is True
    # Messages without @room still go out.
    assert (await _post(api, admin, room, "plain")).status == 201


async def test_a_demoted_admin_may_edit_a_message_that_had_at_room_but_not_add_it(
    api: Api,
) -> None:
    owner, helper = await api.register(), await api.register()
    room = await api.group(owner, helper)
    r = await api.patch(f"/rooms/{room}/members/{helper.id}", {"role": "admin"}, owner)
    assert r.status == 200, r.body
    announced = (await _post(api, helper, room, "@room standup at 10")).body
    plain = (await _post(api, helper, room, "standup notes")).body
    r = await api.patch(f"/rooms/{room}/members/{helper.id}", {"role": "member"}, owner)
    assert r.status == 200, r.body
    # Keeping @room in a typo fix is no new @room: no role needed.
    r = await api.patch(f"/messages/{announced['id']}", {"text": "@room standup at 11"}, helper)
    assert r.status == 200 and r.body["mention_room"] is True, r.body
    # Adding it is checked as on send.
    r = await api.patch(f"/messages/{plain['id']}", {"text": "@room notes"}, helper)
    assert r.status == 403 and r.body["error"]["code"] == "forbidden", r.body
    stored = {m["id"]: m for m in await _history(api, owner, room)}
    assert (stored[plain["id"]]["text"], stored[plain["id"]]["mention_room"]) == (
        "standup notes",
        False,
    )


async def test_only_the_named_accounts_are_read(
    server: Server, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob, carol, dave = [await api.register() for _ in range(4)]
    outsider = await api.register()
    room = await api.group(alice, bob, carol, dave)
    looked_up: list[list[str]] = []
    users = server.store.users
    by_usernames = users.by_usernames

    async def spy(names: list[str]) -> list[dict[str, Any]]:
        looked_up.append(list(names))
        return await by_usernames(names)

    async def refused(user_ids: Any) -> list[dict[str, Any]]:
        raise AssertionError("a send read accounts by id")

    monkeypatch.setattr(users, "by_usernames", spy)
    monkeypatch.setattr(users, "many", refused)
    text = f"@{bob.username} @nobody_here @{outsider.username}"
    r = await _post(api, alice, room, text)
    assert r.status == 201 and r.body["mentions"] == [bob.id], r.body
    assert looked_up == [[bob.username, "nobody_here", outsider.username]]


async def test_at_room_refused_over_the_websocket_answers_the_ref_and_stores_nothing(
    api: Api,
) -> None:
    admin, member = await api.register(), await api.register()
    room = await api.group(admin, member)
    member_ws = await api.ws(member)
    data = {"room_id": room, "client_msg_id": uuid.uuid4().hex, "text": "hey @room"}
    reply = await member_ws.request("message.send", data)
    assert reply["type"] == "error", reply
    assert reply["data"]["code"] == "forbidden" and "@room" in reply["data"]["message"]
    assert await _history(api, admin, room) == []
    # No message.new nor ack went out for it: the next is the admin's marker.
    marker = (await _post(api, admin, room, "marker")).body
    assert (await member_ws.expect("message.new"))["message"]["id"] == marker["id"]
    assert [f for f in member_ws.frames if f["type"] == "message.ack"] == []


def test_no_mentions_is_a_fresh_document_each_time() -> None:
    first = no_mentions()
    first["mentions"].append("someone")
    assert no_mentions() == {"mentions": [], "mention_room": False}


@pytest.mark.parametrize("name", sorted(RESERVED_USERNAMES))
async def test_reserved_usernames_cannot_be_registered(api: Api, name: str) -> None:
    for spelled in (name, name.upper()):
        r = await api.post("/auth/register", {"username": spelled, "password": "pw-123456789"})
        assert r.status == 400 and r.body["error"]["field"] == "username", r.body
