"""Moderation racing other requests (docs/api.md, "Moderation"): a removal, a demotion or a
deactivation that finished while another request waited counts for it. Each race is made
deterministic by holding one side at a known point (an Event) and waiting until the other
side waits behind it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
from tornado.websocket import websocket_connect

from fastsock.app import Server
from fastsock.realtime.hub import Session
from fastsock.services.rooms import Rooms
from tests.handlers.test_auth import assert_error
from tests.handlers.test_moderation import REMOVED
from tests.support import Api, Response, Socket


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait until `condition()` holds, checked every 10 ms, 10 s at most."""
    deadline = asyncio.get_running_loop().time() + 10
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"not within 10 s: {what}"
        await asyncio.sleep(0.01)


@asynccontextmanager
async def asked_for(rooms: Rooms) -> AsyncIterator[list[str]]:
    """The keys of `rooms.change_lock` asked for during the block, in order."""
    lock, asked = rooms.change_lock, []

    class Watched:
        def hold(self, key: str) -> AbstractAsyncContextManager[None]:
            asked.append(key)
            return lock.hold(key)

    rooms.change_lock = Watched()
    try:
        yield asked
    finally:
        rooms.change_lock = lock


async def held_while_queued(
    rooms: Rooms,
    room: str,
    first: Awaitable[Response],
    held: asyncio.Event,
    release: asyncio.Event,
    second: Callable[[], Awaitable[Response]],
) -> tuple[Response, Response]:
    """Start `first` until it is `held` inside the room's history lock, then `second`, let
    `first` go once `second` waits for the lock; both responses."""
    async with asked_for(rooms) as asked:
        a = asyncio.ensure_future(first)
        await until(held.is_set, "the first request holds the room's history lock")
        b = asyncio.ensure_future(second())
        await until(lambda: asked.count(f"history:{room}") == 2, "the second one waits")
        release.set()
        return await a, await b


async def test_a_join_racing_the_removal_that_bans_is_refused(
    server: Server, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The join passed every check before the ban was written; it waited for the lock the
    removal held, and must not bring the banned member back (the ban is read under it)."""
    assert server.ctx is not None
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob, private=False)
    held, release = asyncio.Event(), asyncio.Event()
    add_ban = server.store.bans.add

    async def stalled(*args: Any) -> None:
        held.set()
        await release.wait()
        await add_ban(*args)

    monkeypatch.setattr(server.store.bans, "add", stalled)
    removed, joined = await held_while_queued(
        server.ctx.services.rooms,
        room,
        api.delete(f"/rooms/{room}/members/{bob.id}", alice),
        held,
        release,
        lambda: api.post(f"/rooms/{room}/join", None, bob),
    )
    assert removed.status == 204, removed.body
    assert_error(joined, 403, "forbidden")
    assert joined.body["error"]["message"] == REMOVED
    assert bob.id not in (await api.get(f"/rooms/{room}", alice)).body["member_ids"]


# What bob, an admin about to be demoted, tries: (method, path, body) for the ids (room,
# alice, carol); each needs the admin role.
ADMIN_ACTIONS: dict[str, Callable[[dict[str, str]], tuple[str, str, Any]]] = {
    "remove": lambda i: ("DELETE", f"/rooms/{i['room']}/members/{i['alice']}", None),
    "rename": lambda i: ("PATCH", f"/rooms/{i['room']}", {"name": "bob's now"}),
    "add": lambda i: ("POST", f"/rooms/{i['room']}/members", {"user_ids": [i["carol"]]}),
    "unban": lambda i: ("DELETE", f"/rooms/{i['room']}/bans/{i['carol']}", None),
    "promote": lambda i: ("PATCH", f"/rooms/{i['room']}/members/{i['carol']}", {"role": "admin"}),
}


@pytest.mark.parametrize("action", ["remove", "rename", "add", "unban", "promote"])
async def test_an_admin_action_queued_behind_the_callers_demotion_is_refused(
    server: Server, api: Api, monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    """bob's request passed the role check (the member cache) while alice's demotion of bob
    held the room's history lock; it re-reads bob's role under the lock and is refused."""
    assert server.ctx is not None
    alice, bob, carol = [await api.register() for _ in range(3)]
    room = await api.group(alice, bob, carol)
    r = await api.patch(f"/rooms/{room}/members/{bob.id}", {"role": "admin"}, alice)
    assert r.status == 200, r.body
    assert (await api.delete(f"/rooms/{room}/members/{carol.id}", alice)).status == 204  # banned
    if action == "promote":  # carol back, unbanned
        r = await api.post(f"/rooms/{room}/members", {"user_ids": [carol.id]}, alice)
        assert r.status == 200, r.body
    before = (await api.get(f"/rooms/{room}", alice)).body
    bans_before = (await api.get(f"/rooms/{room}/bans", alice)).body
    held, release = asyncio.Event(), asyncio.Event()
    set_role = server.store.memberships.set_role

    async def stalled(room_id: str, user_id: str, role: str) -> None:
        if user_id == bob.id:
            held.set()
            await release.wait()
        await set_role(room_id, user_id, role)

    monkeypatch.setattr(server.store.memberships, "set_role", stalled)

    method, path, body = ADMIN_ACTIONS[action]({"room": room, "alice": alice.id, "carol": carol.id})
    demoted, refused = await held_while_queued(
        server.ctx.services.rooms,
        room,
        api.patch(f"/rooms/{room}/members/{bob.id}", {"role": "member"}, alice),
        held,
        release,
        lambda: api.request(method, path, body, token=bob.access_token),
    )
    assert demoted.status == 200, demoted.body
    assert_error(refused, 403, "forbidden")
    after = (await api.get(f"/rooms/{room}", alice)).body
    assert (after["name"], after["member_ids"]) == (before["name"], before["member_ids"])
    assert {m["user_id"]: m["role"] for m in after["members"]}[bob.id] == "member"
    assert (await api.get(f"/rooms/{room}/bans", alice)).body == bans_before


@pytest.mark.parametrize("ending", ["deactivate", "logout"])
async def test_requests_queued_on_a_socket_do_not_run_after_its_login_ended(
    server: Server, api: Api, ending: str
) -> None:
    """bob queues sends behind one held at the room's lock; his login ends meanwhile: the
    queued ones are never run (only the one already running may finish)."""
    assert server.ctx is not None
    rooms, hub = server.ctx.services.rooms, server.ctx.hub
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    ws = await api.ws(bob)
    [session] = hub._by_user[bob.id].values()
    queued = 6
    async with rooms.change_lock.hold(room):  # what every send waits for
        for i in range(queued):
            await ws.send("message.send", {"room_id": room, "client_msg_id": f"q{i}", "text": "x"})
        await until(lambda: len(session.inbox) == queued - 1, "the sends queued behind one")
        if ending == "deactivate":
            r = await api.post(f"/admin/users/{bob.id}/deactivate", None, alice)
        else:
            r = await api.post("/auth/logout", {"refresh_token": bob.refresh_token}, bob)
        assert r.status in (200, 204), r.body
    assert await ws.close_code() in (4401, 4403)
    await until(lambda: not session.working, "the socket's worker is done")
    texts = [
        m["text"]
        for m in (await api.get(f"/history/room/{room}", alice)).body["messages"]
        if m["type"] == "text"
    ]
    assert len(texts) <= 1, texts  # at most the send that was running already


async def test_the_detached_sessions_of_a_deactivated_account_are_dropped(
    server: Server, api: Api
) -> None:
    """They would collect the account's events for a resume that can never come."""
    assert server.ctx is not None
    hub = server.ctx.hub
    alice, bob = await api.register(), await api.register()
    await api.group(alice, bob)
    away, here = await api.ws(bob), await api.ws(bob)
    away.close()
    sessions = hub._by_user[bob.id]
    await until(lambda: sum(s.socket is None for s in sessions.values()) == 1, "one detached")
    r = await api.post(f"/admin/users/{bob.id}/deactivate", None, alice)
    assert r.status == 200, r.body
    assert await here.close_code() == 4403
    await until(lambda: bob.id not in hub._by_user, "bob's sessions dropped")
    assert not [s for s in hub._sessions.values() if s.user_id == bob.id]


async def test_a_socket_registered_while_its_account_was_deactivated_is_closed(
    server: Server, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The socket's token was checked, then the hub registered it (cluster mode awaits
    Redis there): the deactivation in between found no socket to close; it is checked
    again once registered."""
    assert server.ctx is not None
    hub = server.ctx.hub
    alice, bob = await api.register(), await api.register()
    held, release = asyncio.Event(), asyncio.Event()
    open_ = hub.open

    async def stalled(user_id: str, socket: Any) -> tuple[Session, bool] | None:
        held.set()
        await release.wait()
        return await open_(user_id, socket)

    monkeypatch.setattr(hub, "open", stalled)
    ws = Socket(await websocket_connect(f"ws://127.0.0.1:{api.port}/ws"))
    await ws.send("auth", {"token": bob.access_token})
    await until(held.is_set, "the hub is registering bob's socket")
    r = await api.post(f"/admin/users/{bob.id}/deactivate", None, alice)
    assert r.status == 200, r.body
    release.set()
    assert await ws.close_code() == 4401
    assert not [f for f in ws.frames if f.get("type") == "ready"]
