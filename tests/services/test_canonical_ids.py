"""Services act on an id in its one form (24 lower-case hex digits) whatever case it arrives
in, without relying on the REST handlers' path rewrite: called directly here, upper case."""

from __future__ import annotations

import pytest

from fastsock.app import Server
from fastsock.errors import InvalidRequest
from fastsock.services import Services
from tests.handlers.test_uploads import upload
from tests.support import Api


def _services(server: Server) -> Services:
    assert server.ctx is not None
    return server.ctx.services


async def test_a_member_leaves_with_upper_case_ids(server: Server, api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    bob_ws = await api.ws(bob)
    # Bob is no admin: leaving is allowed only because the target is himself.
    await _services(server).rooms.remove_member(bob.id, room.upper(), bob.id.upper())
    removed = await bob_ws.expect("room.member_removed")  # he hears it, under his own id
    assert removed["user_id"] == bob.id
    members = (await api.get(f"/rooms/{room}", alice)).body["members"]
    assert [m["user_id"] for m in members] == [alice.id]


async def test_room_reads_and_changes_with_upper_case_ids(server: Server, api: Api) -> None:
    alice, bob, carol = await api.register(), await api.register(), await api.register()
    rooms = _services(server).rooms
    room = await api.group(alice, bob)
    got = await rooms.get(alice.id, room.upper())
    assert got["id"] == room and {m["user_id"] for m in got["members"]} == {alice.id, bob.id}
    updated = await rooms.update(alice.id, room.upper(), {"name": "renamed"})
    assert updated["name"] == "renamed"
    added = await rooms.add_members(alice.id, room.upper(), {"user_ids": [carol.id.upper()]})
    assert carol.id in added["member_ids"]
    public = await api.group(alice, private=False)
    joined = await rooms.join(bob.id, public.upper())
    assert joined["id"] == public and bob.id in joined["member_ids"]


async def test_users_and_uploads_by_upper_case_ids(server: Server, api: Api) -> None:
    alice = await api.register()
    services = _services(server)
    assert (await services.accounts.get(alice.id.upper()))["id"] == alice.id
    r = await upload(api, alice, b"a note\n", "text/plain", "note.txt")
    assert r.status == 201, r.body
    readable = await services.uploads.readable(alice.id, r.body["id"].upper())
    assert str(readable["_id"]) == r.body["id"]


@pytest.mark.parametrize("bad", ["", "0" * 23, "g" * 24, 24])
async def test_a_non_id_is_still_refused(server: Server, bad: object) -> None:
    with pytest.raises(InvalidRequest):
        await _services(server).rooms.join("0" * 24, bad)


async def test_history_and_call_timeline_by_upper_case_room_id(server: Server, api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    sent = await api.send(alice, room, "hello")
    services = _services(server)
    for query in ({}, {"changed_after": "0"}):
        page = await services.messages.history(bob.id, room.upper(), query)
        assert [m["id"] for m in page["messages"]] == [sent["id"]]
    dm = (await api.post("/rooms/direct", {"user_id": bob.id}, alice)).body["id"]
    caller = await api.ws(alice)
    await caller.send("call.invite", {"room_id": dm, "media": "audio"})
    await caller.expect("call.unavailable")  # Bob is offline: a missed call is recorded
    timeline = await services.calls.timeline(bob.id, dm.upper(), {})
    assert [c["room_id"] for c in timeline["calls"]] == [dm]
