"""GET /search/messages: only rooms I am a member of now, newest first, paginated."""

from __future__ import annotations

import random
import string
from typing import Any
from urllib.parse import urlencode

from fastsock.app import Server
from fastsock.store.mongo import MongoStore
from tests.support import Api, Response, User


def _word() -> str:
    """A word no other message contains (letters only, so every search mode treats it alike)."""
    return "".join(random.choices(string.ascii_lowercase, k=12))


async def _search(api: Api, user: User, **params: Any) -> Response:
    return await api.get("/search/messages?" + urlencode(params), user)


async def _ids(api: Api, user: User, **params: Any) -> list[str]:
    r = await _search(api, user, **params)
    assert r.status == 200, r.body
    assert set(r.body) == {"messages", "has_more"}
    return [m["id"] for m in r.body["messages"]]


async def test_finds_only_messages_in_my_rooms_newest_first(api: Api) -> None:
    alice, bob, eve = await api.register(), await api.register(), await api.register()
    word = _word()
    shared = await api.group(alice, bob)
    own = await api.group(alice)
    foreign = await api.group(eve, bob)  # alice is not in it
    m1 = await api.send(alice, shared, f"first {word} here")
    secret = await api.send(eve, foreign, f"secret {word} for eve and bob")
    m2 = await api.send(bob, shared, f"{word.upper()} shouted by bob")
    m3 = await api.send(alice, own, f"note to self: {word}")
    await api.send(alice, shared, "nothing to see")

    r = await _search(api, alice, q=word)
    assert r.status == 200, r.body
    assert [m["id"] for m in r.body["messages"]] == [m3["id"], m2["id"], m1["id"]]
    assert r.body["has_more"] is False
    found = r.body["messages"][1]
    assert found["room_id"] == shared and found["sender_id"] == bob.id
    assert found["text"] == m2["text"] and found["deleted"] is False
    # Bob sees his two rooms' matches; eve only hers.
    assert await _ids(api, bob, q=word) == [m2["id"], secret["id"], m1["id"]]
    assert await _ids(api, eve, q=word) == [secret["id"]]
    # A word nobody wrote finds nothing.
    assert await _ids(api, alice, q=_word()) == []


async def test_never_returns_messages_from_a_room_i_left(api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    word = _word()
    stay = await api.group(alice, bob)
    leave = await api.group(bob, alice)
    before_leaving = await api.send(alice, leave, f"{word} said before leaving")
    kept = await api.send(bob, stay, f"{word} in the room I stay in")
    assert set(await _ids(api, alice, q=word)) == {before_leaving["id"], kept["id"]}

    r = await api.delete(f"/rooms/{leave}/members/{alice.id}", alice)
    assert r.status == 204, r.body
    after_leaving = await api.send(bob, leave, f"{word} said after alice left")
    assert await _ids(api, alice, q=word) == [kept["id"]]
    r = await _search(api, alice, q=word, room_id=leave)
    assert r.status == 403 and r.error_code == "not_a_member", r.body
    # The room's remaining member still finds everything in it.
    assert await _ids(api, bob, q=word, room_id=leave) == [
        after_leaving["id"],
        before_leaving["id"],
    ]


async def test_deleted_and_edited_away_messages_are_not_found(api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    word = _word()
    room = await api.group(alice, bob)
    gone = await api.send(alice, room, f"regrettable {word}")
    edited = await api.send(bob, room, f"typo {word}")
    kept = await api.send(bob, room, f"fine {word}")
    assert len(await _ids(api, alice, q=word)) == 3

    assert (await api.delete(f"/messages/{gone['id']}", alice)).status == 204
    r = await api.patch(f"/messages/{edited['id']}", {"text": "fixed, nothing to find"}, bob)
    assert r.status == 200, r.body
    assert await _ids(api, alice, q=word) == [kept["id"]]
    assert await _ids(api, bob, q=word, room_id=room) == [kept["id"]]


async def test_pagination_with_limit_and_before_returns_each_result_once(api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    word = _word()
    room_a = await api.group(alice, bob)
    room_b = await api.group(bob, alice)
    sent = []
    for i in range(7):
        room = room_a if i % 2 else room_b
        sent.append(await api.send(bob if i % 3 else alice, room, f"{word} number {i}"))
        await api.send(alice, room, f"filler {i}")
    expected = [m["id"] for m in reversed(sent)]

    pages: list[list[str]] = []
    more: list[bool] = []
    params: dict[str, Any] = {"q": word, "limit": 3}
    while len(pages) < 5:
        r = await _search(api, alice, **params)
        assert r.status == 200, r.body
        page = [m["id"] for m in r.body["messages"]]
        pages.append(page)
        more.append(r.body["has_more"])
        if not r.body["has_more"]:
            break
        params["before"] = page[-1]
    assert [len(p) for p in pages] == [3, 3, 1]
    assert more == [True, True, False]
    assert [i for p in pages for i in p] == expected  # newest first, each exactly once

    # The room filter pages the same way within one room.
    in_a = [m["id"] for m in reversed(sent) if m["room_id"] == room_a]
    first = await _search(api, alice, q=word, room_id=room_a, limit=2)
    assert [m["id"] for m in first.body["messages"]] == in_a[:2] and first.body["has_more"]
    rest = await _ids(api, alice, q=word, room_id=room_a, before=in_a[1], limit=50)
    assert rest == in_a[2:]
    assert all(m["room_id"] == room_a for m in first.body["messages"])


async def test_invalid_queries_are_refused(api: Api) -> None:
    alice, eve = await api.register(), await api.register()
    room = await api.group(alice)
    await api.send(alice, room, "private words")
    eve_room = await api.group(eve)

    assert (await api.get("/search/messages", alice)).status == 400
    for params in (
        {},
        {"q": ""},
        {"q": "   "},
        {"q": "x" * 201},
        {"q": "words", "limit": 0},
        {"q": "words", "limit": 51},
        {"q": "words", "limit": "many"},
        {"q": "words", "before": "nope"},
        {"q": "words", "room_id": "nope"},
    ):
        r = await _search(api, alice, **params)
        assert r.status == 400 and r.error_code == "invalid_request", (params, r.body)
    # A room I am not in, or one that does not exist: the same 403, nothing learned.
    for room_id in (eve_room, "0" * 24):
        r = await _search(api, alice, q="words", room_id=room_id)
        assert r.status == 403 and r.error_code == "not_a_member", r.body
    # Search needs authentication.
    r = await api.get("/search/messages?q=words")
    assert r.status == 401


async def test_words_joined_by_punctuation_are_found(server: Server, api: Api) -> None:
    """Each word of `q` is searched for: `e-mail` finds "e-mail" (as `e` and `mail`), on
    MongoDB also without text search: its regex fallback, forced here since the stand-in
    has a text index."""
    alice = await api.register()
    room = await api.group(alice)
    texts = ["send me an e-mail", "I don't know", "see you at 10:30", "call foo.bar() now"]
    sent = [(await api.send(alice, room, text))["id"] for text in texts]
    await api.send(alice, room, "nothing to see")
    queries = ["e-mail", "don't", "10:30", "foo.bar"]

    async def each_finds_its_message(path: str) -> None:
        for query, hit in zip(queries, sent, strict=True):
            assert await _ids(api, alice, q=query) == [hit], (path, query)

    await each_finds_its_message("index")
    assert server.ctx is not None
    store = server.ctx.store
    if isinstance(store, MongoStore):
        assert store.messages.text_search  # the stand-in's text index
        store.messages.text_search = False
        await each_finds_its_message("regex fallback")
