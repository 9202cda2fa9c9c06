"""Ids and emoji in REST paths, the headers every request carries (the access token, a
request id, a download's Range) and uploads' names and types: no 5xx, the error shape, and
refused input leaves the database as it was."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.checks import brief, check_response
from tests.fuzz.routes import NO_INPUT, PATH_ROUTES, PathRoute, encoded
from tests.fuzz.strategies import (
    EMOJI,
    bad_ids,
    forged_tokens,
    hostile_text,
    object_ids,
    tokens,
)
from tests.fuzz.world import Named, World, png_bytes

# Segments as they go on the wire: encoded values, or raw text that decodes badly.
RAW_SEGMENTS = st.sampled_from(["%", "%zz", "%00", "%ff", "%2F", "..", ".", "%2e%2e", "a" * 5000])
SEGMENTS = {
    "id": st.one_of(object_ids, bad_ids.map(encoded), RAW_SEGMENTS),
    # Members to remove: anyone but alice, who must stay in her rooms for the other examples.
    "other": st.one_of(object_ids.filter(lambda v: v != Named("alice")), bad_ids.map(encoded)),
    "emoji": st.one_of(st.sampled_from(EMOJI), hostile_text(1)).map(encoded) | RAW_SEGMENTS,
}


@pytest.mark.parametrize("route", PATH_ROUTES, ids=str)
@given(data=st.data())
async def test_path_segments(world: World, route: PathRoute, data: st.DataObject) -> None:
    segments = [
        data.draw(SEGMENTS[kind], label=f"segment {i}") for i, kind in enumerate(route.segments)
    ]
    path = route.path.format(*(world.resolve(s) for s in segments))
    body = None if route.body is None else json.dumps(world.resolve(route.body)).encode()
    await world.before()
    r = await world.api.request(route.method, path, raw=body, token=world.alice.access_token)
    await check_response(world, f"{route.method} {brief(path)}", r)


def header_safe(value: str) -> str:
    """What a header may hold (RFC 9110 field values: latin-1 without control characters
    other than tab; tornado answers anything else with a bare 400 before the app sees it)."""
    latin = value.encode("latin-1", "replace").decode("latin-1")
    return "".join(c for c in latin if c == "\t" or (c >= " " and c != "\x7f"))


SCHEMES = st.sampled_from(["Bearer ", "bearer ", "Bearer  ", "Basic ", "", "Bearer\t"])
AUTHORIZATIONS = st.one_of(
    forged_tokens().map(lambda t: ("Bearer ", t)),  # mostly: they pass the signature check
    st.tuples(SCHEMES, tokens),
)


@pytest.mark.parametrize("path", [*NO_INPUT, "/rooms/{group}", "/history/room/{group}"])
@given(authorization=AUTHORIZATIONS, request_id=hostile_text())
async def test_access_tokens(
    world: World, path: str, authorization: tuple[str, object], request_id: str
) -> None:
    """Any Authorization header, above all JWTs signed with the server's own secret whose
    claims are of any shape (a user id that is not an id, an expiry that is not a time)."""
    scheme, token = authorization
    header = header_safe(scheme + str(world.resolve(token)))
    headers = {"Authorization": header, "X-Request-Id": header_safe(request_id)}
    await world.before()
    r = await world.api.request("GET", path.format_map(world.values), headers=headers)
    await check_response(world, f"GET {path} Authorization: {brief(header)}", r)


RANGE_NUMBERS = st.one_of(
    st.just(""),
    st.integers(0, 10**6).map(str),
    st.integers(4_000, 20_000).map(lambda n: "9" * n),  # more digits than int() takes
    st.sampled_from(["-1", "+1", "1.5", "0x10", "١", " 1"]),
)
RANGES = st.one_of(
    st.tuples(RANGE_NUMBERS, RANGE_NUMBERS).map(lambda p: f"bytes={p[0]}-{p[1]}"),
    st.tuples(RANGE_NUMBERS, RANGE_NUMBERS).map(lambda p: f"bytes={p[0]}-{p[1]},0-1"),
    hostile_text().map(lambda s: "bytes=" + s),
    hostile_text(),
)


@pytest.mark.once  # the stored file's bytes: the same whatever the database
@pytest.mark.parametrize("path", ["/uploads/{upload}", "/uploads/{avatar}/thumbnail"])
@given(range_=RANGES)
async def test_download_ranges(world: World, path: str, range_: str) -> None:
    header = header_safe(range_)
    r = await world.api.request(
        "GET",
        path.format_map(world.values),
        token=world.alice.access_token,
        headers={"Range": header},
    )
    await check_response(world, f"GET {path} Range: {brief(header)}", r)


CONTENTS = st.one_of(
    st.sampled_from([b"", b"plain words\n", png_bytes(), png_bytes()[:20], b"<svg/>", b"%PDF-"]),
    st.binary(max_size=64),
)
TYPES = st.one_of(
    st.sampled_from(["text/plain", "image/png", "application/octet-stream", "", "image/svg+xml"]),
    hostile_text(),
)


@given(content=CONTENTS, content_type=TYPES, filename=hostile_text())
async def test_uploads(world: World, content: bytes, content_type: str, filename: str) -> None:
    """Raw uploads with any declared type and name (multipart framing has its own cases in
    tests/handlers/test_uploads.py)."""
    await world.before()
    r = await world.api.request(
        "POST",
        f"/uploads?filename={encoded(filename)}",
        raw=content,
        token=world.alice.access_token,
        headers={"Content-Type": header_safe(content_type)},
    )
    what = f"POST /uploads {brief(content[:20])} as {content_type!r} named {filename!r}"
    await check_response(world, what, r)
