"""Which worker takes a group call (fastsock/calls/admission.py), the worker registry over a real
store (fastsock/calls/registry.py), and the FASTSOCK_SFU_* / group-call settings."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from fastsock.app import Server
from fastsock.calls.admission import (
    WorkerInfo,
    choose_worker,
    has_room,
    healthy,
    load,
    unavailable_reason,
)
from fastsock.calls.registry import ANSWERS, GONE, SILENT, WorkerRegistry, health
from fastsock.config import ConfigError, load_settings
from fastsock.store.ids import new_id
from tests.coturn import free_port

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
STALE_S = 6.0


def worker(
    id_: str,
    *,
    peers: int = 0,
    pending: int = 0,
    capacity: int = 10,
    cpu: float = 0.0,
    draining: bool = False,
    state: str = "up",
    age_s: float = 0.0,
) -> WorkerInfo:
    return WorkerInfo(
        id=id_,
        url=f"ws://{id_}/ws",
        health_url=None,
        capacity=capacity,
        peers=peers,
        pending=pending,
        cpu=cpu,
        draining=draining,
        state=state,
        heartbeat_at=NOW - timedelta(seconds=age_s),
    )


def choose(*workers: WorkerInfo, exclude: frozenset[str] = frozenset()) -> str | None:
    chosen = choose_worker(workers, now=NOW, stale_after_s=STALE_S, exclude=exclude)
    return None if chosen is None else chosen.id


# --- pure decisions ---------------------------------------------------------------------------


@pytest.mark.once
def test_the_least_loaded_healthy_worker_with_room_is_chosen() -> None:
    assert choose(worker("a", peers=5), worker("b", peers=2), worker("c", peers=9)) == "b"
    # Reserved admissions count like peers until the next heartbeat.
    assert choose(worker("a", peers=2), worker("b", peers=1, pending=3)) == "a"
    # Load is relative to capacity.
    assert choose(worker("a", peers=4, capacity=8), worker("b", peers=5, capacity=20)) == "b"
    # A worker short of CPU is loaded whatever its peer count.
    assert choose(worker("a", peers=1, cpu=0.95), worker("b", peers=6)) == "b"
    # Ties go to the lower id: every node picks the same worker.
    assert choose(worker("b", peers=3), worker("a", peers=3)) == "a"


@pytest.mark.once
def test_unhealthy_full_and_excluded_workers_are_never_chosen() -> None:
    assert choose(worker("a", draining=True), worker("b", peers=9)) == "b"
    assert choose(worker("a", state="lost"), worker("b", peers=9)) == "b"
    assert choose(worker("a", age_s=STALE_S + 1), worker("b", peers=9)) == "b"
    assert choose(worker("a", peers=10), worker("b", peers=9)) == "b"
    assert choose(worker("a", peers=8, pending=2), worker("b", peers=9)) == "b"
    assert choose(worker("a"), worker("b", peers=9), exclude=frozenset({"a"})) == "b"
    assert choose(worker("a", peers=10), worker("b", draining=True)) is None
    assert choose() is None


@pytest.mark.once
def test_health_room_and_load_rules() -> None:
    assert healthy(worker("a", age_s=STALE_S), NOW, STALE_S)
    assert not healthy(worker("a", age_s=STALE_S + 0.001), NOW, STALE_S)
    assert not healthy(worker("a", draining=True), NOW, STALE_S)
    assert has_room(worker("a", peers=9)) and not has_room(worker("a", peers=9, pending=1))
    assert load(worker("a", peers=3, pending=2)) == 0.5
    assert load(worker("a", peers=1, cpu=0.7)) == 0.7


@pytest.mark.once
def test_why_no_worker_was_found() -> None:
    def reason(*workers: WorkerInfo) -> str:
        return unavailable_reason(workers, now=NOW, stale_after_s=STALE_S)

    assert reason() == "no_worker"
    assert reason(worker("a", draining=True), worker("b", state="lost")) == "no_worker"
    assert reason(worker("a", age_s=60)) == "no_worker"
    assert reason(worker("a", peers=10), worker("b", draining=True)) == "worker_full"


# --- settings ---------------------------------------------------------------------------------

SECRET = "sfu-secret-" + "k" * 32


def settings_error(**env: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings({"FASTSOCK_" + k: v for k, v in env.items()})
    return str(info.value)


@pytest.mark.once
def test_group_call_settings_are_read() -> None:
    s = load_settings(
        {
            "FASTSOCK_SFU_SECRET": SECRET,
            "FASTSOCK_SFU_HEARTBEAT_S": "0.5",
            "FASTSOCK_SFU_MISSED_HEARTBEATS": "4",
            "FASTSOCK_SFU_TOKEN_TTL_S": "30",
            "FASTSOCK_CALL_MAX_PARTICIPANTS": "8",
            "FASTSOCK_CALL_EMPTY_GRACE_S": "2.5",
            "FASTSOCK_LIMIT_CALL_JOINS_PER_MIN": "12",
        }
    )
    assert (s.sfu_secret, s.sfu_heartbeat_s, s.sfu_missed_heartbeats) == (SECRET, 0.5, 4)
    assert (s.sfu_token_ttl_s, s.call_max_participants, s.call_empty_grace_s) == (30, 8, 2.5)
    assert s.limits.call_joins_per_min == 12
    defaults = load_settings({})
    assert defaults.sfu_secret is None and defaults.call_max_participants == 16
    assert (defaults.sfu_heartbeat_s, defaults.sfu_missed_heartbeats) == (2.0, 3)
    assert (defaults.sfu_token_ttl_s, defaults.call_empty_grace_s) == (60, 15.0)


@pytest.mark.once
def test_bad_group_call_settings_stop_start_up_naming_the_variable() -> None:
    assert "FASTSOCK_SFU_SECRET must be at least 32" in settings_error(SFU_SECRET="short")
    for padded in (" " + SECRET, SECRET + " ", '"' + SECRET, SECRET + "'"):
        assert "FASTSOCK_SFU_SECRET must not begin or end" in settings_error(SFU_SECRET=padded)
    assert "FASTSOCK_SFU_SECRET must not contain control" in settings_error(
        SFU_SECRET=SECRET + "\x01x"
    )
    assert "FASTSOCK_SFU_SECRET must differ from FASTSOCK_JWT_SECRET" in settings_error(
        SFU_SECRET=SECRET, JWT_SECRET=SECRET
    )
    for key, value in (
        ("SFU_HEARTBEAT_S", "0.1"),
        ("SFU_HEARTBEAT_S", "31"),
        ("SFU_MISSED_HEARTBEATS", "1"),
        ("SFU_MISSED_HEARTBEATS", "2.5"),
        ("SFU_TOKEN_TTL_S", "61"),
        ("SFU_TOKEN_TTL_S", "4"),
        ("CALL_MAX_PARTICIPANTS", "1"),
        ("CALL_MAX_PARTICIPANTS", "65"),
        ("CALL_EMPTY_GRACE_S", "0"),
        ("LIMIT_CALL_JOINS_PER_MIN", "-1"),
    ):
        assert settings_error(**{key: value}).startswith("FASTSOCK_" + key + " must"), key


# --- the registry, over a real store ----------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


def registration(capacity: int = 4) -> dict:
    return {"url": "ws://127.0.0.1:1/ws", "health_url": None, "capacity": capacity, "version": "1"}


def load_report(peers: int, draining: bool = False) -> dict:
    return {
        "capacity": 4,
        "peers": peers,
        "tracks": 0,
        "rooms": 0,
        "cpu": 0.1,
        "draining": draining,
    }


async def test_every_node_sees_the_same_workers(server: Server) -> None:
    """Two nodes' registries over one store: a worker registered through one is chosen by
    the other, and admissions reserved by either count until the worker's next heartbeat."""
    clock = Clock()
    node_a = WorkerRegistry(server.store, server.settings, clock)
    node_b = WorkerRegistry(server.store, server.settings, clock)
    first, second = new_id(), new_id()
    await node_a.register(first, registration())
    await node_a.register(second, registration())
    await node_a.heartbeat(second, load_report(peers=1))
    assert (await node_b.choose())[0].id == first
    await node_b.reserve(first)
    await node_a.reserve(first)  # now 2 on their way to `first`, 1 peer on `second`
    assert (await node_b.choose())[0].id == second
    await node_b.heartbeat(first, load_report(peers=0))  # the heartbeat counts them itself
    assert (await node_a.choose())[0].id == first
    await node_a.heartbeat(first, load_report(peers=4))
    await node_a.heartbeat(second, load_report(peers=2, draining=True))
    assert await node_b.choose() == (None, "worker_full")


async def test_a_silent_worker_is_lost_by_one_node_only(server: Server) -> None:
    clock = Clock()
    nodes = [WorkerRegistry(server.store, server.settings, clock) for _ in range(2)]
    silent, chatty = new_id(), new_id()
    for worker_id in (silent, chatty):
        await nodes[0].register(worker_id, registration())
    stale_s = server.settings.sfu_heartbeat_s * server.settings.sfu_missed_heartbeats
    clock.now += timedelta(seconds=stale_s / 2)
    await nodes[0].heartbeat(chatty, load_report(peers=0))
    assert await nodes[1].sweep() == []
    clock.now += timedelta(seconds=stale_s / 2 + 1)
    lost = [await node.sweep() for node in nodes]
    assert sorted(lost, key=len) == [[], [silent]]
    assert await nodes[0].heartbeat(silent, load_report(peers=0)) is None  # must register
    assert (await nodes[1].up(chatty)) is not None and await nodes[1].up(silent) is None
    # A failed probe marks a worker lost however recent its heartbeat: once.
    assert [await node.mark_lost(chatty) for node in nodes] == [True, False]
    assert await nodes[0].choose() == (None, "no_worker")


@pytest.mark.once
async def test_commands_go_out_once_and_health_probes_answer(server: Server) -> None:
    registry = WorkerRegistry(server.store, server.settings, Clock())
    worker_id, call_id, user_id = new_id(), new_id(), new_id()
    registry.evict(worker_id, call_id, user_id)
    registry.evict(worker_id, call_id, user_id)
    registry.end(worker_id, call_id)
    assert registry.commands_for(worker_id) == {
        "evict": [{"call_id": call_id, "user_id": user_id}],
        "end": [call_id],
    }
    assert registry.commands_for(worker_id) == {"evict": [], "end": []}
    # An evict waiting for a user is dropped when they are admitted to the call again.
    other = new_id()
    for user in (user_id, other):
        registry.evict(worker_id, call_id, user)
    assert registry.evicting(worker_id, call_id, user_id)
    registry.forgive(call_id, user_id)
    assert not registry.evicting(worker_id, call_id, user_id)
    assert registry.commands_for(worker_id)["evict"] == [{"call_id": call_id, "user_id": other}]
    # /healthz of FastSock itself answers 200 with a JSON object; a 404 does not; a closed port
    # is nobody there at all.
    base = f"http://127.0.0.1:{server.port}"
    closed = f"http://127.0.0.1:{free_port()}/healthz"
    assert await health(base + "/healthz", 5.0) == {"status": "ok"}
    assert await health(base + "/nowhere", 5.0) is None
    with pytest.raises(ConnectionRefusedError):
        await health(closed, 5.0)
    # A probe: not this worker answering is as good as nobody; no health answer is silence.
    for url, answer in ((base + "/healthz", GONE), (closed, GONE), (base + "/nowhere", SILENT)):
        assert await registry.probe(replace(worker(worker_id), health_url=url)) == answer
    assert await registry.probe(worker(worker_id)) == ANSWERS  # no URL: heartbeats decide
