"""What sessions keep for a resume, and how much: pongs are not kept, pings are rate-limited,
each session's buffer is bounded in bytes, and all of them together by one budget that drops
the longest-detached sessions first (realtime/replay.py)."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import replace
from pathlib import Path

import pytest

from fastsock.app import Server
from fastsock.realtime import hub as hub_module
from tests.conftest import RELAXED, make_settings
from tests.support import Api, Socket

BIG = "x" * 3000


async def seq_of(ws: Socket, text: str) -> int:
    """The seq of the `message.new` frame carrying `text`."""
    seqs: list[int] = []

    def carries(frame: dict) -> bool:
        if frame["data"]["message"]["text"] != text:
            return False
        seqs.append(frame["seq"])
        return True

    await ws.expect("message.new", carries)
    return seqs[0]


async def until_detached(server: Server, *sockets: Socket) -> None:
    """Close the sockets; wait until the server has detached their sessions and told the
    others (presence)."""
    assert server.ctx is not None
    hub = server.ctx.hub
    for ws in sockets:
        ws.close()
        await ws.close_code()
    sessions = [ws.ready["session"] for ws in sockets if ws.ready is not None]
    deadline = time.monotonic() + 10
    while any(hub.attached(session) for session in sessions):
        assert time.monotonic() < deadline, "sessions still attached"
        await asyncio.sleep(0.02)
    await hub.wait_tasks(timeout=10)


async def replies(ws: Socket, refs: list[str], timeout: float = 10) -> list[dict]:
    """The whole frames answering `refs`, in that order."""
    deadline = time.monotonic() + timeout
    while True:
        by_ref = {f.get("ref"): f for f in ws.frames}
        if all(ref in by_ref for ref in refs):
            return [by_ref[ref] for ref in refs]
        assert time.monotonic() < deadline, f"replies missing; got {ws.frames}"
        await ws.drain(0.1)


async def gauge(api: Api) -> float:
    metrics = (await api.get("/metrics")).body
    match = re.search(r"^fastsock_replay_buffer_bytes (\S+)$", metrics, re.MULTILINE)
    assert match is not None, metrics
    return float(match.group(1))


async def test_pongs_are_neither_numbered_nor_replayed(server: Server, api: Api) -> None:
    alice = await api.register()
    room = await api.group(alice)
    ws = await api.ws(alice)
    for n in range(3):
        await ws.send("ping", ref=f"p{n}")
        await ws.expect("pong")
    assert ws.seqs == []
    await api.send(alice, room, "after the pings")
    await ws.expect("message.new")
    await ws.drain()
    assert ws.seqs == [1, 2]  # message.ack and message.new: the pongs took no seq
    await until_detached(server, ws)
    assert ws.ready is not None
    resumed = await api.ws(alice, resume={"session": ws.ready["session"], "last_seq": 0})
    assert resumed.ready is not None and resumed.ready["resume"] == "ok"
    replayed = await resumed.drain()
    assert sorted(f["type"] for f in replayed) == ["message.ack", "message.new"]
    assert [f["seq"] for f in replayed] == [1, 2]


async def test_a_ping_flood_is_rate_limited_and_the_socket_stays_open(
    db_uri: str | None, tmp_path: Path
) -> None:
    limits = replace(RELAXED, pings_per_s=0.01, pings_burst=3)
    server = Server(make_settings(db_uri, tmp_path, limits=limits))
    await server.start()
    try:
        api = Api(server.port)
        alice = await api.register()
        room = await api.group(alice)
        ws = await api.ws(alice)
        refs = [f"p{n}" for n in range(20)]
        for ref in refs:
            await ws.send("ping", ref=ref)
        answers = await replies(ws, refs)
        assert [f["type"] for f in answers] == ["pong"] * 3 + ["error"] * 17
        for refused in answers[3:]:
            assert refused["data"]["code"] == "rate_limited"
            assert refused["data"]["retry_after"] > 0
        assert all("seq" not in f for f in answers)  # answers to pings are not kept
        await api.send(alice, room, "still open")
        await ws.expect("message.new")
        await ws.drain()
        assert ws.seqs == [1, 2]  # its message.ack and message.new: the pings took no seq
        metrics = (await api.get("/metrics")).body
        assert 'fastsock_rate_limited_total{kind="ping"} 17.0' in metrics
    finally:
        await server.stop()


async def test_a_session_keeps_its_newest_frames_within_its_byte_bound(
    server: Server, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counted in bytes: emoji are 4 bytes each, so these frames are over 4 KB though only
    about 1,300 characters long."""
    monkeypatch.setattr(hub_module, "KEEP", 16 * 1024)
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    early, late = await api.ws(bob), await api.ws(bob)  # two tabs: two sessions, same events
    texts = [f"{n} " + "🎉" * 1000 for n in range(6)]
    for text in texts:
        await api.send(alice, room, text)
    early_seq = await seq_of(early, texts[1])  # four frames ago: more than 16 KiB back
    late_seq = await seq_of(late, texts[2])  # three frames ago: kept
    for text in texts[2:]:
        await seq_of(early, text)
    for text in texts[3:]:
        await seq_of(late, text)
    await until_detached(server, early, late)
    assert early.ready is not None and late.ready is not None
    gone = await api.ws(bob, resume={"session": early.ready["session"], "last_seq": early_seq})
    assert gone.ready is not None and gone.ready["resume"] == "resync"
    kept = await api.ws(bob, resume={"session": late.ready["session"], "last_seq": late_seq})
    assert kept.ready is not None and kept.ready["resume"] == "ok"
    frames = await kept.drain()
    replayed = [f["data"]["message"]["text"] for f in frames if f["type"] == "message.new"]
    assert replayed == texts[3:]


async def test_a_resume_that_finds_a_gap_frees_the_session_at_once(
    server: Server, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its client resyncs on a new session: what the old one kept is of no use to anyone,
    so it does not wait out its resume window."""
    monkeypatch.setattr(hub_module, "KEEP", 8 * 1024)
    assert server.ctx is not None
    hub = server.ctx.hub
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    ws = await api.ws(bob)
    for n in range(4):  # about 3.5 KB each: the first ones fall off
        await api.send(alice, room, f"{n} {BIG}")
    await seq_of(ws, f"3 {BIG}")
    await until_detached(server, ws)
    assert await gauge(api) > 0
    assert ws.ready is not None
    resumed = await api.ws(bob, resume={"session": ws.ready["session"], "last_seq": 0})
    assert resumed.ready is not None and resumed.ready["resume"] == "resync"
    assert hub.sessions_of(bob.id) == [resumed.ready["session"]]
    assert await gauge(api) == 0


async def test_the_budget_drops_the_longest_detached_session_first(
    server: Server, api: Api
) -> None:
    assert server.ctx is not None
    budget = server.ctx.hub.replay_budget
    assert await gauge(api) == 0
    alice, bob, carol = await api.register(), await api.register(), await api.register()
    room = await api.group(alice, bob, carol)
    bob_ws, carol_ws = await api.ws(bob), await api.ws(carol)
    for n in range(3):
        await api.send(alice, room, f"{n} {BIG}")
        await seq_of(bob_ws, f"{n} {BIG}")
        await seq_of(carol_ws, f"{n} {BIG}")
    await until_detached(server, bob_ws)  # bob first: the longest detached
    await until_detached(server, carol_ws)
    held = await gauge(api)
    assert held == budget.used > 3 * 2 * len(BIG)
    # The budget is full: one more message to both makes room by dropping bob's session.
    budget.limit = budget.used + 100
    await api.send(alice, room, f"over budget {BIG}")
    assert bob_ws.ready is not None and carol_ws.ready is not None
    carol_back = await api.ws(
        carol, resume={"session": carol_ws.ready["session"], "last_seq": carol_ws.seqs[-1]}
    )
    assert carol_back.ready is not None and carol_back.ready["resume"] == "ok"
    assert await seq_of(carol_back, f"over budget {BIG}") == carol_ws.seqs[-1] + 1
    bob_back = await api.ws(
        bob, resume={"session": bob_ws.ready["session"], "last_seq": bob_ws.seqs[-1]}
    )
    assert bob_back.ready is not None and bob_back.ready["resume"] == "resync"
    # bob's return is announced to carol (presence) after his `ready`: held bytes too.
    await carol_back.expect("presence", lambda f: f["data"] == {"user_id": bob.id, "online": True})
    assert await gauge(api) == budget.used < held


async def test_with_no_detached_session_a_growing_session_sheds_its_oldest_frames(
    server: Server, api: Api
) -> None:
    assert server.ctx is not None
    budget = server.ctx.hub.replay_budget
    alice = await api.register()
    room = await api.group(alice)
    ws = await api.ws(alice)
    first = await api.send(alice, room, f"first {BIG}")
    first_seq = await seq_of(ws, first["text"])
    budget.limit = budget.used + len(BIG)  # room for about one more frame
    for n in range(3):
        await api.send(alice, room, f"{n} {BIG}")
        await seq_of(ws, f"{n} {BIG}")  # still delivered live
        assert budget.used <= budget.limit
    await until_detached(server, ws)
    assert ws.ready is not None
    back = await api.ws(alice, resume={"session": ws.ready["session"], "last_seq": first_seq})
    assert back.ready is not None and back.ready["resume"] == "resync"
