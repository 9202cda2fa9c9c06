"""Coalesced `unread` events (services/unread.py) against a fake store and sink: a read racing a
flush, members removed meanwhile, failures, shutdown. The server-level behaviour (one event per
burst, exact counts) is in tests/realtime/test_unread_event.py."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import pytest

from fastsock.config import ConfigError, load_settings
from fastsock.services.events import EventSink
from fastsock.services.members import MemberCache
from fastsock.services.unread import UnreadCounts
from fastsock.store import Store

pytestmark = pytest.mark.once

ROOM = "r1"
LONG = 3600.0  # no window ends within a test: flushes are run by the test


class Messages:
    """Unread counts as the database holds them; `held`, when set, keeps the next query
    (after it read its answer) until the event is set, as a slow store would."""

    def __init__(self) -> None:
        self.counts: dict[str, tuple[int, int]] = {}
        self.held: asyncio.Event | None = None
        self.queried = asyncio.Event()
        self.fail = False

    async def unread_counts(self, room_id: str, user_ids: list[str]) -> dict[str, Any]:
        if self.fail:
            raise RuntimeError("store down")
        answer = {u: self.counts.get(u, (0, 0)) for u in user_ids}
        self.queried.set()
        held, self.held = self.held, None
        if held is not None:
            await held.wait()
        return answer


class Sink:
    def __init__(self) -> None:
        self.told: list[tuple[str, tuple[int, int]]] = []

    async def publish(self, user_ids: Any, type_: str, data: dict[str, Any], **kw: Any) -> None:
        assert type_ == "unread" and kw == {"room_id": ROOM}
        for user_id in user_ids:
            self.told.append((user_id, (data["unread_count"], data["mention_count"])))


class World:
    def __init__(self, members: dict[str, str]) -> None:
        self.members = members
        self.messages = Messages()
        self.sink = Sink()
        store = cast(Store, type("FakeStore", (), {"messages": self.messages})())
        cache = MemberCache(self._load)
        self.unread = UnreadCounts(store, cast(EventSink, self.sink), cache, LONG)
        self.cache = cache

    async def _load(self, room_id: str) -> dict[str, str]:
        return dict(self.members)


def _world() -> World:
    return World({"alice": "admin", "bob": "member", "carol": "member"})


async def test_messages_in_a_window_are_told_once_with_the_counts_at_flush_time() -> None:
    w = _world()
    w.unread.message_stored(ROOM, ["bob", "carol"])  # alice's message
    w.unread.message_stored(ROOM, ["alice", "carol"])  # bob's answer
    w.messages.counts = {"alice": (1, 0), "bob": (1, 0), "carol": (2, 0)}
    assert w.sink.told == []
    await w.unread.flush_all()
    assert sorted(w.sink.told) == [("alice", (1, 0)), ("bob", (1, 0)), ("carol", (2, 0))]
    await w.unread.flush_all()  # nothing pending any more
    assert len(w.sink.told) == 3


async def test_a_flush_read_before_a_read_is_never_published_after_it() -> None:
    w = _world()
    w.unread.message_stored(ROOM, ["bob"])
    w.messages.counts = {"bob": (3, 0)}
    w.messages.held = slow = asyncio.Event()
    flush = asyncio.create_task(w.unread.flush_all())
    await w.messages.queried.wait()  # the flush read bob's 3 and is slow to answer
    w.messages.counts = {"bob": (0, 0)}  # bob reads everything: his pointer moved
    reader = asyncio.create_task(w.unread.reader(ROOM, "bob", tell=True))
    for _ in range(20):  # the reader runs as far as it can (no I/O: steps, not time)
        await asyncio.sleep(0)
    slow.set()
    assert await reader == (0, 0)
    await flush
    # Whatever was sent meanwhile, the last count bob hears is the one after his read.
    assert w.sink.told[-1] == ("bob", (0, 0))


async def test_a_reader_is_dropped_from_the_pending_flush() -> None:
    w = _world()
    w.unread.message_stored(ROOM, ["bob", "carol"])
    w.messages.counts = {"bob": (0, 0), "carol": (1, 0)}
    assert await w.unread.reader(ROOM, "bob", tell=True) == (0, 0)
    await w.unread.flush_all()
    assert w.sink.told == [("bob", (0, 0)), ("carol", (1, 0))]


async def test_members_who_left_before_the_flush_are_not_told() -> None:
    w = _world()
    w.unread.message_stored(ROOM, ["bob", "carol"])
    del w.members["carol"]
    w.cache.invalidate(ROOM)
    await w.unread.flush_all()
    assert w.sink.told == [("bob", (0, 0))]


async def test_a_failing_flush_is_logged_and_later_flushes_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    w = _world()
    w.unread.message_stored(ROOM, ["bob"])
    w.messages.fail = True
    with caplog.at_level(logging.ERROR, "fastsock.unread"):
        await w.unread.flush_all()
    assert [r.message for r in caplog.records] == ["unread_flush_failed"]
    w.messages.fail = False
    w.unread.message_stored(ROOM, ["bob"])
    await w.unread.flush_all()
    assert w.sink.told == [("bob", (0, 0))]


async def test_the_window_ends_in_one_flush() -> None:
    w = _world()
    w.unread.window_s = 0.01
    flushed = asyncio.Event()
    publish = w.sink.publish

    async def tell(*args: Any, **kw: Any) -> None:
        await publish(*args, **kw)
        flushed.set()

    w.sink.publish = tell  # type: ignore[method-assign]
    w.unread.message_stored(ROOM, ["bob"])
    w.unread.message_stored(ROOM, ["bob"])
    await asyncio.wait_for(flushed.wait(), 10)
    await w.unread.close()
    assert w.sink.told == [("bob", (0, 0))]


async def test_closing_tells_what_is_pending_and_ignores_later_messages() -> None:
    w = _world()
    w.unread.message_stored(ROOM, ["bob"])
    await w.unread.close()
    assert w.sink.told == [("bob", (0, 0))]
    w.unread.message_stored(ROOM, ["carol"])
    await w.unread.flush_all()
    assert w.sink.told == [("bob", (0, 0))]


@pytest.mark.parametrize("raw", ["0", "-1", "nan", "5.5", "soon"])
def test_the_window_setting_is_positive_and_at_most_five_seconds(raw: str) -> None:
    with pytest.raises(ConfigError, match="FASTSOCK_UNREAD_WINDOW_S"):
        load_settings({"FASTSOCK_UNREAD_WINDOW_S": raw})


def test_the_window_setting_defaults_to_150_ms() -> None:
    assert load_settings({}).unread_window_s == 0.15
    assert load_settings({"FASTSOCK_UNREAD_WINDOW_S": "0.5"}).unread_window_s == 0.5
