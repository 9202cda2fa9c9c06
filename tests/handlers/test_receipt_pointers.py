"""Issue 14, item 8: every member's delivered pointer in the room view (`GET /rooms/{id}`
`members[]`), beside the read pointer, so a client gets the ticks of every loaded message with
one request. The pointer is the newest message of the room the member's client confirmed; it
never moves back, reading implies delivery, and `GET /messages/{id}/receipts` agrees with it."""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from fastsock.app import Server
from tests.support import Api, Socket, User

Doc = dict[str, Any]


async def _members(api: Api, room: str, user: User) -> dict[str, Doc]:
    r = await api.get(f"/rooms/{room}", user)
    assert r.status == 200, r.body
    return {m["user_id"]: m for m in r.body["members"]}


def _pointer(member: Doc) -> tuple[str | None, str | None]:
    return member["last_delivered_message_id"], member["last_delivered_at"]


async def _confirm(ws: Socket, *ids: str) -> list[str]:
    """Confirm delivery; the ids newly recorded (the ack)."""
    frame = await ws.request("message.delivered", {"message_ids": list(ids)})
    assert frame["type"] == "ack", frame
    return frame["data"]["message_ids"]


async def _delivered_at(api: Api, message_id: str, asker: User, member: User) -> str | None:
    r = await api.get(f"/messages/{message_id}/receipts", asker)
    assert r.status == 200, r.body
    [receipt] = [rc for rc in r.body["receipts"] if rc["user_id"] == member.id]
    return receipt["delivered_at"]


async def test_the_pointer_is_the_newest_confirmed_and_never_moves_back(api: Api) -> None:
    alice, bob, carol = await api.register(), await api.register(), await api.register()
    room = await api.group(alice, bob, carol)
    m1, m2, m3, m4 = [(await api.send(alice, room, f"m{i}"))["id"] for i in range(1, 5)]
    members = await _members(api, room, alice)
    assert set(members) == {alice.id, bob.id, carol.id}
    for member in members.values():
        assert _pointer(member) == (None, None)
    bob_ws = await api.ws(bob)

    # A confirmation out of order (m3 before m1, m2): the pointer goes to m3 and covers m1,
    # which the receipts of m1 say as well (at the pointer's time).
    assert await _confirm(bob_ws, m3) == [m3]
    moved = (await _members(api, room, alice))[bob.id]
    at = moved["last_delivered_at"]
    assert _pointer(moved) == (m3, at) and at is not None
    assert await _delivered_at(api, m1, alice, bob) == at
    assert await _delivered_at(api, m4, alice, bob) is None

    # Older confirmations are recorded (and told) but leave the pointer where it is.
    assert await _confirm(bob_ws, m1, m2) == [m1, m2]
    assert _pointer((await _members(api, room, alice))[bob.id]) == (m3, at)
    assert await _delivered_at(api, m1, alice, bob) == at  # the earliest time stands

    # A batch in any order moves it to its newest message; nobody else's pointer moves.
    assert await _confirm(bob_ws, m4, m2) == [m4]
    members = await _members(api, room, carol)  # every member sees the pointers
    assert members[bob.id]["last_delivered_message_id"] == m4
    assert members[bob.id]["last_delivered_at"] >= at  # ISO-8601 UTC strings sort by time
    assert _pointer(members[carol.id]) == (None, None)
    assert _pointer(members[alice.id]) == (None, None)
    # The same pointers in the member list of each member's view, the read ones untouched.
    assert members[bob.id]["last_read_message_id"] is None
    assert members == await _members(api, room, bob)


async def test_reading_implies_delivery(api: Api) -> None:
    alice, carol = await api.register(), await api.register()
    room = await api.group(alice, carol)
    m1, m2, m3 = [(await api.send(alice, room, f"m{i}"))["id"] for i in range(1, 4)]
    carol_ws = await api.ws(carol)

    # Carol reads m2 without confirming anything: delivered up to m2, when she read it.
    r = await api.post(f"/rooms/{room}/read", {"message_id": m2}, carol)
    assert r.status == 200, r.body
    member = (await _members(api, room, alice))[carol.id]
    assert member["last_read_message_id"] == m2
    assert _pointer(member) == (m2, member["last_read_at"])

    # Confirming an older message changes nothing; a newer one moves the delivered pointer
    # past the read one.
    await _confirm(carol_ws, m1)
    assert (await _members(api, room, alice))[carol.id] == member
    await _confirm(carol_ws, m3)
    member = (await _members(api, room, alice))[carol.id]
    assert member["last_read_message_id"] == m2
    assert member["last_delivered_message_id"] == m3
    assert member["last_delivered_at"] >= member["last_read_at"]
    assert await _delivered_at(api, m3, alice, carol) == member["last_delivered_at"]


async def test_ignored_confirmations_move_no_pointer(api: Api) -> None:
    """Own messages, deleted ones and other rooms' do not count: a pointer only moves to a
    message its member could confirm, in that message's own room."""
    alice, bob, eve = await api.register(), await api.register(), await api.register()
    room = await api.group(alice, bob)
    elsewhere = await api.group(alice, eve)
    first = (await api.send(alice, room, "first"))["id"]
    own = (await api.send(bob, room, "bob's own"))["id"]
    gone = (await api.send(alice, room, "deleted"))["id"]
    assert (await api.delete(f"/messages/{gone}", alice)).status == 204
    secret = (await api.send(alice, elsewhere, "not for bob"))["id"]
    bob_ws, eve_ws = await api.ws(bob), await api.ws(eve)

    assert await _confirm(bob_ws, own, gone, secret) == []
    assert _pointer((await _members(api, room, alice))[bob.id]) == (None, None)
    assert _pointer((await _members(api, elsewhere, alice))[eve.id]) == (None, None)
    assert bob.id not in await _members(api, elsewhere, alice)

    # A non-member confirming moves nothing either, and cannot see the pointers.
    assert await _confirm(eve_ws, first) == []
    members = await _members(api, room, alice)
    assert set(members) == {alice.id, bob.id}
    assert all(_pointer(m) == (None, None) for m in members.values())
    r = await api.get(f"/rooms/{room}", eve)
    assert r.status == 403 and r.error_code == "not_a_member"

    # One batch across rooms moves each room's pointer to its own newest message.
    third = await api.group(alice, bob, eve)
    other = (await api.send(alice, third, "in the third room"))["id"]
    assert await _confirm(bob_ws, other, first) == sorted([other, first])
    assert (await _members(api, room, alice))[bob.id]["last_delivered_message_id"] == first
    assert (await _members(api, third, alice))[bob.id]["last_delivered_message_id"] == other


async def test_a_member_who_comes_back_starts_at_the_newest_message(api: Api) -> None:
    """Not at the pointer of before: at the room's newest message, caught up (docs/api.md,
    "Moderation")."""
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    mid = (await api.send(alice, room, "before leaving"))["id"]
    bob_ws = await api.ws(bob)
    await _confirm(bob_ws, mid)
    assert (await _members(api, room, alice))[bob.id]["last_delivered_message_id"] == mid
    assert (await api.delete(f"/rooms/{room}/members/{bob.id}", bob)).status == 204
    # Gone: his confirmations count for nothing, his pointer is not shown.
    assert await _confirm(bob_ws, mid) == []
    assert bob.id not in await _members(api, room, alice)
    newest = (await api.send(alice, room, "while bob was away"))["id"]
    r = await api.post(f"/rooms/{room}/members", {"user_ids": [bob.id]}, alice)
    assert r.status == 200, r.body
    back = (await _members(api, room, alice))[bob.id]
    assert back["last_read_message_id"] == newest and _pointer(back)[0] == newest


def _count_store_calls(server: Server, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """`repo.method` -> calls, for the repositories the room view and confirmations use."""
    calls: Counter[str] = Counter()
    assert server.store is not None
    for repo_name in ("memberships", "deliveries", "rooms", "messages"):
        repo = getattr(server.store, repo_name)
        for name in dir(repo):
            method = getattr(repo, name)
            if name.startswith("_") or not inspect.iscoroutinefunction(method):
                continue

            def counted(
                method: Callable[..., Awaitable[Any]], key: str
            ) -> Callable[..., Awaitable[Any]]:
                async def call(*args: Any, **kwargs: Any) -> Any:
                    calls[key] += 1
                    return await method(*args, **kwargs)

                return call

            monkeypatch.setattr(repo, name, counted(method, f"{repo_name}.{name}"))
    return calls


async def test_store_calls_do_not_grow_with_members_or_messages(
    api: Api, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The room view reads every member's pointers with the memberships (no query per member),
    and a batch of confirmations is one pointer update for all its rooms."""
    alice = await api.register()
    people = [await api.register() for _ in range(12)]
    small = await api.group(alice, people[0])
    large = await api.group(alice, *people)
    rooms = (small, large)
    sent = {
        room: [(await api.send(alice, room, f"m{i}"))["id"] for i in range(3)] for room in rooms
    }
    reader = await api.ws(people[0])
    await _members(api, small, alice)  # the member cache is warm for both, as after any use
    await _members(api, large, alice)

    calls = _count_store_calls(server, monkeypatch)
    views = {}
    for room in rooms:
        calls.clear()
        await _members(api, room, alice)
        views[room] = dict(calls)
    assert views[small] == views[large], views
    assert views[large].get("memberships.of_room") == 1, views
    assert not any(k.startswith("deliveries.") for k in views[large]), views

    calls.clear()
    await _confirm(reader, *sent[small], *sent[large])
    assert calls["memberships.advance_delivered"] == 1, calls
    assert calls["deliveries.record"] == 1, calls
    for room in rooms:
        pointer = (await _members(api, room, alice))[people[0].id]["last_delivered_message_id"]
        assert pointer == sent[room][-1]


async def test_who_joined_after_a_message_has_no_receipt_for_it(api: Api) -> None:
    """A member added later starts caught up (read pointer at the newest message), but never
    received what was sent before: the receipts of those messages leave them out, and the room
    view says since when they are a member so clients do the same."""
    alice, bob, carol = await api.register(), await api.register(), await api.register()
    room = await api.group(alice, bob)
    before = (await api.send(alice, room, "before carol"))["id"]
    r = await api.post(f"/rooms/{room}/members", {"user_ids": [carol.id]}, alice)
    assert r.status == 200, r.body
    after = (await api.send(alice, room, "after carol"))["id"]

    async def receipts_of(message_id: str) -> set[str]:
        r = await api.get(f"/messages/{message_id}/receipts", alice)
        assert r.status == 200, r.body
        return {rc["user_id"] for rc in r.body["receipts"]}

    assert await receipts_of(before) == {bob.id}
    assert await receipts_of(after) == {bob.id, carol.id}
    members = await _members(api, room, alice)
    assert members[carol.id]["joined_at"] > members[bob.id]["joined_at"]
