"""The member cache (services/members.py): hits, invalidation, the race between a load and an
invalidation, the memory bound; and the metrics' cached labelled children."""

from __future__ import annotations

import asyncio

import pytest

from fastsock.metrics import Metrics
from fastsock.services.members import ROOM_SLOTS, MemberCache

pytestmark = pytest.mark.once


class Store:
    """Members per room, counting reads; `gate` holds reads until it is set."""

    def __init__(self) -> None:
        self.rooms: dict[str, dict[str, str]] = {}
        self.reads: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def load(self, room_id: str) -> dict[str, str]:
        self.reads.append(room_id)
        answer = dict(self.rooms.get(room_id, {}))  # what the database holds when asked
        await self.gate.wait()
        return answer


async def test_a_room_is_read_once_then_served_from_memory() -> None:
    store = Store()
    store.rooms["r"] = {"alice": "admin", "bob": "member"}
    cache = MemberCache(store.load)
    assert dict(await cache.of("r")) == {"alice": "admin", "bob": "member"}
    assert list(await cache.of("r")) == ["alice", "bob"]  # the store's order
    assert store.reads == ["r"]
    with pytest.raises(TypeError):
        (await cache.of("r"))["mallory"] = "admin"  # type: ignore[index]


async def test_invalidation_makes_the_next_call_read_again() -> None:
    store = Store()
    store.rooms["r"] = {"alice": "admin", "bob": "member"}
    cache = MemberCache(store.load)
    await cache.of("r")
    del store.rooms["r"]["bob"]
    cache.invalidate("r")
    assert dict(await cache.of("r")) == {"alice": "admin"}
    assert store.reads == ["r", "r"]


async def test_a_read_that_started_before_an_invalidation_is_not_kept() -> None:
    store = Store()
    store.rooms["r"] = {"alice": "admin", "bob": "member"}
    cache = MemberCache(store.load)
    store.gate.clear()
    stale = asyncio.ensure_future(cache.of("r"))
    while not store.reads:  # the read has begun, with bob still in the room
        await asyncio.sleep(0)
    del store.rooms["r"]["bob"]
    cache.invalidate("r")  # bob was removed while the read was in flight
    store.gate.set()
    assert "bob" in await stale  # its caller asked before the change: that answer stands
    assert dict(await cache.of("r")) == {"alice": "admin"}  # but it was not stored
    assert store.reads == ["r", "r"]


async def test_concurrent_reads_of_one_generation_are_kept_once() -> None:
    store = Store()
    store.rooms["r"] = {"alice": "admin"}
    cache = MemberCache(store.load)
    store.gate.clear()
    reads = [asyncio.ensure_future(cache.of("r")) for _ in range(3)]
    while len(store.reads) < 3:
        await asyncio.sleep(0)
    store.gate.set()
    await asyncio.gather(*reads)
    assert len(cache) == 1 and cache.slots == 1 + ROOM_SLOTS
    await cache.of("r")
    assert len(store.reads) == 3


async def test_a_room_without_members_is_not_kept() -> None:
    store = Store()
    cache = MemberCache(store.load)
    assert dict(await cache.of("made-up")) == {}
    assert dict(await cache.of("made-up")) == {}
    assert store.reads == ["made-up", "made-up"] and len(cache) == 0


async def test_the_least_recently_used_rooms_go_first_beyond_the_bound() -> None:
    store = Store()
    for name in "abcd":
        store.rooms[name] = {f"{name}{i}": "member" for i in range(8)}  # 10 slots each
    cache = MemberCache(store.load, max_slots=30)
    for name in "abc":
        await cache.of(name)
    await cache.of("a")  # a is now the most recently used
    await cache.of("d")  # over 30 slots: b, the least recently used, goes
    assert cache.slots <= 30 and len(cache) == 3
    store.reads.clear()
    for name in "acd":
        await cache.of(name)
    assert store.reads == []
    await cache.of("b")
    assert store.reads == ["b"]


async def test_clear_forgets_every_room_and_the_reads_in_flight() -> None:
    store = Store()
    store.rooms = {"a": {"alice": "admin"}, "b": {"bob": "admin"}}
    cache = MemberCache(store.load)
    await cache.of("a")
    store.gate.clear()
    in_flight = asyncio.ensure_future(cache.of("b"))
    while "b" not in store.reads:
        await asyncio.sleep(0)
    cache.clear()
    store.gate.set()
    await in_flight
    assert len(cache) == 0 and cache.slots == 0


def test_metrics_count_by_label_through_cached_children() -> None:
    metrics = Metrics()
    metrics.delivered("message.new", 200)
    metrics.delivered("message.new")
    metrics.delivered("presence", 3)
    metrics.observe_db("messages.insert", 0.002)
    metrics.observe_db("messages.insert", 0.004)
    metrics.observe_db("rooms.next_version", 0.001)
    text = metrics.render().decode()
    assert 'fastsock_events_delivered_total{type="message.new"} 201.0' in text
    assert 'fastsock_events_delivered_total{type="presence"} 3.0' in text
    assert 'fastsock_db_operation_seconds_count{command="messages.insert"} 2.0' in text
    assert 'fastsock_db_operation_seconds_count{command="rooms.next_version"} 1.0' in text
