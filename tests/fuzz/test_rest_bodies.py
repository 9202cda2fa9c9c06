"""Every REST body and query, generated from the schema table: no 5xx, the error shape, the
schema's verdict (a body the table refuses gets 400 invalid_request), and refused input
leaves the database as it was."""

from __future__ import annotations

import itertools
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastsock.calls.sfu_tokens import issue_control
from fastsock.handlers.base import MAX_JSON_BODY
from fastsock.services.schemas import SCHEMAS
from tests.conftest import SFU_SECRET
from tests.fuzz.checks import brief, check_response, refusal
from tests.fuzz.routes import BODY_ROUTES, QUERY_ROUTES, BodyRoute, QueryRoute, encoded
from tests.fuzz.schema_fields import spec_of, specs
from tests.fuzz.strategies import allowed_text, bodies, raw_json_texts, valid
from tests.fuzz.world import Named, World

JSON = {"Content-Type": "application/json"}
USERNAMES = itertools.count()
REPLIES = itertools.count()
# Every kind of message an id may point at, from `group`: alice's, bob's, one of another room
# (`dm`), a deleted one, a history line, and a world id that is no message (`bob`).
MESSAGES = ("mine", "theirs", "in_dm", "gone", "line", "bob")


def token_for(world: World, route: BodyRoute) -> str | None:
    if route.auth == "worker":  # a fresh one each time (they last 30 s)
        return issue_control(SFU_SECRET, world.values["worker"], time.time())
    return world.alice.access_token if route.auth else None


@pytest.mark.parametrize("route", BODY_ROUTES, ids=str)
@given(data=st.data())
async def test_json_bodies(world: World, route: BodyRoute, data: st.DataObject) -> None:
    body = world.resolve(data.draw(bodies(route.schema), label="body"))
    payload = json.dumps(body).encode()  # lone surrogates go as \ud800 escapes
    expected = refusal(route.schema, route.data(world, body))
    await world.before()
    r = await world.api.request(
        route.method, route.url(world), raw=payload, token=token_for(world, route), headers=JSON
    )
    what = f"{route} {brief(body)}"
    if len(payload) > MAX_JSON_BODY:  # refused before anything reads it
        assert r.status == 413, f"{what}: {r.status} for a {len(payload)}-byte body"
        expected = None
    await check_response(world, what, r, expected)


@pytest.mark.once  # refused while parsing, before any store call
@pytest.mark.parametrize("route", BODY_ROUTES, ids=str)
@given(data=st.data())
async def test_raw_bodies(world: World, route: BodyRoute, data: st.DataObject) -> None:
    """Nesting thousands deep, numbers thousands of digits long, bytes that are not UTF-8,
    and JSON that is not an object, in a field of the schema or as the whole body."""
    name = data.draw(st.sampled_from([s.name for s in specs(route.schema)]), label="field")
    raw = data.draw(raw_json_texts(f"{{{json.dumps(name)}: %s}}"), label="raw")
    payload = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
    await world.before()
    r = await world.api.request(
        route.method, route.url(world), raw=payload, token=token_for(world, route), headers=JSON
    )
    await check_response(world, f"{route} raw {brief(raw)}", r)


def query_text(value: object) -> str:
    """A drawn field value as a query argument: strings as they are, anything else as its
    JSON text."""
    return value if isinstance(value, str) else json.dumps(value)


@pytest.mark.parametrize("route", QUERY_ROUTES, ids=str)
@given(data=st.data())
async def test_queries(world: World, route: QueryRoute, data: st.DataObject) -> None:
    """Query arguments from the schema like bodies (unknown ones are ignored), each as its
    text, or as JSON text when it is not a string."""
    args = {
        k: query_text(v)
        for k, v in world.resolve(data.draw(bodies(route.schema), label="query")).items()
    }
    query = "&".join(f"{encoded(k)}={encoded(v)}" for k, v in args.items())
    url = route.path.format_map(world.values) + "?" + query
    await world.before()
    r = await world.api.request("GET", url, token=world.alice.access_token)
    # No schema verdict here: tornado strips query arguments and replaces control
    # characters in them before the service sees them.
    await check_response(world, f"{route} {brief(args)}", r)


@pytest.mark.once  # the same rules whatever the database
@given(password=valid(spec_of("password", SCHEMAS["auth.register"]["password"])))
async def test_registered_passwords_log_in(world: World, password: str) -> None:
    """Whatever password registration takes, login takes too (the two schemas check it
    differently: a password refused at login would lock its account out)."""
    username = f"pw{next(USERNAMES)}"
    body = {"username": username, "password": password}
    registered = await world.api.post("/auth/register", body)
    await check_response(world, f"register {body!r}", registered)
    if registered.status == 201:
        login = await world.api.post("/auth/login", body)
        assert login.status == 200, f"registered with {password!r}, login: {login.body}"


# Every example stores a message: at the fuzz profile's 1,000 per case the MongoDB stand-in
# (which scans whole collections on each insert) outlives the test timeout.
@pytest.mark.parametrize("name", MESSAGES)
@settings(max_examples=min(settings.default.max_examples, 200))
@given(upper=st.booleans(), text=allowed_text(1))
async def test_replies(world: World, name: str, upper: bool, text: str) -> None:
    """Valid messages replying to each kind of message (the bodies above rarely get that far:
    most carry a fault the server finds first)."""
    cid = f"reply{next(REPLIES)}"
    reply_to = Named(name, upper)
    body = world.resolve({"client_msg_id": cid, "text": text, "reply_to_id": reply_to})
    await world.before()
    r = await world.api.post(f"/rooms/{world.values['group']}/messages", body, world.alice)
    await check_response(world, f"POST /rooms/{{group}}/messages {brief(body)}", r)


@pytest.mark.parametrize("name", MESSAGES)
@given(upper=st.booleans(), limit=st.integers(1, 100))
async def test_history_around(world: World, name: str, upper: bool, limit: int) -> None:
    """History pages around each kind of message: the page holds it when it is the room's."""
    target = world.resolve(Named(name, upper))
    url = f"/history/room/{world.values['group']}?around={target}&limit={limit}"
    await world.before()
    r = await world.api.get(url, world.alice)
    await check_response(world, f"GET {url}", r)
    if r.status == 200:
        assert target.lower() in [m["id"] for m in r.body["messages"]], (url, r.body)
