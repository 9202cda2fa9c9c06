"""Live profiles: `PATCH /users/me` is announced as `user.updated {user}` (the public view) to
everyone who shares a room with the user and to the user's own sessions, once each, and to no
one else.

Absence is checked without waiting for silence: after the change, each observer makes a change
of their own (a fence) and waits for its own `user.updated`. A session's events arrive in the
order they were published (in cluster mode, a node's bus messages too), so what the observer
got of the change has arrived by then."""

from __future__ import annotations

import uuid
from typing import Any

from bson import ObjectId

from fastsock.app import Server
from tests.handlers.test_auth import USER_KEYS as PUBLIC_FIELDS
from tests.handlers.test_uploads import image_bytes, upload
from tests.realtime.test_replay import until_detached
from tests.support import Api, Socket, User


async def fence(api: Api, user: User, *sockets: Socket) -> None:
    """The user sets a fresh status through `api` (in cluster mode: the node the change under
    test went through); each of their `sockets` waits for that `user.updated`."""
    token = f"fence {uuid.uuid4().hex[:8]}"
    r = await api.patch("/users/me", {"status_message": token}, user)
    assert r.status == 200, r.body
    for ws in sockets:
        await ws.expect("user.updated", lambda f: f["data"]["user"]["status_message"] == token)


def updates_of(ws: Socket, user: User) -> list[dict[str, Any]]:
    """The views of `user` in the `user.updated` frames the socket received (and no `expect`
    took)."""
    return [
        f["data"]["user"]
        for f in ws.frames
        if f["type"] == "user.updated" and f["data"]["user"]["id"] == user.id
    ]


async def test_a_change_reaches_everyone_sharing_a_room_and_own_sessions_once(api: Api) -> None:
    alice, bob, carol, dave, erin = [await api.register() for _ in range(5)]
    first = await api.group(alice, bob, erin)
    await api.group(alice, bob)  # bob shares two rooms with alice: still told once
    r = await api.post("/rooms/direct", {"user_id": carol.id}, alice)
    assert r.status == 201, r.body
    assert (await api.delete(f"/rooms/{first}/members/{erin.id}", alice)).status == 204
    # dave never shared a room with alice; erin no longer does.
    here, other_tab = await api.ws(alice), await api.ws(alice)
    observers = {u.id: await api.ws(u) for u in (bob, carol, dave, erin)}

    r = await api.patch(
        "/users/me", {"display_name": "Alice Live", "status_message": "on a train"}, alice
    )
    assert r.status == 200, r.body
    changed = r.body
    assert changed["display_name"] == "Alice Live" and changed["status_message"] == "on a train"
    assert changed == (await api.get(f"/users/{alice.id}", dave)).body

    for user in (bob, carol, dave, erin):
        await fence(api, user, observers[user.id])
    await fence(api, alice, here, other_tab)
    for ws in (here, other_tab, observers[bob.id], observers[carol.id]):
        assert updates_of(ws, alice) == [changed]  # the public view, once
        assert set(changed) == PUBLIC_FIELDS  # nothing private (no password hash, upload id)
    assert updates_of(observers[dave.id], alice) == []
    assert updates_of(observers[erin.id], alice) == []


async def test_an_avatar_change_is_announced_with_its_url(api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    await api.group(alice, bob)
    alice_ws = await api.ws(alice)
    r = await upload(api, bob, image_bytes("PNG"), "image/png", "me.png")
    assert r.status == 201, r.body
    picture = r.body
    r = await api.patch("/users/me", {"avatar_upload_id": picture["id"]}, bob)
    assert r.status == 200, r.body
    seen = await alice_ws.expect("user.updated", lambda f: f["data"]["user"]["id"] == bob.id)
    assert seen == {"user": r.body}
    assert seen["user"]["avatar_url"] == picture["thumbnail_url"]
    assert set(seen["user"]) == PUBLIC_FIELDS


async def test_a_refused_change_announces_nothing(api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    await api.group(alice, bob)
    bob_ws = await api.ws(bob)
    for body in ({}, {"display_name": "x" * 65}, {"status_message": 5}, {"colour": "red"}):
        r = await api.patch("/users/me", body, alice)
        assert r.status == 400, (body, r.body)
    r = await api.patch("/users/me", {"avatar_upload_id": str(ObjectId())}, alice)
    assert (r.status, r.error_code) == (403, "forbidden")
    await fence(api, bob, bob_ws)
    assert updates_of(bob_ws, alice) == []


async def test_a_resumed_session_gets_the_changes_it_missed(server: Server, api: Api) -> None:
    """`user.updated` is kept for a resume like any event: a client back from a short outage
    learns of the change without refetching anyone."""
    alice, bob = await api.register(), await api.register()
    await api.group(alice, bob)
    bob_ws = await api.ws(bob)
    await fence(api, bob, bob_ws)
    last_seq = bob_ws.seqs[-1]
    await until_detached(server, bob_ws)
    r = await api.patch("/users/me", {"display_name": "Alice Away"}, alice)
    assert r.status == 200, r.body
    assert bob_ws.ready is not None
    resumed = await api.ws(bob, resume={"session": bob_ws.ready["session"], "last_seq": last_seq})
    assert resumed.ready is not None and resumed.ready["resume"] == "ok"
    update = await resumed.expect("user.updated")
    assert update["user"]["id"] == alice.id and update["user"]["display_name"] == "Alice Away"
    resumed.close()
