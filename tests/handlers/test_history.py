"""History paging: every message exactly once, in order, with `before` and with `after`."""

from __future__ import annotations

import asyncio

import pytest

from tests.support import Api, User


async def _fill(api: Api, user: User, room: str, n: int) -> list[str]:
    ids: list[str] = []
    for start in range(0, n, 25):  # a few concurrent sends at a time, order kept by id
        batch = await asyncio.gather(
            *(api.send(user, room, f"m{i}", cid=f"c{i}") for i in range(start, min(start + 25, n)))
        )
        ids.extend(m["id"] for m in batch)
    return sorted(ids)


async def test_paging_backwards_and_forwards_returns_each_message_once_in_order(api: Api) -> None:
    alice = await api.register()
    room = await api.group(alice)
    ids = await _fill(api, alice, room, 250)

    seen: list[str] = []
    before = None
    while True:
        path = f"/history/room/{room}?limit=100" + (f"&before={before}" if before else "")
        r = await api.get(path, alice)
        assert r.status == 200
        page = [m["id"] for m in r.body["messages"]]
        assert page == sorted(page, reverse=True), "pages are newest-first"
        seen.extend(page)
        if not r.body["has_more"]:
            break
        before = page[-1]
    assert seen == sorted(ids, reverse=True)

    forward: list[str] = []
    after = ids[0]
    while True:
        r = await api.get(f"/history/room/{room}?limit=40&after={after}", alice)
        page = [m["id"] for m in r.body["messages"]]
        assert page == sorted(page, reverse=True)
        forward.extend(reversed(page))
        if not r.body["has_more"]:
            break
        after = page[0]
    assert forward == ids[1:]


async def test_default_limit_and_bounds(api: Api) -> None:
    alice = await api.register()
    room = await api.group(alice)
    ids = await _fill(api, alice, room, 60)
    r = await api.get(f"/history/room/{room}", alice)
    assert len(r.body["messages"]) == 50 and r.body["has_more"] is True
    r = await api.get(f"/history/room/{room}?limit=100", alice)
    assert len(r.body["messages"]) == 60 and r.body["has_more"] is False
    r = await api.get(f"/history/room/{room}?limit=1", alice)
    assert [m["id"] for m in r.body["messages"]] == [ids[-1]]


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=101",
        "limit=abc",
        "limit=-5",
        "before=nothex",
        "after=123",
        "before=zzzzzzzzzzzzzzzzzzzzzzzz",
    ],
)
async def test_invalid_cursors_and_limits_are_refused(api: Api, query: str) -> None:
    alice = await api.register()
    room = await api.group(alice)
    r = await api.get(f"/history/room/{room}?{query}", alice)
    assert r.status == 400
    assert r.error_code == "invalid_request"
    assert r.body["error"]["field"] in ("limit", "before", "after")


async def test_between_before_and_after(api: Api) -> None:
    alice = await api.register()
    room = await api.group(alice)
    ids = await _fill(api, alice, room, 10)
    r = await api.get(f"/history/room/{room}?after={ids[2]}&before={ids[7]}", alice)
    assert [m["id"] for m in r.body["messages"]] == list(reversed(ids[3:7]))
    r = await api.get(f"/history/room/{room}?after={ids[7]}&before={ids[2]}", alice)
    assert r.status == 400


async def test_tombstones_and_edits_appear_in_history(api: Api) -> None:
    alice = await api.register()
    room = await api.group(alice)
    first = await api.send(alice, room, "first")
    second = await api.send(alice, room, "second")
    assert (await api.patch(f"/messages/{first['id']}", {"text": "first!"}, alice)).status == 200
    assert (await api.delete(f"/messages/{second['id']}", alice)).status == 204
    r = await api.get(f"/history/room/{room}", alice)
    by_id = {m["id"]: m for m in r.body["messages"]}
    assert by_id[first["id"]]["text"] == "first!" and by_id[first["id"]]["edited_at"]
    assert by_id[second["id"]]["deleted"] is True and by_id[second["id"]]["text"] == ""
    assert by_id[second["id"]]["version"] > by_id[first["id"]]["version"]
