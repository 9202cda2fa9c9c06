"""Requests between nodes (fastsock/cluster/rpc.py) against a real redis-server: two Links
stand for two nodes; and a member's removal whose call eviction fails on the call leader."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

import fastsock.app  # noqa: F401  (defines every ApiError class: the table is complete)
from fastsock.cluster.calls import LEASE
from fastsock.cluster.link import Link
from fastsock.cluster.rpc import RemoteError, Rpc
from fastsock.errors import ApiError, RateLimited, Unavailable
from tests.cluster.conftest import Nodes

KINDS = sorted(ApiError.by_code.values(), key=lambda kind: kind.code)


@pytest.fixture
async def rpcs(redis_url: str) -> AsyncIterator[tuple[Rpc, Rpc]]:
    """(the asking node's, the answering node's)."""
    links = [Link(redis_url, node) for node in ("na", "nb")]
    for link in links:
        await link.start()
    yield Rpc(links[0]), Rpc(links[1])
    for link in links:
        await link.stop()


def sample(kind: type[ApiError]) -> ApiError:
    if issubclass(kind, RateLimited):
        return kind("slow down", retry_after=1.25)
    return kind(f"refused: {kind.code}", field="some_field")


def test_the_table_holds_the_errors_defined_outside_errors_py() -> None:
    assert {"unknown_worker", "unsupported_type", "unavailable"} <= set(ApiError.by_code)


@pytest.mark.parametrize("kind", KINDS, ids=[kind.code for kind in KINDS])
async def test_an_error_comes_back_as_its_own_class(
    rpcs: tuple[Rpc, Rpc], kind: type[ApiError]
) -> None:
    """So the caller's `except Unavailable:` (or any other) holds on every node."""
    asking, answering = rpcs
    raised = sample(kind)

    async def refuse(_name: str, _args: list[Any]) -> Any:
        raise raised

    answering.serve("s", refuse)
    with pytest.raises(ApiError) as caught:
        await asking.call("nb", "s", "n", [], timeout=10)
    error = caught.value
    assert type(error) is kind
    assert (error.status, error.to_dict()) == (raised.status, raised.to_dict())
    assert error.field == raised.field
    if isinstance(raised, RateLimited):
        assert isinstance(error, RateLimited) and error.retry_after == raised.retry_after


async def test_an_error_of_a_code_unknown_here_keeps_its_status_and_body(
    rpcs: tuple[Rpc, Rpc],
) -> None:
    """A node of another version may raise a code this one does not define."""
    asking, answering = rpcs

    class Newer(ApiError):
        status = 451  # no `code` of its own in the class: not in the table

        def __init__(self) -> None:
            super().__init__("not here", field="where")
            self.code = "newer_code"

    async def refuse(_name: str, _args: list[Any]) -> Any:
        raise Newer()

    answering.serve("s", refuse)
    with pytest.raises(RemoteError) as caught:
        await asking.call("nb", "s", "n", [], timeout=10)
    assert caught.value.status == 451
    assert caught.value.to_dict() == {"code": "newer_code", "message": "not here", "field": "where"}


async def test_a_request_out_of_time_is_not_sent(rpcs: tuple[Rpc, Rpc]) -> None:
    """Its caller answers `unavailable`: the other node must not act on it meanwhile."""
    asking, answering = rpcs
    handled: list[str] = []

    async def record(name: str, _args: list[Any]) -> Any:
        handled.append(name)
        return name

    answering.serve("s", record)
    for timeout in (0.0, -1.0):
        with pytest.raises(Unavailable):
            await asking.call("nb", "s", "late", [], timeout=timeout)
    # Requests travel in order on the node's channel, and are taken in order: one sent before
    # this one would have been handled by the time this one is answered.
    assert await asking.call("nb", "s", "in_time", [], timeout=10) == "in_time"
    assert handled == ["in_time"]


async def test_a_removal_stands_when_the_call_leader_cannot_evict(
    nodes: Nodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The leader raises `unavailable` while taking the removed member out of the room's call:
    the removal is done and announced, so it answers 204 on any node, as with one node."""
    leader_id = await nodes.hub(0).link.redis.get(LEASE)
    assert leader_id is not None
    ids = [nodes.hub(i).link.node_id for i in range(3)]
    leader = ids.index(leader_id.decode())
    asked = nodes.api((leader + 1) % 3)
    evictions: list[tuple[str, str]] = []

    async def cannot_evict(room_id: str, user_id: str) -> None:
        evictions.append((room_id, user_id))
        raise Unavailable("the call is moving to another worker")

    calls = nodes.servers[leader].ctx.services.calls
    monkeypatch.setitem(calls._requests, "member_removed", cannot_evict)
    alice, bob = await asked.register(), await asked.register()
    room = await asked.group(alice, bob)
    r = await asked.delete(f"/rooms/{room}/members/{bob.id}", alice)
    assert r.status == 204, r.body
    assert evictions == [(room, bob.id)]  # asked of the leader, on another node
    r = await asked.get(f"/rooms/{room}", bob)
    assert r.status == 403 and r.error_code == "not_a_member", r.body
