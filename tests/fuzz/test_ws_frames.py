"""WebSocket frames themselves: anything that is not a well-formed `{"type", "data"?, "ref"?}`
(not JSON, not an object, nested thousands deep, numbers thousands of digits long, bad refs,
unknown keys, binary, oversize) gets an `error` with the frame's ref when it had a valid one,
and the socket stays open; a first frame that is not a valid auth closes it with 4401."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tornado.websocket import websocket_connect

from fastsock.realtime.socket import CLOSE_AUTH, CLOSE_TOO_BIG, MAX_FRAME_BYTES, REF_MAX
from tests.fuzz.checks import check_reply, refusal
from tests.fuzz.routes import EVENT_TYPES
from tests.fuzz.sockets import REPLY_TIMEOUT, FuzzSocket, brief_frame, encode, same, size
from tests.fuzz.strategies import ABSENT, arbitrary_json, bodies, hostile_text, raw_json_texts
from tests.fuzz.world import World
from tests.support import Socket

pytestmark = pytest.mark.once  # no frame here reaches the store


@pytest.fixture(scope="module")
async def line(world: World) -> AsyncIterator[FuzzSocket]:
    line = FuzzSocket(world)
    yield line
    line.close()


REF_SLOT = "<ref>"  # where a frame's unique valid ref goes, once drawn
refs = st.one_of(
    st.just(REF_SLOT),
    st.just(ABSENT),
    st.none(),  # null: no ref
    st.text(min_size=REF_MAX + 1, max_size=REF_MAX + 20),
    st.sampled_from([2**53, -(2**53), 1.0, True, False, [], {}, "1e400"]),
    st.sampled_from([10**4000]),
)
types = st.one_of(
    st.just("ping"),
    hostile_text().filter(lambda t: t not in EVENT_TYPES),  # unknown types
    arbitrary_json,
    st.just(ABSENT),
)
extra_keys = st.dictionaries(
    hostile_text(max_size=8).filter(lambda k: k not in ("type", "data", "ref")),
    arbitrary_json,
    max_size=2,
)
objects = st.fixed_dictionaries(
    {"type": types, "data": st.one_of(st.just(ABSENT), arbitrary_json), "ref": refs}
).map(lambda d: {k: v for k, v in d.items() if v is not ABSENT})
envelopes = st.one_of(
    objects.map(lambda d: json.dumps(d)),
    st.tuples(objects, extra_keys).map(lambda p: json.dumps(p[0] | p[1])),
    raw_json_texts('{"type": "ping", "data": %s, "ref": "<ref>"}'),
    raw_json_texts('{"type": "ping", "ref": %s}'),
    hostile_text(),  # not JSON
    st.binary(max_size=40),
    st.integers(MAX_FRAME_BYTES - 20, MAX_FRAME_BYTES + 100).map(lambda n: " " * n + "{}"),
)


def wire(frame: str | bytes) -> str | bytes:
    """Text frames must be UTF-8: text with lone surrogates goes as (invalid) binary."""
    if isinstance(frame, str):
        try:
            frame.encode()
        except UnicodeEncodeError:
            return frame.encode("utf-8", "surrogatepass")
    return frame


def echoable_ref(frame: str | bytes) -> Any:
    """The ref an error must echo: a valid one in a frame that is a JSON object (None if the
    frame has none, or is not an object the server can read)."""
    if size(frame) > MAX_FRAME_BYTES:
        return None  # refused before it is read
    try:
        parsed = json.loads(frame)
    except (ValueError, RecursionError):
        return None
    if not isinstance(parsed, dict):
        return None
    ref = parsed.get("ref")
    valid = (isinstance(ref, str) and len(ref) <= REF_MAX) or (
        type(ref) is int and abs(ref) < 2**53
    )
    return ref if valid else None


def is_good_ping(frame: str | bytes) -> bool:
    try:
        parsed = json.loads(frame)
    except (ValueError, RecursionError):
        return False
    return (
        isinstance(parsed, dict)
        and set(parsed) <= {"type", "data", "ref"}
        and parsed.get("type") == "ping"
        and isinstance(parsed.get("data", {}), dict)
        and refusal("ping", parsed.get("data", {})) is None
        and echoable_ref(frame) == parsed.get("ref")
    )


@given(frame=envelopes)
async def test_envelopes(world: World, line: FuzzSocket, frame: str | bytes) -> None:
    if isinstance(frame, str) and REF_SLOT in frame:
        frame = frame.replace(REF_SLOT, str(line.ref()))
    frame = wire(frame)
    what = f"frame {brief_frame(frame)}"
    frames = await line.exchange(frame)
    ref, good = echoable_ref(frame), is_good_ping(frame)
    if ref is not None:
        replies = [f for f in frames if same(f.get("ref"), ref)]
        assert len(replies) == 1, f"{what}: {len(replies)} replies with ref {ref!r}: {frames}"
        reply = replies[0]
    else:
        unmatched = [f for f in frames if f["type"] in ("error", "pong") and "ref" not in f]
        assert unmatched, f"{what}: no answer without a ref: {frames}"
        reply = unmatched[0]
    assert reply["type"] == ("pong" if good else "error"), f"{what}: answered {reply}"
    await check_reply(world, what, reply)


first_frames = st.one_of(
    st.tuples(st.just("auth"), bodies("auth")),
    st.tuples(st.sampled_from([*EVENT_TYPES, "AUTH"]), bodies("auth")),
    envelopes,
)


@given(first=first_frames)
async def test_first_frames(world: World, first: tuple[str, Any] | str | bytes) -> None:
    """The first frame: `ready` (then the socket works) or closed with 4401 (1009 for an
    oversize frame), whatever it holds; alice's own token in a valid `auth` gets ready."""
    valid_auth = False
    if isinstance(first, tuple):
        type_, data = first[0], world.resolve(first[1])
        frame: str | bytes = encode(type_, data, None)
        valid_auth = (
            type_ == "auth"
            and refusal("auth", data) is None
            and data["token"] == world.alice.access_token
        )
    else:
        frame = wire(first.replace(REF_SLOT, "r0") if isinstance(first, str) else first)
    what = f"first frame {brief_frame(frame)}"
    sock = Socket(await websocket_connect(f"ws://127.0.0.1:{world.server.port}/ws"))
    try:
        await sock.send_raw(frame)
        try:
            await sock.expect("ready", timeout=REPLY_TIMEOUT)
        except AssertionError:
            assert sock.closed, f"{what}: neither ready nor closed: {sock.frames}"
            code = sock.conn.close_code
            wanted = CLOSE_TOO_BIG if size(frame) > MAX_FRAME_BYTES else CLOSE_AUTH
            trace = "\n".join(world.logs.take())
            assert code == wanted, f"{what}: closed with {code} {sock.conn.close_reason}\n{trace}"
            assert not valid_auth, f"{what}: alice's valid auth was refused"
        else:
            await sock.send("ping", ref="alive")
            await sock.expect("pong", lambda f: f.get("ref") == "alive", REPLY_TIMEOUT)
    finally:
        sock.close()
    world.assert_quiet_log(what)
