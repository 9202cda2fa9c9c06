"""Group calls end to end with real processes: a FastSock server, a `python -m sfu` worker
registered with it, and aiortc participants admitted by FastSock (`call.join` -> `call.sfu`)
that take their token to the worker (tests/sfu/members.py). Media, the room's view of the
call, a late joiner's first keyframe, leave and rejoin, the call's end and records, refusals.

Small video (160x120 at 15 fps, VP8 made by the test with keyframes only on request) and at
most four participants: the machine's two cores are shared. Figures are printed (`-s`)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fastsock.app import Server
from tests.conftest import SFU_SECRET
from tests.realtime.fake_workers import until
from tests.sfu.client import GroupPeer, WorkerClosed
from tests.sfu.members import WAIT_S, Member, control_url, group_server, receiving
from tests.sfu.workers import SfuWorker
from tests.support import Api

pytestmark = [pytest.mark.once, pytest.mark.usefixtures("client_ice")]

SignUp = Callable[[int], Awaitable[list[Member]]]


@dataclass
class World:
    srv: Server
    api: Api
    worker: SfuWorker


@pytest.fixture(scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    """One FastSock and one worker for the module's tests (each in rooms of its own)."""
    async with (
        group_server(tmp_path_factory.mktemp("group-calls")) as (srv, api),
        SfuWorker(control_url(srv), SFU_SECRET) as worker,
    ):
        yield World(srv, api, worker)


async def _sign_up(api: Api, made: list[Member], count: int) -> list[Member]:
    new = [await Member.sign_up(api) for _ in range(count)]
    made.extend(new)
    return new


@pytest.fixture
async def sign_up(world: World) -> AsyncIterator[SignUp]:
    """`await sign_up(n)`: n new users with a FastSock socket each (closed after the test)."""
    made: list[Member] = []
    yield lambda count: _sign_up(world.api, made, count)
    for member in made:
        await member.close()


async def active_call(api: Api, member: Member, room: str) -> dict[str, Any] | None:
    r = await api.get(f"/rooms/{room}", member.user)
    assert r.status == 200, r.body
    return r.body["active_call"]


async def test_members_admitted_by_fastsock_receive_each_other_and_the_room_sees_the_call(
    world: World, sign_up: SignUp
) -> None:
    alice, bob, carol, eve = await sign_up(4)  # eve is a member who stays out of the call
    room = await world.api.group(alice.user, bob.user, carol.user, eve.user)
    await alice.join(room)
    started = await eve.ws.expect("call.started", timeout=WAIT_S)
    call = started["call"]
    assert (call["kind"], call["caller_id"], call["room_id"]) == ("group", alice.id, room)
    await bob.join(room)
    await carol.join(room)
    for member in (alice, bob, carol):
        assert member.sfu["call_id"] == call["id"], member.sfu
        assert member.sfu["worker_url"] == world.worker.url
        assert member.peer is not None and member.peer.joined["call_id"] == call["id"]
    # The room hears each arrival as the worker reports it, in order.
    arrivals = [await eve.ws.expect("call.participant_joined", timeout=WAIT_S) for _ in range(3)]
    assert [a["user_id"] for a in arrivals] == [alice.id, bob.id, carol.id]
    assert arrivals[-1]["present_ids"] == [alice.id, bob.id, carol.id]
    view = await active_call(world.api, eve, room)
    assert view is not None
    assert (view["id"], view["present_ids"]) == (call["id"], [alice.id, bob.id, carol.id])

    # Everyone decodes everyone else's video (ids in order) and receives their audio.
    await receiving([alice, bob, carol])
    await eve.ws.assert_none("call.started", quiet=0.2)  # once per call, however many join


async def test_a_late_joiner_decodes_from_the_keyframe_its_join_asked_for(
    world: World, sign_up: SignUp
) -> None:
    alice, bob, carol = await sign_up(3)
    room = await world.api.group(alice.user, bob.user, carol.user)
    await alice.join(room)
    await bob.join(room)
    await receiving([alice, bob], frames=15)  # their keyframes are a second old by now
    publishers = {m.id: m.peer.video for m in (alice, bob) if m.peer and m.peer.video}
    requests = {user: track.requests for user, track in publishers.items()}
    asked = time.monotonic()
    late = await carol.join(room)
    joined = time.monotonic()
    await receiving([alice, bob, carol])
    for user, track in publishers.items():
        # The publishers make keyframes only when asked: the first frame carol decoded is a
        # keyframe made after her join, which asked for it (PLI forwarded to the publisher).
        first = late.recorder.video_by_user[user][0]
        assert first.frame_id in track.keyframes_after(asked), (first, track.keyframes)
        assert track.requests > requests[user], (track.requests, requests[user])
        print(
            f"late join: first frame of {user[:6]} decoded {first.at - asked:.3f}s after "
            f"call.join, {first.at - joined:.3f}s after the worker's `joined`"
        )


async def test_leave_and_rejoin_renegotiate_and_the_last_one_out_ends_the_call(
    world: World, sign_up: SignUp
) -> None:
    alice, bob, carol = await sign_up(3)
    room = await world.api.group(alice.user, bob.user, carol.user)
    for member in (alice, bob, carol):
        await member.join(room)
    call_id = alice.sfu["call_id"]
    await receiving([alice, bob, carol])

    # Bob leaves: the others get an offer without his tracks, the room hears it, the rest
    # still see each other.
    offers = {m.id: len(m.peer.offers) for m in (alice, carol) if m.peer}
    assert bob.peer is not None
    await bob.peer.leave()
    assert bob.peer.close_code == 1000
    for member in (alice, carol):
        peer = member.peer
        assert peer is not None
        await peer.wait_event("peer.left", user_id=bob.id)
        await peer.wait_for(lambda p=peer: len(p.offers) > offers[p.user_id])
        await peer.wait_for(lambda p=peer: bob.id not in p.sent_users())
    left = await carol.ws.expect(
        "call.participant_left", lambda f: f["data"]["user_id"] == bob.id, timeout=WAIT_S
    )
    assert left["present_ids"] == [alice.id, carol.id]
    await receiving([alice, carol])

    # He comes back through FastSock: a new offer carries his tracks to the others again.
    await bob.join(room)
    assert bob.sfu["call_id"] == call_id
    for member in (alice, carol):
        peer = member.peer
        assert peer is not None
        await peer.wait_for(lambda p=peer: bob.id in p.sent_users())
    await receiving([alice, bob, carol])

    # Everyone leaves: the call ends at once (nobody left on purpose waits for a return).
    for member in (alice, bob, carol):
        assert member.peer is not None
        await member.peer.leave()
    ended = await alice.ws.expect("call.ended", timeout=WAIT_S)
    assert (ended["call_id"], ended["room_id"], ended["reason"]) == (call_id, room, "empty")
    assert ended["participants"] == [alice.id, bob.id, carol.id]  # join order, once each
    assert isinstance(ended["duration_s"], int) and ended["duration_s"] >= 0
    assert ended["call"]["state"] == "ended"
    assert await active_call(world.api, alice, room) is None
    r = await world.api.get(f"/rooms/{room}/calls", carol.user)
    assert r.status == 200, r.body
    [listed] = [c for c in r.body["calls"] if c["id"] == call_id]
    assert (listed["kind"], listed["end_reason"]) == ("group", "empty")
    assert listed["participant_ids"] == [alice.id, bob.id, carol.id]

    async def timeline_entry() -> bool:
        r = await world.api.get(f"/history/room/{room}", carol.user)
        return any(m["type"] == "call" and m["call"]["id"] == call_id for m in r.body["messages"])

    await until(timeline_entry, "the ended call's timeline entry")


async def test_outsiders_and_replayed_tokens_are_refused(world: World, sign_up: SignUp) -> None:
    alice, bob, mallory = await sign_up(3)
    room = await world.api.group(alice.user, bob.user)
    await alice.join(room)
    await bob.ws.expect("call.participant_joined", timeout=WAIT_S)
    # Not a member: refused by the membership check, and the socket stays open.
    reply = await mallory.ask(room)
    assert (reply["type"], reply["data"]["code"]) == ("error", "not_a_member"), reply
    assert (await mallory.ws.request("ping"))["type"] == "pong"
    # Alice's token again (a copy taken from her session): the worker saw its jti.
    replay = GroupPeer("replay")
    try:
        with pytest.raises(WorkerClosed) as refused:
            await replay.join(alice.sfu["worker_url"], alice.sfu["token"])
        assert refused.value.code == 4409
    finally:
        await replay.close()
    # Nothing changed: alice's connection was not taken over (4410), nobody joined or left.
    assert alice.peer is not None and alice.peer.close_code is None
    await bob.ws.assert_none("call.participant_joined", quiet=0.3)
    await bob.ws.assert_none("call.participant_left", quiet=0.1)
    view = await active_call(world.api, bob, room)
    assert view is not None and view["present_ids"] == [alice.id]


async def test_a_full_call_refuses_the_next_member(tmp_path: Path) -> None:
    async with (
        group_server(tmp_path, call_max_participants=2) as (srv, api),
        SfuWorker(control_url(srv), SFU_SECRET) as worker,
    ):
        members = [await Member.sign_up(api) for _ in range(3)]
        alice, bob, carol = members
        try:
            room = await api.group(alice.user, bob.user, carol.user)
            await alice.join(room)
            await bob.join(room)
            reply = await carol.ask(room)
            assert reply["type"] == "call.unavailable", reply
            assert reply["data"] == {"room_id": room, "reason": "call_full"}
            await receiving([alice, bob])
            assert (await worker.health())["peers"] == 2
        finally:
            for member in members:
                await member.close()


def test_the_worker_logs_without_fastsock_s_services() -> None:
    """sfu/ logs through fastsock.logs (FastSock's JSON lines), which imports nothing else of
    FastSock: a worker loads no services, store drivers or FastSock settings for it."""
    code = "import sys, fastsock.logs; print(sorted(m for m in sys.modules if 'fastsock' in m))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["['fastsock',", "'fastsock.logs']"], run.stdout
