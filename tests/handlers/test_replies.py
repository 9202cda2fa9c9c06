"""Replies: `reply_to_id` on send, the original resolved whenever the reply is read (history,
sync, search, events, the room list), refused for anything but a live message of the room;
and `around` history to show an original far back."""

from __future__ import annotations

import uuid
from typing import Any

from tests.support import Api, User


async def _reply(api: Api, user: User, room: str, text: str, reply_to_id: str) -> Any:
    body = {"client_msg_id": uuid.uuid4().hex, "text": text, "reply_to_id": reply_to_id}
    return await api.post(f"/rooms/{room}/messages", body, user)


def _quote(message: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": message["id"],
        "sender_id": message["sender_id"],
        "type": message["type"],
        "text": message["text"][:200],
        "deleted": message["deleted"],
        "created_at": message["created_at"],
    }


async def test_a_reply_carries_the_original_everywhere_it_is_read(api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    original = await api.send(alice, room, "long " + "x" * 300)
    alice_ws = await api.ws(alice)
    version = (await api.get("/rooms", alice)).body["rooms"][0]["version"]
    body = {"client_msg_id": "r1", "text": "a findable answer", "reply_to_id": original["id"]}
    r = await api.post(f"/rooms/{room}/messages", body, bob)
    assert r.status == 201, r.body
    quote = _quote(original)
    assert r.body["reply_to"] == quote and len(quote["text"]) == 200
    new = await alice_ws.expect("message.new")
    assert new["message"]["reply_to"] == quote
    history = (await api.get(f"/history/room/{room}", alice)).body["messages"]
    assert history[0]["reply_to"] == quote and history[1]["reply_to"] is None
    synced = (await api.get(f"/history/room/{room}?changed_after={version}", alice)).body
    assert [m["reply_to"] for m in synced["messages"]] == [quote]
    found = (await api.get("/search/messages?q=findable", alice)).body["messages"]
    assert [m["reply_to"] for m in found] == [quote]
    rooms = (await api.get("/rooms", alice)).body["rooms"]
    assert rooms[0]["last_message"]["reply_to"] == quote
    # The same send again (a retry) answers the same reply.
    again = await api.post(f"/rooms/{room}/messages", body, bob)
    assert again.status == 200 and again.body["reply_to"] == quote
    # Over the socket too: message.ack carries it.
    bob_ws = await api.ws(bob)
    data = {"room_id": room, "client_msg_id": "r2", "text": "ws", "reply_to_id": original["id"]}
    await bob_ws.send("message.send", data, "s")
    assert (await bob_ws.expect("message.ack"))["message"]["reply_to"] == quote


async def test_edits_and_deletes_of_the_original_show_in_the_reply(api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    original = await api.send(alice, room, "first take")
    reply = (await _reply(api, bob, room, "agreed", original["id"])).body
    r = await api.patch(f"/messages/{original['id']}", {"text": "second take"}, alice)
    assert r.status == 200
    history = (await api.get(f"/history/room/{room}", bob)).body["messages"]
    assert history[0]["id"] == reply["id"] and history[0]["reply_to"]["text"] == "second take"
    assert (await api.delete(f"/messages/{original['id']}", alice)).status == 204
    history = (await api.get(f"/history/room/{room}", bob)).body["messages"]
    assert history[0]["reply_to"] == {
        **_quote(original),
        "text": "",
        "deleted": True,
    }
    # A reply cannot be moved by an edit: the field is refused.
    r = await api.patch(f"/messages/{reply['id']}", {"text": "x", "reply_to_id": reply["id"]}, bob)
    assert r.status == 400 and r.body["error"]["field"] == "reply_to_id"


async def test_replies_to_replies_are_fine(api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    first = await api.send(alice, room, "q")
    second = (await _reply(api, bob, room, "a", first["id"])).body
    third = await _reply(api, alice, room, "thanks", second["id"])
    assert third.status == 201 and third.body["reply_to"]["id"] == second["id"]
    assert "reply_to" not in third.body["reply_to"]  # no nesting


async def test_refused_replies_store_nothing(api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    room, other = await api.group(alice, bob), await api.group(alice, bob)
    elsewhere = await api.send(alice, other, "in the other room")
    gone = await api.send(alice, room, "soon gone")
    assert (await api.delete(f"/messages/{gone['id']}", alice)).status == 204
    unknown = uuid.uuid4().hex[:24]
    answers = {}
    for name, target in (("other room", elsewhere["id"]), ("unknown", unknown)):
        r = await _reply(api, bob, room, "re", target)
        assert r.status == 400 and r.body["error"]["field"] == "reply_to_id", (name, r.body)
        answers[name] = r.body
    assert answers["other room"] == answers["unknown"]  # nothing tells them apart
    r = await _reply(api, bob, room, "re", "not-an-id")
    assert r.status == 400 and r.body["error"]["field"] == "reply_to_id"
    r = await _reply(api, bob, room, "re", gone["id"])
    assert r.status == 409 and r.body["error"]["code"] == "conflict"
    history = (await api.get(f"/history/room/{room}", bob)).body["messages"]
    assert [m["id"] for m in history] == [gone["id"]]


async def test_a_deleted_reply_keeps_no_quote(api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    original = await api.send(alice, room, "q")
    reply = (await _reply(api, bob, room, f"@{alice.username} a", original["id"])).body
    assert reply["mentions"] == [alice.id]
    assert (await api.delete(f"/messages/{reply['id']}", bob)).status == 204
    tombstone = (await api.get(f"/history/room/{room}", alice)).body["messages"][0]
    assert tombstone["deleted"] is True
    assert (tombstone["reply_to"], tombstone["mentions"]) == (None, [])


async def test_history_around_a_message(api: Api) -> None:
    alice = await api.register()
    room = await api.group(alice)
    ids = [(await api.send(alice, room, f"m{i}"))["id"] for i in range(10)]

    async def around(target: str, limit: int) -> dict[str, Any]:
        r = await api.get(f"/history/room/{room}?around={target}&limit={limit}", alice)
        assert r.status == 200, r.body
        return r.body

    page = await around(ids[4], 5)  # 2 older, the target, 2 newer; newest first
    assert [m["id"] for m in page["messages"]] == ids[2:7][::-1]
    assert (page["has_more"], page["has_newer"]) == (True, True)
    page = await around(ids[1], 6)  # only 1 older exists: 3 asked for
    assert [m["id"] for m in page["messages"]] == ids[0:4][::-1]
    assert (page["has_more"], page["has_newer"]) == (False, True)
    page = await around(ids[9], 4)
    assert [m["id"] for m in page["messages"]] == ids[7:10][::-1]
    assert (page["has_more"], page["has_newer"]) == (True, False)
    page = await around(ids[5], 1)  # just the target
    assert [m["id"] for m in page["messages"]] == [ids[5]]
    assert (page["has_more"], page["has_newer"]) == (True, True)
    page = await around(ids[0], 100)
    assert [m["id"] for m in page["messages"]] == ids[::-1]
    assert (page["has_more"], page["has_newer"]) == (False, False)
    # The pages on from there meet it exactly.
    older = await api.get(f"/history/room/{room}?before={ids[2]}&limit=50", alice)
    assert [m["id"] for m in older.body["messages"]] == ids[:2][::-1]


async def test_history_around_refuses_mixing_and_foreign_ids(api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    room, other = await api.group(alice, bob), await api.group(alice, bob)
    mine = await api.send(alice, room, "here")
    elsewhere = await api.send(alice, other, "there")
    for extra in ("before", "after"):
        r = await api.get(f"/history/room/{room}?around={mine['id']}&{extra}={mine['id']}", alice)
        assert r.status == 400, (extra, r.body)
    r = await api.get(f"/history/room/{room}?around={mine['id']}&changed_after=0", alice)
    assert r.status == 400
    answers = []
    for target in (elsewhere["id"], uuid.uuid4().hex[:24]):
        r = await api.get(f"/history/room/{room}?around={target}", alice)
        assert r.status == 400 and r.body["error"]["field"] == "around", r.body
        answers.append(r.body)
    assert answers[0] == answers[1]
    r = await api.get(f"/history/room/{room}?around=nope", alice)
    assert r.status == 400 and r.body["error"]["field"] == "around"
