"""Workers coming and going under a live group call, with real processes: FastSock, `python -m
sfu` workers and aiortc participants admitted by FastSock (tests/sfu/members.py). Worker choice
and room affinity, a worker killed with SIGKILL (its call moves and media flows again), a
SIGTERM drain, the only worker dying (the call ends), and a worker restarted at the same URL
(the health probe tells it from the dead one). Figures are printed (`-s`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fastsock.app import Server
from tests.conftest import SFU_SECRET
from tests.realtime.fake_workers import until
from tests.sfu.conftest import SFU_SECRET as STUB_SECRET
from tests.sfu.conftest import StubControl
from tests.sfu.members import WAIT_S, Member, control_url, group_server, receiving
from tests.sfu.workers import SfuWorker
from tests.support import Api

pytestmark = [pytest.mark.once, pytest.mark.usefixtures("client_ice")]

# Heartbeats every 0.5 s; a silent worker is lost after 5 s (a worker starved of CPU on a loaded
# machine is not taken for a dead one).
FAST = {"sfu_heartbeat_s": 0.5, "sfu_missed_heartbeats": 10}


class Stage:
    """What a test started (workers, members), stopped at its end whatever happened."""

    def __init__(self, srv: Server, api: Api, stack: contextlib.AsyncExitStack) -> None:
        self.srv, self.api, self.stack = srv, api, stack

    async def workers(self, *capacities: int) -> list[SfuWorker]:
        """Workers started side by side (registered when this returns)."""
        started = [SfuWorker(control_url(self.srv), SFU_SECRET, capacity=c) for c in capacities]
        for worker in started:
            self.stack.push_async_callback(worker.stop)
        await asyncio.gather(*(worker.start() for worker in started))
        return started

    async def members(self, count: int) -> list[Member]:
        made = [await Member.sign_up(self.api) for _ in range(count)]
        for member in made:
            self.stack.push_async_callback(member.close)
        return made

    async def room(self, *members: Member) -> str:
        return await self.api.group(members[0].user, *(m.user for m in members[1:]))


@contextlib.asynccontextmanager
async def stage(tmp_path: Path, **settings: Any) -> AsyncIterator[Stage]:
    async with group_server(tmp_path, **settings) as (srv, api), contextlib.AsyncExitStack() as st:
        yield Stage(srv, api, st)


def json_log(worker: SfuWorker) -> list[dict[str, Any]]:
    """The worker's log entries: the JSON lines (stdout's one line says where it listens)."""
    return [json.loads(line) for line in worker.log().splitlines() if line.startswith("{")]


def first_frames_after(members: list[Member], moment: float) -> dict[str, float]:
    """Per member: seconds from `moment` to the first video frame its current peer decoded."""
    seen = {}
    for member in members:
        assert member.peer is not None
        firsts = [frames[0].at for frames in member.peer.recorder.video_by_user.values()]
        seen[member.user.username] = round(min(firsts) - moment, 3)
    return seen


async def test_new_calls_go_to_the_least_loaded_worker_and_joins_stay_with_their_call(
    tmp_path: Path,
) -> None:
    async with stage(tmp_path, **FAST) as s:
        workers = await s.workers(4, 4)
        alice, bob, carol, dave = await s.members(4)
        room, other_room = await s.room(alice, bob, dave), await s.room(carol)
        await alice.join(room)
        host = next(w for w in workers if w.url == alice.sfu["worker_url"])
        [other] = [w for w in workers if w is not host]

        async def host_reports_alice() -> bool:
            doc = await s.srv.store.sfu_workers.get(host.id)
            return doc is not None and doc["peers"] == 1

        # Once its heartbeat counts her (not only the admission), the host is the busier one.
        await until(host_reports_alice, "the host's heartbeat counting alice")
        await carol.join(other_room)
        assert carol.sfu["worker_url"] == other.url
        # The room's call stays where it is, however busy that worker is by now.
        for member in (bob, dave):
            await member.join(room)
            assert member.sfu["worker_url"] == host.url
            assert member.sfu["call_id"] == alice.sfu["call_id"]


async def test_a_new_worker_reports_no_cpu_for_its_start_up(control: StubControl) -> None:
    """Its first heartbeat covers no interval: the start-up's work would make it look busy
    to the choice above until its next one."""
    async with SfuWorker(control.url, STUB_SECRET) as worker:
        await control.wait_for(lambda: len(control.heartbeats.get(worker.id, [])) >= 2)
        first, second = control.heartbeats[worker.id][:2]
        assert first["cpu"] == 0.0 and 0 <= second["cpu"] <= 64, (first, second)


async def test_a_killed_worker_s_call_moves_and_media_flows_again(tmp_path: Path) -> None:
    async with stage(tmp_path, **FAST) as s:
        workers = await s.workers(8, 8)
        members = await s.members(3)
        room = await s.room(*members)
        for member in members:
            await member.join(room)
        call_id = members[0].sfu["call_id"]
        host = next(w for w in workers if w.url == members[0].sfu["worker_url"])
        [spare] = [w for w in workers if w is not host]
        await receiving(members)

        killed = time.monotonic()
        host.kill()
        assert await host.wait_exit() == -9
        # As a browser whose worker socket dropped: FastSock's probe finds nobody there, and
        # everyone in the call is sent to the other worker (without waiting for heartbeats).
        first = members[0]
        assert (await first.ws.request("call.sfu_lost", {"call_id": call_id}))["type"] == "ack"
        moves = await asyncio.gather(*(m.follow_move(call_id) for m in members))
        moved = time.monotonic()
        assert {m["worker_url"] for m in moves} == {spare.url}
        assert {m["room_id"] for m in moves} == {room}
        await receiving(members)
        view = (await s.api.get(f"/rooms/{room}", members[0].user)).body["active_call"]
        assert view["id"] == call_id and sorted(view["present_ids"]) == sorted(
            m.id for m in members
        )
        print(
            f"kill -9, call.sfu_lost: everyone rejoined at {moved - killed:.3f}s; first frame "
            f"again (per participant) {first_frames_after(members, killed)}s after the kill"
        )


async def test_a_draining_worker_takes_no_new_call_moves_its_own_and_exits_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with stage(tmp_path, **FAST) as s:
        alice, bob, carol, dave = await s.members(4)
        room, carol_room = await s.room(alice, bob), await s.room(carol)
        dave_room = await s.room(dave)
        # The spare hosts a call already and is small: left to itself, FastSock would give a
        # new call to the other worker, which is emptier.
        [spare] = await s.workers(4)
        await carol.join(carol_room)
        [host] = await s.workers(16)
        await alice.join(room)
        await bob.join(room)
        assert {alice.sfu["worker_url"], bob.sfu["worker_url"]} == {host.url}
        call_id = alice.sfu["call_id"]
        tokens = [alice.sfu["token"], bob.sfu["token"]]
        await receiving([alice, bob])
        old_peers = [m.peer for m in (alice, bob) if m.peer]

        # The host freezes as it reports draining (before it gets FastSock's answer), so the
        # test sees FastSock's side of a drain for as long as it needs.
        workers = s.srv.ctx.services.calls.group.workers
        heartbeat, frozen = workers.heartbeat, asyncio.Event()

        async def freeze_once_draining(worker_id: str, data: dict[str, Any]) -> dict[str, Any]:
            if worker_id == host.id and data.get("draining") and not frozen.is_set():
                host.pause()
                frozen.set()
            return await heartbeat(worker_id, data)

        monkeypatch.setattr(workers, "heartbeat", freeze_once_draining)
        drained = time.monotonic()
        host.terminate()
        moves = [
            await m.ws.expect(
                "call.sfu_moved", lambda f: f["data"]["call_id"] == call_id, timeout=WAIT_S
            )
            for m in (alice, bob)
        ]
        moved_after = time.monotonic() - drained
        assert {m["worker_url"] for m in moves} == {spare.url}
        entry = await s.srv.store.sfu_workers.get(host.id)
        assert entry is not None and entry["draining"] is True
        # A new call goes elsewhere, however idle the draining worker is.
        reply = await dave.ask(dave_room)
        assert reply["type"] == "call.sfu" and reply["data"]["worker_url"] == spare.url, reply
        host.resume()
        # FastSock's answer to that heartbeat ended the call there (4403), rather than the
        # worker closing everything as it stopped (1001).
        assert [await p.wait_closed() for p in old_peers] == [4403, 4403]
        rejoined = time.monotonic()
        for member, moved in zip((alice, bob), moves, strict=True):
            assert member.peer is not None
            await member.peer.close()
            await member.connect(moved)
        await receiving([alice, bob])
        print(
            f"SIGTERM drain -> call.sfu_moved at {moved_after:.3f}s; first frame again "
            f"{first_frames_after([alice, bob], rejoined)}s after the rejoin began"
        )
        await dave.connect(reply["data"])
        assert await host.wait_exit() == 0

        async def deregistered() -> bool:
            return await s.srv.store.sfu_workers.get(host.id) is None

        await until(deregistered, "the drained worker's registry entry removed")
        # Its log: FastSock's format, with what happened and never a token.
        entries = json_log(host)
        assert all({"ts", "level", "event", "logger"} <= e.keys() for e in entries), entries
        events = {e["event"] for e in entries}
        assert {"sfu_registered", "sfu_peer_joined", "sfu_draining", "sfu_stopped"} <= events
        assert not any(token in host.log() for token in tokens)
        metrics = (await s.api.get("/metrics")).body
        assert 'fastsock_sfu_moves_total{reason="drain"} 1.0' in metrics


async def test_the_only_worker_dying_ends_its_call(tmp_path: Path) -> None:
    async with stage(tmp_path, **FAST) as s:
        [worker] = await s.workers(8)
        alice, bob, carol = await s.members(3)
        room = await s.room(alice, bob, carol)
        await alice.join(room)
        await bob.join(room)
        call_id = alice.sfu["call_id"]
        await receiving([alice, bob])
        killed = time.monotonic()
        worker.kill()
        # Nobody reports it: FastSock finds out from the missed heartbeats.
        ended = await carol.ws.expect("call.ended", timeout=WAIT_S)
        print(f"kill -9 of the only worker -> call.ended at {time.monotonic() - killed:.3f}s")
        assert (ended["call_id"], ended["reason"]) == (call_id, "worker_lost")
        assert ended["participants"] == [alice.id, bob.id]
        assert (await s.api.get(f"/rooms/{room}", carol.user)).body["active_call"] is None
        calls = (await s.api.get(f"/rooms/{room}/calls", carol.user)).body["calls"]
        assert [(c["id"], c["state"], c["end_reason"]) for c in calls] == [
            (call_id, "ended", "worker_lost")
        ]


async def test_a_worker_restarted_at_the_same_url_is_not_taken_for_the_dead_one(
    tmp_path: Path,
) -> None:
    # Heartbeats every 5 s: only the probe that follows `call.sfu_lost` acts within the test.
    async with stage(tmp_path, sfu_heartbeat_s=5.0) as s:
        [dead] = await s.workers(8)
        alice, bob = await s.members(2)
        room = await s.room(alice, bob)
        await alice.join(room)
        await bob.join(room)
        call_id = alice.sfu["call_id"]
        await receiving([alice, bob])
        dead.kill()
        await dead.wait_exit()
        # A new worker process (a new id) answers at the same address, health URL included.
        reborn = SfuWorker(control_url(s.srv), SFU_SECRET)
        reborn.port, reborn.url, reborn.health_url = dead.port, dead.url, dead.health_url
        reborn.env |= {k: dead.env[k] for k in ("SFU_PORT", "SFU_PUBLIC_URL")}
        s.stack.push_async_callback(reborn.stop)
        await reborn.start()
        assert reborn.id != dead.id
        # What a browser does when its worker socket drops: tell FastSock.
        reported = time.monotonic()
        reply = await alice.ws.request("call.sfu_lost", {"call_id": call_id})
        assert reply["type"] == "ack", reply
        # The probe found another worker there: the call moved (to the new one, the only one
        # left), with tokens it takes.
        for member in (alice, bob):
            moved = await member.follow_move(call_id)
            assert moved["worker_url"] == reborn.url
        await receiving([alice, bob])
        print(f"call.sfu_lost -> first frame again: {first_frames_after([alice, bob], reported)}s")
        assert (await reborn.health())["peers"] == 2
