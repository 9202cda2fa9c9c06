"""The worker process end to end: real `python -m sfu` processes, a stand-in for FastSock's
internal API (tests/sfu/conftest.py), and aiortc participants (tests/sfu/client.py).

Small video (160x120 at 15 fps) and few peers: the machine's two cores are shared."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time

import pytest
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application
from tornado.websocket import websocket_connect

from fastsock.connections import unsent_bytes
from sfu.app import VERSION
from sfu.auth import JoinRefused, JtiCache
from sfu.signaling import FRAMES_BURST, MAX_UNSENT_BYTES, WorkerSocket
from tests.coturn import free_port
from tests.sfu.client import GroupPeer, WorkerClosed
from tests.sfu.conftest import SFU_SECRET, WAIT_S, StubControl
from tests.sfu.media import in_order, wait_until
from tests.sfu.workers import SfuWorker

pytestmark = [pytest.mark.once, pytest.mark.usefixtures("client_ice")]

_calls = itertools.count()


def new_call() -> str:
    """A call id of its own for each test on the shared worker (24 hex, like FastSock's)."""
    return f"{next(_calls):024x}"


async def test_peers_receive_each_others_media_and_a_leave_renegotiates(
    control: StubControl, worker: SfuWorker
) -> None:
    call = new_call()
    alice, bob, carol = peers = [GroupPeer(name) for name in ("alice", "bob", "carol")]
    try:
        await alice.join(worker.url, control.token(worker.id, "alice", call))
        await bob.join(worker.url, control.token(worker.id, "bob", call))
        await alice.wait_video("bob")
        await bob.wait_video("alice")
        # Carol comes later: her first offer carries both others' tracks (two m-lines of each
        # kind at once), and their publishers make keyframes only when asked.
        await carol.join(worker.url, control.token(worker.id, "carol", call))
        assert carol.joined["peers"] == [
            {"user_id": "alice", "audio_muted": False, "video_muted": False},
            {"user_id": "bob", "audio_muted": False, "video_muted": False},
        ]
        for peer in peers:
            for other in peers:
                if other is not peer:
                    await peer.wait_video(other.user_id)
                    await peer.wait_audio(other.user_id)
        for peer in peers:
            assert peer.recorder.decode_errors == 0, peer.describe()
            for other in peers:
                if other is not peer:
                    assert in_order(peer.video_ids(other.user_id)), peer.describe()
        await alice.wait_event("peer.joined", user_id="carol")

        # FastSock heard of each join, and heartbeats list who is in the call.
        await control.wait_for(
            lambda: (
                [e["user_id"] for e in control.events_of(worker.id) if e["call_id"] == call]
                == ["alice", "bob", "carol"]
            )
        )
        await control.wait_for(
            lambda: any(
                c["call_id"] == call and sorted(c["user_ids"]) == ["alice", "bob", "carol"]
                for c in control.last_heartbeat(worker.id).get("calls", [])
            )
        )
        beat = control.last_heartbeat(worker.id)
        # Each of the three is sent the other two's audio and video.
        assert (beat["peers"], beat["tracks"], beat["rooms"]) == (3, 12, 1)
        assert beat["capacity"] == 16 and beat["draining"] is False and 0 <= beat["cpu"] <= 64
        speaking = await alice.wait_event("speaker")  # all three send the same tone
        assert speaking["user_id"] in {"alice", "bob", "carol"}

        # Carol leaves: the others are told and get an offer without her tracks.
        offers = {peer: len(peer.offers) for peer in (alice, bob)}
        await carol.leave()
        assert carol.close_code == 1000
        for peer in (alice, bob):
            await peer.wait_event("peer.left", user_id="carol")
            await peer.wait_for(
                lambda p=peer: len(p.offers) > offers[p] and "carol" not in p.sent_users()
            )
        await control.wait_for(
            lambda: (
                {"type": "peer_left", "call_id": call, "user_id": "carol", "reason": "leave"}
                in control.events_of(worker.id)
            )
        )
        # Media between those who stayed still flows.
        seen = len(bob.video_ids("alice"))
        await bob.wait_video("alice", frames=seen + 5)
    finally:
        for peer in peers:
            await peer.close()


async def test_camera_off_and_on_reuses_the_slot_and_state_is_relayed(
    control: StubControl, worker: SfuWorker
) -> None:
    call = new_call()
    alice, bob = peers = [GroupPeer("alice"), GroupPeer("bob")]
    try:
        await alice.join(worker.url, control.token(worker.id, "alice", call))
        await bob.join(worker.url, control.token(worker.id, "bob", call))
        await bob.wait_video("alice")
        mlines = len(bob.pc.getTransceivers())

        alice.send("publish", {"audio": True, "video": False})
        await bob.wait_for(
            lambda: {"user_id": "alice", "kind": "video"} not in bob.streams.values()
        )
        assert {"user_id": "alice", "kind": "audio"} in bob.streams.values()
        alice.send("state", {"audio_muted": True, "video_muted": True})
        await bob.wait_event("peer.state", user_id="alice", audio_muted=True, video_muted=True)

        # Back on. Bob's new subscription asks her for a keyframe at once, which her sender
        # drops while her camera's m-line is still inactive (her answer is held here until
        # then); the worker asks again once she sends. Bob decodes her video again, on the
        # same m-line as before (the SDP does not grow).
        assert alice.video is not None
        seen, requests = len(bob.video_ids("alice")), alice.video.requests
        alice.hold_offers()
        alice.send("publish", {"audio": True, "video": True})
        await wait_until(lambda: alice.video.requests > requests)
        encoded = alice.video.sent
        await wait_until(lambda: alice.video.sent >= encoded + 2)  # made, and dropped
        alice.answer_offers()
        await bob.wait_video("alice", frames=seen + 10)
        assert len(bob.pc.getTransceivers()) == mlines
        assert bob.recorder.decode_errors == 0
        assert alice.event("error") is None and bob.event("error") is None
    finally:
        for peer in peers:
            await peer.close()


async def test_a_later_participant_reuses_the_m_lines_of_one_who_left(
    control: StubControl, worker: SfuWorker
) -> None:
    call = new_call()
    alice, bob, carol = peers = [GroupPeer(name) for name in ("alice", "bob", "carol")]
    try:
        await alice.join(worker.url, control.token(worker.id, "alice", call))
        await bob.join(worker.url, control.token(worker.id, "bob", call))
        await alice.wait_video("bob", frames=30)  # bob's timestamps are well past 0 by now
        mids = {s["kind"]: mid for mid, s in alice.streams.items() if s["user_id"] == "bob"}
        mlines = len(alice.pc.getTransceivers())
        await bob.leave()
        await alice.wait_for(lambda: "bob" not in alice.sent_users())

        await carol.join(worker.url, control.token(worker.id, "carol", call))
        await alice.wait_video("carol", frames=10)
        await alice.wait_audio("carol", frames=10)
        assert {
            s["kind"]: mid for mid, s in alice.streams.items() if s["user_id"] == "carol"
        } == mids
        assert len(alice.pc.getTransceivers()) == mlines
        # Carol's media continues the timeline bob's left on those m-lines (hers starts at 0):
        # one steady stream, as a browser's buffers expect (its audio buffer throws away
        # packets that seem older than what it played).
        for mid in mids.values():
            steps = [b - a for a, b in itertools.pairwise(alice.recorder.pts_by_mid[mid])]
            assert all(0 < step <= 90000 for step in steps), (mid, steps)
        # The first frame the m-line decoded after the switch is bob's last (aiortc's jitter
        # buffer releases a frame when the next one begins); carol's are then all readable.
        assert in_order(alice.video_ids("carol")[1:]), alice.describe()
        assert alice.recorder.decode_errors == 0
    finally:
        for peer in peers:
            await peer.close()


async def test_bad_frames_get_errors_and_the_socket_stays_open(
    control: StubControl, worker: SfuWorker
) -> None:
    peer = GroupPeer("alice", audio=False, video=False)
    try:
        await peer.join(worker.url, control.token(worker.id, "alice", new_call()))
        peer.send_raw("{not json")
        peer.send("dance", {}, ref=1)
        peer.send("answer", {"revision": 7, "sdp": {"type": "answer", "sdp": "v=0"}}, ref=2)
        peer.send("state", {"audio_muted": "yes", "video_muted": False}, ref=3)
        peer.send("candidate", {"candidate": {"candidate": "garbage", "sdpMid": "0"}}, ref=4)
        peer.send("publish", {"audio": True}, ref=5)
        peer.send("ping", {"extra": 1}, ref=6)
        peer.send_raw('{"type": "ping", "data": {}, "ref": {"no": 1}}')
        peer.send("ping", {}, ref="x" * 70_000)
        # Trickled candidates are taken (kept until the first answer), also the last one.
        host = "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host"
        peer.send("candidate", {"candidate": {"candidate": host, "sdpMid": "0"}}, ref=7)
        peer.send("candidate", {"candidate": None}, ref=8)
        peer.send("ping", {}, ref=9)
        await peer.wait_event("pong")
        errors = [
            (data["code"], data.get("field"), ref)
            for type_, data, ref in peer.events
            if type_ == "error"
        ]
        assert errors == [
            ("invalid_request", None, None),
            ("invalid_request", "type", 1),
            ("conflict", "revision", 2),
            ("invalid_request", "audio_muted", 3),
            ("invalid_request", "candidate", 4),
            ("invalid_request", "video", 5),
            ("invalid_request", "extra", 6),
            ("invalid_request", None, None),
            ("too_large", None, None),
        ]
        assert peer.event("pong") == {} and peer.events[-1][2] == 9
        assert peer.close_code is None
    finally:
        await peer.close()


async def test_a_flooding_peer_is_rate_limited_then_closed_and_the_others_carry_on(
    control: StubControl, worker: SfuWorker
) -> None:
    call = new_call()
    alice, bob = peers = [GroupPeer(n, audio=False, video=False) for n in ("alice", "bob")]
    try:
        await alice.join(worker.url, control.token(worker.id, "alice", call))
        await bob.join(worker.url, control.token(worker.id, "bob", call))
        # Only a change of state is relayed: the same state twice is told once.
        for muted in (True, True, False):
            alice.send("state", {"audio_muted": muted, "video_muted": False})
        await bob.wait_event("peer.state", user_id="alice", audio_muted=False)
        relayed = [d for t, d, _ in bob.events if t == "peer.state"]
        assert [d["audio_muted"] for d in relayed] == [True, False]

        for ref in range(10 * FRAMES_BURST):  # read all the while: only the rate is at fault
            bob.send("ping", {}, ref=ref)
        assert await bob.wait_closed() == 4429
        assert bob.close_reason == "too many refused frames"
        answers = [(t, d.get("code"), ref) for t, d, ref in bob.events if t in ("pong", "error")]
        # The burst is answered in full; then refusals, each with its frame's ref.
        assert answers[:FRAMES_BURST] == [("pong", None, ref) for ref in range(FRAMES_BURST)]
        limited = [a for a in answers if a[0] == "error"]
        assert limited and all(code == "rate_limited" for _, code, _ in limited)
        assert limited[0][2] >= FRAMES_BURST
        assert bob.event("error", code="rate_limited")["retry_after"] > 0  # type: ignore[index]

        await alice.wait_event("peer.left", user_id="bob")
        alice.send("ping", {}, ref="still here")
        await alice.wait_for(lambda: alice.events[-1][::2] == ("pong", "still here"))
        assert alice.close_code is None and alice.event("error") is None
    finally:
        for peer in peers:
            await peer.close()


class _Admits:
    """sfu.app.Worker as WorkerSocket uses it, admitting any join."""

    max_unjoined = 4

    def __init__(self) -> None:
        self.unjoined = 0
        self.sockets: list[WorkerSocket] = []

    def join(self, channel: WorkerSocket, token: object, publish: object, started: float) -> object:
        self.sockets.append(channel)
        return _Peer()

    def leave(self, peer: object, reason: str) -> None:
        pass


class _Peer:
    user_id = "reader"


async def test_a_socket_that_does_not_read_is_closed_before_its_backlog_grows_past_the_cap() -> (
    None
):
    worker = _Admits()
    server = HTTPServer(Application([(r"/ws", WorkerSocket, {"worker": worker})]))
    [sock] = bind_sockets(0, "127.0.0.1")
    server.add_sockets([sock])
    client = None
    try:
        url = f"ws://127.0.0.1:{sock.getsockname()[1]}/ws"
        client = await websocket_connect(url)
        await client.write_message(
            json.dumps(
                {
                    "type": "join",
                    "data": {"token": "t", "publish": {"audio": False, "video": False}},
                }
            )
        )
        await wait_until(lambda: worker.sockets)
        [socket] = worker.sockets
        # The client reads nothing meanwhile: once the kernel's buffers are full, what is sent
        # waits in the worker's own buffer, which must not outgrow the cap.
        big = {"blob": "x" * 32 * 1024}
        for _ in range(2048):  # 64 MiB: far past any kernel buffer
            socket.send("peer.state", big)
            assert unsent_bytes(socket) <= MAX_UNSENT_BYTES + 40 * 1024
            if socket.ws_connection is None or socket.ws_connection.is_closing():
                break
        else:
            pytest.fail("a socket that reads nothing was never closed")
        while (message := await client.read_message()) is not None:
            assert json.loads(message)["type"] == "peer.state"
        assert (client.close_code, client.close_reason) == (
            1013,
            "too slow: reading less than the worker sends",
        )
    finally:
        if client is not None:
            client.close()
        server.stop()


async def test_sockets_waiting_to_join_are_capped_and_read_little(control: StubControl) -> None:
    async with SfuWorker(control.url, SFU_SECRET, capacity=1) as small:  # 2 may wait to join
        waiting = [GroupPeer(f"w{i}", audio=False, video=False) for i in range(4)]
        try:
            for peer in waiting[:2]:
                await peer.connect(small.url)
            await waiting[2].connect(small.url)
            assert await waiting[2].wait_closed() == 1013
            assert waiting[2].close_reason == "too many connections waiting to join: try again"
            # A frame over the join's cap closes its socket (a join is far smaller): one
            # waiting fewer, so the next socket may wait again.
            waiting[0].send_raw(json.dumps({"type": "join", "data": {"token": "x" * 9000}}))
            assert await waiting[0].wait_closed() == 1009
            await waiting[3].join(small.url, control.token(small.id, "carol", new_call()))
        finally:
            for peer in waiting:
                await peer.close()


async def test_refused_joins_close_with_their_code(control: StubControl, worker: SfuWorker) -> None:
    call = new_call()
    now = time.time()
    used = control.token(worker.id, "alice", call)
    cases = {
        "expired": (control.token(worker.id, "bob", call, now=now - 120), 4401),
        "forged": (control.token(worker.id, "bob", call, secret="f" * 40), 4401),
        "not a token": ("hello", 4401),
        "other worker": (control.token("f" * 24, "bob", call), 4403),
        "replayed": (used, 4409),
    }
    first = GroupPeer("alice", audio=False, video=False)
    refused = {name: GroupPeer(name, audio=False, video=False) for name in cases}
    silent = GroupPeer("silent", audio=False, video=False)
    try:
        await first.join(worker.url, used)
        await silent.connect(worker.url)  # sends nothing: closed after 10 s
        for name, (token, code) in cases.items():
            with pytest.raises(WorkerClosed) as closed:
                await refused[name].join(worker.url, token)
            assert closed.value.code == code, name
        for frame, reason in (
            ('{"type": "ping", "data": {}}', "the first frame must be join"),
            ("{oops", "the first frame must be join"),
            ('{"type": "join", "data": {"token": "x"}}', "join needs token and publish"),
        ):
            early = GroupPeer("early", audio=False, video=False)
            await early.connect(worker.url)
            early.send_raw(frame)
            assert await early.wait_closed() == 4401
            assert early.close_reason == reason
            await early.close()
        assert await silent.wait_closed() == 4401
        # Only the first join reached FastSock.
        await control.wait_for(lambda: control.events_of(worker.id))
        assert [e for e in control.events_of(worker.id) if e["call_id"] == call] == [
            {"type": "peer_joined", "call_id": call, "user_id": "alice"}
        ]
    finally:
        for peer in (first, silent, *refused.values()):
            await peer.close()


async def test_fastsock_commands_evict_and_end(control: StubControl, worker: SfuWorker) -> None:
    call = new_call()
    before = time.time() - 2  # issued before the call ends
    late_token = control.token(worker.id, "carol", call, now=before)
    alice, bob = peers = [GroupPeer(n, audio=False, video=False) for n in ("alice", "bob")]
    try:
        await alice.join(worker.url, control.token(worker.id, "alice", call))
        await bob.join(worker.url, control.token(worker.id, "bob", call))

        control.evict(worker.id, call, "bob")  # sent with the next heartbeat reply
        assert await bob.wait_closed() == 4000
        await alice.wait_event("peer.left", user_id="bob")
        await control.wait_for(
            lambda: (
                {"type": "peer_left", "call_id": call, "user_id": "bob", "reason": "evicted"}
                in control.events_of(worker.id)
            )
        )

        control.end(worker.id, call)
        assert await alice.wait_closed() == 4403
        ended_by = time.time()  # the worker's end time is at most this
        await control.wait_for(
            lambda: all(c["call_id"] != call for c in control.last_heartbeat(worker.id)["calls"])
        )
        # A token issued before the end is refused; one issued after it (the call moved back
        # here) is let in.
        late = GroupPeer("carol", audio=False, video=False)
        peers.append(late)
        with pytest.raises(WorkerClosed) as closed:
            await late.join(worker.url, late_token)
        assert closed.value.code == 4403
        # Tokens carry whole seconds: one issued in a later second is known to be newer.
        await asyncio.sleep(math.floor(ended_by) + 1 - time.time())
        again = GroupPeer("carol", audio=False, video=False)
        peers.append(again)
        await again.join(worker.url, control.token(worker.id, "carol", call))
    finally:
        for peer in peers:
            await peer.close()


async def test_unknown_to_fastsock_drops_calls_and_registers_again(
    control: StubControl, worker: SfuWorker
) -> None:
    peer = GroupPeer("alice", audio=False, video=False)
    try:
        await peer.join(worker.url, control.token(worker.id, "alice", new_call()))
        registered = len(control.registrations)
        control.forget(worker.id)  # the next heartbeat or events request gets 404
        assert await peer.wait_closed() == 1012
        await control.wait_for(lambda: len(control.registrations) > registered)
        assert control.registrations[-1][0] == worker.id
        await control.wait_for(lambda: control.last_heartbeat(worker.id)["peers"] == 0)
    finally:
        await peer.close()


async def test_health_and_metrics(control: StubControl, worker: SfuWorker) -> None:
    health = await worker.health()
    assert health == {
        "ok": True,
        "worker_id": worker.id,
        "registered": True,
        "draining": False,
        "peers": 0,
    }
    http = AsyncHTTPClient()
    base = worker.health_url.removesuffix("/healthz")
    metrics = await http.fetch(base + "/metrics")
    assert b"sfu_peers 0.0" in metrics.body and b"sfu_tracks_forwarded" in metrics.body
    missing = await http.fetch(base + "/nope", raise_error=False)
    assert missing.code == 404
    assert json.loads(missing.body)["error"]["code"] == "not_found"


async def test_capacity_replacement_and_metrics_token(control: StubControl) -> None:
    async with SfuWorker(control.url, SFU_SECRET, capacity=1, metrics_token="m" * 20) as small:
        call = new_call()
        alice = GroupPeer("alice", audio=False, video=False)
        bob = GroupPeer("bob", audio=False, video=False)
        alice_again = GroupPeer("alice-2", audio=False, video=False)
        try:
            await alice.join(small.url, control.token(small.id, "alice", call))
            with pytest.raises(WorkerClosed) as closed:
                await bob.join(small.url, control.token(small.id, "bob", call))
            assert closed.value.code == 4413
            # The same user again (another tab) replaces the first: not over capacity.
            await alice_again.join(small.url, control.token(small.id, "alice", call))
            assert await alice.wait_closed() == 4410
            await control.wait_for(
                lambda: (
                    [e.get("reason", e["type"]) for e in control.events_of(small.id)]
                    == ["peer_joined", "replaced", "peer_joined"]
                )
            )

            http = AsyncHTTPClient()
            url = small.health_url.removesuffix("/healthz") + "/metrics"
            refused = await http.fetch(url, raise_error=False)
            assert refused.code == 401
            assert json.loads(refused.body)["error"]["code"] == "unauthenticated"
            wrong = await http.fetch(
                url, headers={"Authorization": "Bearer nope"}, raise_error=False
            )
            assert wrong.code == 401
            ok = await http.fetch(url, headers={"Authorization": "Bearer " + "m" * 20})
            assert b"sfu_peers 1.0" in ok.body
        finally:
            for peer in (alice, bob, alice_again):
                await peer.close()


async def test_sigterm_drains_then_deregisters_and_exits_0(control: StubControl) -> None:
    async with SfuWorker(control.url, SFU_SECRET) as draining:
        call = new_call()
        alice = GroupPeer("alice", audio=False, video=False)
        late = GroupPeer("late", audio=False, video=False)
        try:
            await alice.join(draining.url, control.token(draining.id, "alice", call))
            draining.terminate()
            await control.wait_for(lambda: control.last_heartbeat(draining.id).get("draining"))
            assert (await draining.health())["draining"] is True
            with pytest.raises(WorkerClosed) as closed:
                await late.join(draining.url, control.token(draining.id, "late", call))
            assert closed.value.code == 4503
            assert draining.returncode is None  # still serving alice
            # FastSock moved her (here: she leaves); then the worker deregisters and exits.
            await alice.leave()
            assert await draining.wait_exit(WAIT_S) == 0
            assert draining.id in control.deleted
            left = {"type": "peer_left", "call_id": call, "user_id": "alice", "reason": "leave"}
            assert control.events_of(draining.id)[-1] == left
        finally:
            for peer in (alice, late):
                await peer.close()


async def test_drain_timeout_and_sigint_still_deregister(control: StubControl) -> None:
    async with (
        SfuWorker(control.url, SFU_SECRET, drain_timeout_s=0.5) as slow,
        SfuWorker(control.url, SFU_SECRET) as interrupted,
    ):
        stays = GroupPeer("stays", audio=False, video=False)
        try:
            await stays.join(slow.url, control.token(slow.id, "stays", new_call()))
            slow.terminate()
            interrupted.interrupt()
            assert await slow.wait_exit(WAIT_S) == 0
            assert await interrupted.wait_exit(WAIT_S) == 0
            assert await stays.wait_closed() == 1001
            assert slow.id in control.deleted and interrupted.id in control.deleted
        finally:
            await stays.close()


async def test_a_worker_started_before_fastsock_registers_when_it_answers() -> None:
    port = free_port()
    worker = SfuWorker(f"http://127.0.0.1:{port}", SFU_SECRET)
    await worker.start(wait=False)
    try:
        # It retries while nothing listens there (its log says so), then FastSock comes up.
        await wait_until(lambda: "sfu_register_failed" in worker.log())
        late = await StubControl(port=port).start()
        try:
            await worker.wait_registered()
            [(worker_id, body)] = late.registrations
            assert worker_id == worker.id
            assert body == {
                "url": worker.url,
                "health_url": worker.health_url,
                "capacity": 16,
                "version": VERSION,
            }
            await late.wait_for(lambda: late.heartbeats.get(worker.id))
        finally:
            await late.stop()
    finally:
        await worker.stop()


def test_jti_cache_is_bounded_and_forgets_expired_tokens() -> None:
    cache = JtiCache(max_entries=2)
    assert cache.claim("a", exp=100, now=50)
    assert not cache.claim("a", exp=100, now=60)  # replayed
    assert cache.claim("b", exp=200, now=60)
    with pytest.raises(JoinRefused) as full:  # refused, rather than forget "a" too early
        cache.claim("c", exp=200, now=60)
    assert full.value.code == 4413
    assert cache.claim("c", exp=200, now=100)  # "a" has expired: its room is free
    assert len(cache) == 2
