"""The properties every input must keep, over REST and the WebSocket: no 5xx (nor a dropped
connection), every refusal in the error shape, the schema's verdict where it applies, the
database unchanged by a refusal, and nothing logged at ERROR or with a traceback."""

from __future__ import annotations

from typing import Any

from fastsock.errors import InvalidRequest
from fastsock.services.schemas import validate
from tests.fuzz.world import World
from tests.support import Response


def brief(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def refusal(schema: str, data: Any) -> InvalidRequest | None:
    """The schema table's own verdict on `data`: its error (the server must refuse the same
    input as invalid_request), or None if the table accepts it (the service may still refuse
    it for other reasons)."""
    try:
        validate(schema, data)
    except InvalidRequest as exc:
        return exc
    return None


def check_error(what: str, error: Any, expected: InvalidRequest | None) -> None:
    """An error body: `{code, message, field?}` strings, never internal_error, and
    invalid_request when the schema refuses the input (the field may differ: the server may
    find another fault first, a lone surrogate in a key for instance)."""
    assert isinstance(error, dict), f"{what}: error is not an object: {error!r}"
    assert isinstance(error.get("code"), str) and isinstance(error.get("message"), str), (
        f"{what}: error without code and message: {error!r}"
    )
    assert error["code"] != "internal_error", f"{what}: server error {error!r}"
    if expected is not None:
        assert error["code"] == "invalid_request", (
            f"{what}: the schema refuses it ({expected.message}) but the server answered {error!r}"
        )


async def check_response(
    world: World, what: str, r: Response, expected: InvalidRequest | None = None
) -> None:
    """One REST answer. `expected`: the schema's refusal of the input, if any."""
    logged = world.logs.take()
    trace = "\n".join(logged)
    assert r.status != 599, f"{what}: connection dropped, no answer\n{trace}"
    assert r.status < 500, f"{what}: {r.status} {brief(r.body)}\n{trace}"
    if r.status >= 400:
        assert isinstance(r.body, dict) and set(r.body) == {"error"}, (
            f"{what}: {r.status} without the JSON error shape: {brief(r.body)}"
        )
        check_error(f"{what}: {r.status}", r.body["error"], expected)
        if expected is not None:
            assert r.status == 400, f"{what}: {r.status} for input the schema refuses"
        await world.assert_unchanged(what)
    else:
        assert expected is None, (
            f"{what}: {r.status} although the schema refuses it ({expected.message})"
        )
        world.accepted()
    assert not logged, f"{what} logged errors:\n{trace}"


async def check_reply(
    world: World, what: str, reply: dict[str, Any], expected: InvalidRequest | None = None
) -> None:
    """The one WebSocket frame answering a request. `expected`: the schema's refusal."""
    logged = world.logs.take()
    trace = "\n".join(logged)
    if reply["type"] == "error":
        check_error(f"{what}\n{trace}", reply.get("data"), expected)
        await world.assert_unchanged(what)
    else:
        assert expected is None, (
            f"{what}: answered {reply['type']} although the schema refuses it ({expected.message})"
        )
        world.accepted()
    assert not logged, f"{what} logged errors:\n{trace}"
