"""Every client -> server WebSocket event type, with data generated from the schema table,
on one socket kept open across examples: each request gets exactly one reply carrying its
ref (an `error` with the schema's verdict when the table refuses the data), the socket stays
open, nothing is logged at ERROR, and refused requests leave the database as it was."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastsock.errors import InvalidRequest
from fastsock.realtime.socket import MAX_FRAME_BYTES
from fastsock.services.schemas import SCHEMAS
from tests.fuzz.checks import brief, check_reply, refusal
from tests.fuzz.routes import EVENT_TYPES, REFUSED_TYPES
from tests.fuzz.sockets import FuzzSocket, encode, same, size
from tests.fuzz.strategies import arbitrary_json, bodies, hostile_text
from tests.fuzz.world import World

UNKNOWN_TYPE = InvalidRequest("unknown event type", field="type")


@pytest.fixture(scope="module")
async def line(world: World) -> AsyncIterator[FuzzSocket]:
    line = FuzzSocket(world)
    yield line
    line.close()


def data_for(type_: str) -> st.SearchStrategy[dict]:
    if type_ in SCHEMAS:
        return bodies(type_)
    return st.dictionaries(hostile_text(max_size=12), arbitrary_json, max_size=3)


@pytest.mark.parametrize("type_", EVENT_TYPES)
@given(data=st.data())
async def test_events(world: World, line: FuzzSocket, type_: str, data: st.DataObject) -> None:
    body = world.resolve(data.draw(data_for(type_), label="data"))
    await exchange(world, line, type_, body, refusal(type_, body))


@pytest.mark.once  # refused by type, before any store call
@pytest.mark.parametrize("type_", REFUSED_TYPES)
@given(data=st.data())
async def test_refused_types(
    world: World, line: FuzzSocket, type_: str, data: st.DataObject
) -> None:
    body = world.resolve(data.draw(data_for(type_), label="data"))
    await exchange(world, line, type_, body, UNKNOWN_TYPE)


async def exchange(
    world: World, line: FuzzSocket, type_: str, body: Any, expected: InvalidRequest | None
) -> None:
    """Send one request; check its one reply (or, over the size limit, the refusal)."""
    ref = line.ref()
    frame = encode(type_, body, ref)
    what = f"{type_} {brief(body)}"
    await world.before()
    frames = await line.exchange(frame)
    if size(frame) > MAX_FRAME_BYTES:  # refused unread: no ref to echo
        refused = [f for f in frames if f["type"] == "error" and "ref" not in f]
        assert refused, f"{what}: {size(frame)} bytes not refused: {frames}"
        assert refused[0]["data"].get("code") == "too_large", f"{what}: {refused}"
        await check_reply(world, what, refused[0])
        return
    replies = [f for f in frames if same(f.get("ref"), ref)]
    assert len(replies) == 1, f"{what}: {len(replies)} replies with ref {ref!r}: {frames}"
    await check_reply(world, what, replies[0], expected)
