"""The bus between nodes (fastsock/cluster/link.py, numbering.py, outbox.py) and the cleanup
after dead nodes, against a real redis-server.

No client may miss an event unawares: a write that fails (in part, or late), a number that
never came or came out of order, a write queue that overflowed, all make every node whose
clients may have missed something start again (their clients resync). A failed write is
simulated by the sender's pipeline raising ConnectionError, before or after it ran."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from fastsock.cluster import hub as hub_module
from fastsock.cluster import link as link_module
from fastsock.cluster import outbox as outbox_module
from fastsock.cluster.hub import CLOSE_RESET
from fastsock.cluster.link import ALL, BURIED, NODES, PREFIX, Link, frame, node_channel
from fastsock.cluster.outbox import WriteFailed
from fastsock.cluster.registry import NodeBuried
from fastsock.errors import Unavailable
from fastsock.realtime.hub import encode
from tests.cluster.conftest import Nodes, until
from tests.support import Socket, User

DEAD = "deadbeef"  # a node id nobody uses: a node that died


@pytest.fixture
async def links(redis_url: str) -> AsyncIterator[list[Link]]:
    pair = [Link(redis_url, node) for node in ("a0000000", "b0000000")]
    for link in pair:
        await link.start()
    yield pair
    for link in pair:
        await link.stop()


def heard(link: Link, kind: str = "ev") -> list[Any]:
    """The headers of the `kind` messages `link` hears, as they come."""
    got: list[Any] = []
    link.on(kind, lambda _sender, header, _payload: got.append(header))
    return got


def resets(link: Link) -> list[str]:
    """One entry per reset of `link` (the id it had)."""
    seen: list[str] = []
    link.on_reset.append(lambda: seen.append(link.node_id))
    return seen


def fail_write(
    monkeypatch: pytest.MonkeyPatch, link: Link, holding: bytes, *, ran: bool = False
) -> list[int]:
    """The first pipeline of `link` with a command holding `holding` fails, as when Redis
    stops answering: before it ran, or after (`ran`: it was executed all the same). Returns a
    list that gets an entry when it happened."""
    failed: list[int] = []
    real = link.redis.pipeline

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = real(*args, **kwargs)
        execute = pipe.execute

        async def flaky(raise_on_error: bool = True) -> Any:
            stack = [_bytes(arg) for command, _ in pipe.command_stack for arg in command]
            if not failed and any(holding in arg for arg in stack):
                failed.append(1)
                if ran:
                    await execute(raise_on_error=raise_on_error)
                raise RedisConnectionError("simulated: Redis stopped answering")
            return await execute(raise_on_error=raise_on_error)

        pipe.execute = flaky
        return pipe

    monkeypatch.setattr(link.redis, "pipeline", pipeline)
    return failed


def _bytes(arg: object) -> bytes:
    return arg if isinstance(arg, bytes) else str(arg).encode()


def heartbeats(monkeypatch: pytest.MonkeyPatch, link: Link) -> list[int]:
    """Gets an entry at the end of each heartbeat of `link` that went through."""
    beats: list[int] = []
    beat = link._heard.beat

    def counted(quiet_ticks: int) -> None:
        beats.append(1)
        beat(quiet_ticks)

    monkeypatch.setattr(link._heard, "beat", counted)
    return beats


# --- lost writes and gaps -------------------------------------------------------------------


async def test_a_lost_message_resets_the_node_that_missed_it_at_the_next_heartbeat(
    links: list[Link], monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver, sender = links
    got, receiver_resets, sender_resets = heard(receiver), resets(receiver), resets(sender)
    fail_write(monkeypatch, sender, b"lost")
    sender.broadcast("ev", "lost")  # its last message: no later one shows the gap
    with pytest.raises(WriteFailed):
        await sender.flush()
    await until(lambda: bool(receiver_resets), "the receiver learns it from a heartbeat")
    assert got == []
    assert sender_resets == []  # a lost publish costs the sender nothing of its own


async def test_a_lost_write_of_its_own_state_resets_the_sender(
    links: list[Link], monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver, sender = links
    got, receiver_resets, sender_resets = heard(receiver), resets(receiver), resets(sender)
    fail_write(monkeypatch, sender, b"own state")
    sender.enqueue(lambda p: p.set(f"{PREFIX}test", "own state"))  # as its session registry
    with pytest.raises(WriteFailed):
        await sender.flush()
    await until(lambda: bool(sender_resets), "the sender starts again")
    await until(lambda: sender.connected, "back on the bus under a new id")
    sender.broadcast("ev", "after")  # numbered from 1 again under the new id: no gap
    await until(lambda: got == ["after"], "heard")
    assert receiver_resets == []  # it missed nothing


async def test_a_write_reported_failed_that_ran_all_the_same_resets_no_one(
    links: list[Link], monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver, sender = links
    got, receiver_resets, sender_resets = heard(receiver), resets(receiver), resets(sender)
    fail_write(monkeypatch, sender, b"delivered", ran=True)
    sender.broadcast("ev", "delivered")
    with pytest.raises(WriteFailed):
        await sender.flush()
    sender.broadcast("ev", "after")
    await until(lambda: got == ["delivered", "after"], "both heard")
    assert receiver_resets == sender_resets == []


async def test_a_gap_or_a_number_out_of_order_resets_the_receiver(links: list[Link]) -> None:
    receiver = links[0]
    got, receiver_resets = heard(receiver), resets(receiver)
    sender = "5e0de400"  # a node that came after the receiver: its numbering starts at 1

    async def publish(channel: str, number: int, text: str, by: str = sender) -> None:
        await receiver.redis.publish(channel, frame(by, "ev", number, text))

    for number in (1, 2):
        await publish(ALL, number, f"m{number}")
    await until(lambda: got == ["m1", "m2"], "both heard")
    assert receiver_resets == []
    await publish(ALL, 4, "m4")  # m3 never came
    await until(lambda: len(receiver_resets) == 1, "a reset at the gap")
    await until(lambda: receiver.connected, "back on the bus")
    await publish(ALL, 3, "m3")  # too late: out of order
    await until(lambda: len(receiver_resets) == 2, "a reset at the late one")
    await until(lambda: receiver.connected, "back on the bus")
    # On a node's own channel (new with its id) every sender starts at 1.
    await publish(node_channel(receiver.node_id), 2, "direct", by="5e0de401")
    await until(lambda: len(receiver_resets) == 3, "a reset: the first one never came")


async def test_a_node_joining_takes_the_numbering_up_where_it_stands(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    older = Link(redis_url, "c0000000")
    await older.start()
    joining = Link(redis_url, "d0000000")
    try:
        for number in range(5):
            older.broadcast("ev", number)
        await older.flush()
        # Stalled while the other joins: no heartbeat, no answer. The joining node waits for
        # it a while, then takes sockets; its numbering is learnt from its next word.
        monkeypatch.setattr(older, "_repeat", lambda answer=False: None)
        got, joining_resets = heard(joining), resets(joining)
        await joining.start()
        assert joining.connected
        monkeypatch.undo()
        older.broadcast("ev", "after the join")
        await until(lambda: got == ["after the join"], "heard")
        assert joining_resets == []
    finally:
        for link in (joining, older):
            await link.stop()


async def test_a_full_write_queue_is_dropped_and_the_nodes_that_missed_it_reset(
    links: list[Link], monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver, sender = links
    receiver_resets, sender_resets = resets(receiver), resets(sender)
    monkeypatch.setattr(outbox_module, "QUEUE_BYTES", 50_000)
    stalled, resume = asyncio.Event(), asyncio.Event()
    execute = sender.outbox._execute

    async def slow(batch: list[Any]) -> bool:  # Redis up, but slower than the writes come
        stalled.set()
        await resume.wait()
        return await execute(batch)

    monkeypatch.setattr(sender.outbox, "_execute", slow)
    sender.broadcast("ev", "first")
    await stalled.wait()
    waiter = asyncio.ensure_future(sender.flush())
    await asyncio.sleep(0)  # the flush is queued (behind "first", being written)
    for _ in range(80):
        sender.broadcast("ev", "x" * 1000)
    with pytest.raises(WriteFailed):
        await asyncio.wait_for(waiter, 15)
    await until(lambda: bool(sender_resets), "the sender starts again")
    resume.set()
    await until(lambda: bool(receiver_resets), "the receiver finds what was dropped")


async def test_a_node_hears_its_new_channel_as_soon_as_it_starts_again(
    links: list[Link],
) -> None:
    renamed, other = links
    got = heard(renamed, "x")
    renamed.reset("test")
    other.send(renamed.node_id, "x", "at once")  # its new channel was subscribed in advance
    await until(lambda: got == ["at once"], "heard")


# --- across nodes -------------------------------------------------------------------------


async def _resume(socket: Socket) -> dict[str, Any]:
    assert socket.ready is not None
    return {"session": socket.ready["session"], "last_seq": socket.seqs[-1] if socket.seqs else 0}


async def test_a_lost_event_resets_the_node_that_missed_it_and_its_clients_resync(
    nodes: Nodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    api0, api1 = nodes.api(0), nodes.api(1)
    alice, bob = await api0.register(), await api0.register()
    room = await api0.group(alice, bob)
    alice_ws, bob_ws = await api0.ws(alice), await api1.ws(bob)
    failed = fail_write(monkeypatch, nodes.hub(1).link, b"lost on the way")
    sent = await api1.send(bob, room, "lost on the way")  # stored; its event never leaves
    await until(lambda: bool(failed), "its write failed")
    assert await alice_ws.close_code() == CLOSE_RESET  # node 0 missed it: it starts again
    await until(lambda: nodes.hub(0).link.connected, "node 0 back on the bus")
    alice_back = await api0.ws(alice, resume=await _resume(alice_ws))
    assert alice_back.ready is not None and alice_back.ready["resume"] == "resync"
    r = await api0.get(f"/history/room/{room}?changed_after=0", alice)
    assert sent["id"] in [m["id"] for m in r.body["messages"]]
    # Node 1 delivered it itself: its clients missed nothing, and stay.
    assert (await bob_ws.expect("message.new"))["message"]["id"] == sent["id"]
    assert (await bob_ws.request("ping", None))["type"] == "pong"


async def test_a_lost_registry_write_resets_its_node_and_its_clients_resync(
    nodes: Nodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    api1 = nodes.api(1)
    bob = await api1.register()
    leaving, staying = await api1.ws(bob), await api1.ws(bob)
    assert leaving.ready is not None
    # Its session, detached: the registry write saying so is lost.
    failed = fail_write(monkeypatch, nodes.hub(1).link, leaving.ready["session"].encode())
    leaving.close()
    await until(lambda: bool(failed), "its write failed")
    assert await staying.close_code() == CLOSE_RESET
    await until(lambda: nodes.hub(1).link.connected, "back on the bus")
    back = await api1.ws(bob, resume=await _resume(staying))
    assert back.ready is not None and back.ready["resume"] == "resync"


async def test_a_node_drops_its_own_messages_sent_under_its_former_id(nodes: Nodes) -> None:
    api0, api1 = nodes.api(0), nodes.api(1)
    alice, bob = await api0.register(), await api0.register()
    room = await api0.group(alice, bob)
    hub = nodes.hub(0)
    former = hub.node_id
    hub.link.reset("test")
    await until(lambda: hub.link.connected, "back on the bus")
    alice_ws = await api0.ws(alice)
    # In flight when the node started again: an event it published under its old id, and
    # delivered to its own sessions already then.
    data = {"message": {"room_id": room, "text": "echo"}}
    header = {"u": [alice.id], "t": "message.new", "o": None, "r": room}
    echo = frame(former, "ev", 1000, header, encode("message.new", data))
    await hub.link.redis.publish(ALL, echo)
    await api1.send(bob, room, "after")
    assert (await alice_ws.expect("message.new"))["message"]["text"] == "after"


# --- who starts again ---------------------------------------------------------------------


class _Transport:
    family = None

    def write_frame(self, frame: bytes) -> None:
        pass

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        pass


async def test_the_registry_refuses_a_buried_node(nodes: Nodes) -> None:
    registry = nodes.hub(0).registry
    with pytest.raises(NodeBuried):
        await registry.open("u1", f"{DEAD}.s1", 12)
    with pytest.raises(NodeBuried):
        await registry.presence(DEAD, "u1", True)
    redis = nodes.hub(0).link.redis
    keys = [f"{PREFIX}sess:u1", f"{PREFIX}on:u1", f"{PREFIX}nodeusers:{DEAD}", f"{PREFIX}online"]
    assert await redis.exists(*keys) == 0


async def test_a_buried_node_refuses_sockets_and_starts_again(nodes: Nodes) -> None:
    hub, api0 = nodes.hub(0), nodes.api(0)
    alice = await api0.register()
    former = hub.node_id
    await hub.link.redis.zrem(NODES, former)  # as another node does that buried it
    with pytest.raises(Unavailable):
        await hub.open(alice.id, _Transport())
    await until(lambda: hub.node_id != former, "a new id")
    await until(lambda: hub.link.connected, "back on the bus")
    assert (await api0.ws(alice)).ready is not None


async def test_a_buried_node_finds_out_at_its_heartbeat_and_its_id_stays_buried(
    nodes: Nodes,
) -> None:
    hub = nodes.hub(0)
    former = hub.node_id
    await hub.link.redis.zrem(NODES, former)
    await until(lambda: hub.node_id != former, "a new id")
    assert await hub.link.redis.zscore(NODES, former) is None  # not stamped back


async def test_a_socket_opened_across_a_reset_is_refused(
    nodes: Nodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = nodes.hub(0)
    alice = await nodes.api(0).register()
    register = hub.registry.open

    async def racing(*args: Any) -> Any:
        opened = await register(*args)
        hub.link.reset("test")  # meanwhile: the session id names the old id
        return opened

    monkeypatch.setattr(hub.registry, "open", racing)
    with pytest.raises(Unavailable):
        await hub.open(alice.id, _Transport())


# --- burying dead nodes -------------------------------------------------------------------


async def _died_with(redis: aioredis.Redis, users: list[User]) -> None:
    """Redis as a node leaves it that died holding a socket of each user, the only one."""
    now_ms = int((await redis.time())[0]) * 1000
    await redis.zadd(NODES, {DEAD: now_ms - 60_000})
    for user in users:
        await redis.sadd(f"{PREFIX}nodeusers:{DEAD}", user.id)
        await redis.sadd(f"{PREFIX}on:{user.id}", DEAD)
        await redis.sadd(f"{PREFIX}online", user.id)
        await redis.zadd(f"{PREFIX}sess:{user.id}", {f"{DEAD}.s": 0})


def _offline(user: User) -> Callable[[dict], bool]:
    return lambda f: f["data"] == {"user_id": user.id, "online": False}


async def test_a_burial_that_failed_half_way_is_finished_later(
    nodes: Nodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(link_module, "CLEANUP_LEASE_S", 1.0)
    api0 = nodes.api(0)
    bob, alice, carol = [await api0.register() for _ in range(3)]
    await api0.group(bob, alice, carol)
    bob_ws = await api0.ws(bob)
    redis = nodes.hub(0).link.redis
    carols = f"{PREFIX}on:{carol.id}"
    await _died_with(redis, [alice, carol])
    await redis.delete(carols)
    await redis.set(carols, "broken")  # her part of the cleanup fails, for now
    await bob_ws.expect("presence", _offline(alice), timeout=15)
    assert await redis.zscore(BURIED, DEAD) is not None  # left for another try
    await redis.delete(carols)
    await redis.sadd(carols, DEAD)
    await bob_ws.expect("presence", _offline(carol), timeout=15)
    await until(lambda: _all_gone(redis), "nothing left of the dead node")
    assert await redis.smembers(f"{PREFIX}online") == {bob.id.encode()}
    await bob_ws.drain()
    assert [f for f in bob_ws.frames if f["type"] == "presence"] == []  # each one once


async def _all_gone(redis: aioredis.Redis) -> bool:
    keys = [BURIED, f"{PREFIX}nodeusers:{DEAD}", f"{PREFIX}gone:{DEAD}"]
    return await redis.exists(*keys) == 0


async def test_one_failed_announcement_holds_up_no_other(nodes: Nodes) -> None:
    api0 = nodes.api(0)
    bob, alice, carol = [await api0.register() for _ in range(3)]
    await api0.group(bob, alice, carol)
    bob_ws = await api0.ws(bob)
    failed: list[str] = []  # the first user announced, on whichever node buries the dead one
    for index in range(3):
        hub = nodes.hub(index)
        announce = hub.on_offline[0]

        async def flaky(user_id: str, announce: Any = announce) -> None:
            if not failed:
                failed.append(user_id)
                raise RuntimeError("the database went away for a moment")
            await announce(user_id)

        hub.on_offline[0] = flaky
    await _died_with(nodes.hub(0).link.redis, [alice, carol])
    await until(lambda: bool(failed), "one announcement failed")
    other = carol if failed == [alice.id] else alice
    await bob_ws.expect("presence", _offline(other), timeout=15)


async def test_a_node_whose_leaving_failed_half_way_is_buried_by_another(
    nodes: Nodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(link_module, "CLEANUP_LEASE_S", 1.0)
    api0, api1 = nodes.api(0), nodes.api(1)
    alice, bob = await api0.register(), await api0.register()
    await api0.group(alice, bob)
    bob_ws = await api1.ws(bob)
    await api0.ws(alice)
    await bob_ws.expect("presence", lambda f: f["data"] == {"user_id": alice.id, "online": True})

    async def broken(_node_id: str) -> Any:
        raise RedisError("Redis went away for a moment")

    monkeypatch.setattr(nodes.hub(0).registry, "bury", broken)
    await nodes.servers.pop(0).stop()
    await bob_ws.expect("presence", _offline(alice), timeout=15)


async def test_a_node_that_redis_failed_buries_no_one_before_the_others_could_stamp(
    links: list[Link], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a stall of Redis every stamp may be stale: the nodes need a heartbeat to stamp
    again before any of them is taken for dead."""
    node, other = links
    victim = other.node_id
    other._tasks[2].cancel()  # its heartbeat: it stamps no more (so it is found dead later)
    failures = [1]  # the next heartbeat of `node` fails
    stamp = node._stamp

    async def failing_once() -> bool:
        if failures:
            failures.pop()
            await node.redis.zadd(NODES, {victim: 0})  # long stale, as after a stall
            raise RedisConnectionError("simulated: Redis stalled")
        return await stamp()

    monkeypatch.setattr(node, "_stamp", failing_once)
    beats = heartbeats(monkeypatch, node)

    async def buried() -> bool:
        return await node.redis.zscore(NODES, victim) is None

    await until(lambda: bool(beats), "a heartbeat after the failed one")
    assert not await buried()
    await until(buried, "buried, a few heartbeats later")


async def test_a_node_whose_own_stamp_is_late_does_not_bury_itself(
    links: list[Link], monkeypatch: pytest.MonkeyPatch
) -> None:
    node, other = links
    other._tasks[2].cancel()  # nobody else looks

    async def late() -> bool:  # it stalls between its heartbeats: its stamps land late
        return True

    monkeypatch.setattr(node, "_stamp", late)
    await node.redis.zadd(NODES, {node.node_id: 0})
    beats = heartbeats(monkeypatch, node)
    await until(lambda: len(beats) >= 2, "two heartbeats")
    assert await node.redis.zscore(NODES, node.node_id) == 0  # its next stamp counts
    assert await node.redis.zscore(BURIED, node.node_id) is None


# --- caches ---------------------------------------------------------------------------------


async def test_who_left_a_room_is_filtered_for_a_while_only(
    nodes: Nodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = nodes.hub(0)
    hub._note_members("r1", [], ["u1"])
    assert hub._still_members("r1", ["u1", "u2"]) == ["u2"]
    monkeypatch.setattr(hub_module, "LEFT_S", -1.0)  # as if that while went by
    assert hub._still_members("r1", ["u1", "u2"]) == ["u1", "u2"]
    hub._note_members("r2", ["u3"], [])  # a later change sweeps what is too old
    assert hub._left == {}
