"""The OpenAPI document (fastsock/openapi.py): valid OpenAPI 3.1, one operation for every
route and method the server has and none else, committed as docs/openapi.json exactly as the
code generates it, and served at /openapi.json; every view's shape checked with every optional
field filled, and the answers the fuzzer seldom or never reaches checked against the document.
(tests/handlers/test_schemathesis.py checks the live server's answers against it.)"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi
from PIL import Image

from fastsock import openapi
from fastsock.app import HANDLERS
from fastsock.errors import ApiError, InvalidRequest
from fastsock.handlers.openapi import CACHE_CONTROL
from fastsock.openapi_shapes import SCHEMAS as SHAPES
from fastsock.services import views
from fastsock.services.schemas import SCHEMAS, json_schema, validate
from fastsock.services.uploads import upload_view
from tests.realtime.fake_workers import FakeWorker, GroupServers
from tests.support import Api, Response

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
DOC = openapi.document(HANDLERS)
A, B = "a" * 24, "b" * 24


def operation(path: str, method: str) -> dict[str, Any]:
    op: dict[str, Any] = DOC["paths"][path][method]
    return op


def schema_errors(schema: dict[str, Any], instance: Any) -> list[str]:
    """What is wrong with `instance` by `schema` (which may refer to the document's parts)."""
    validator = Draft202012Validator({**schema, "components": DOC["components"]})
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(instance)]


def assert_documented(path: str, method: str, r: Response) -> None:
    """The response's body matches the document's schema for its operation and status."""
    response = operation(path, method)["responses"][str(r.status)]
    if "$ref" in response:  # an error: components/responses/<status>
        response = DOC["components"]["responses"][str(r.status)]
    errors = schema_errors(response["content"]["application/json"]["schema"], r.body)
    assert not errors, (method, path, r.status, errors)


# --- the document itself ------------------------------------------------------------------------


@pytest.mark.once
def test_the_document_is_valid_openapi_3_1() -> None:
    assert DOC["openapi"] == "3.1.0"
    validate_openapi(DOC)  # openapi-spec-validator: picks the 3.1 schema from `openapi`


@pytest.mark.once
def test_the_committed_document_is_what_the_code_generates() -> None:
    assert COMMITTED.read_bytes() == openapi.render(HANDLERS), (
        f"docs/openapi.json is out of date: regenerate it with `{openapi.REGENERATE}`"
    )


@pytest.mark.once
def test_every_route_and_method_has_an_operation_and_every_operation_a_route() -> None:
    served = {(h.route, m.lower()) for h in HANDLERS for m in h.methods()}
    assert served == set(openapi.OPERATIONS)
    documented = {(p, m) for p, ops in DOC["paths"].items() for m in ops}
    assert documented == served


@pytest.mark.once
def test_a_route_without_an_operation_is_refused_with_a_clear_message() -> None:
    class Unlisted(HANDLERS[0]):  # type: ignore[misc,valid-type]
        route = "/nowhere"

    with pytest.raises(LookupError, match=r"^POST /nowhere \(.*Unlisted\) has no entry in "):
        openapi.document([*HANDLERS, Unlisted])


@pytest.mark.once
def test_bodies_and_queries_come_from_the_schema_table() -> None:
    register = operation("/auth/register", "post")["requestBody"]["content"]
    assert register["application/json"]["schema"] == json_schema("auth.register")
    # The path supplies the room: the body schema is the table's without it.
    send = operation("/rooms/{id}/messages", "post")["requestBody"]["content"]
    body = send["application/json"]["schema"]
    assert set(body["properties"]) == set(json_schema("message.send")["properties"]) - {"room_id"}
    assert "room_id" not in body["required"]
    # A handler's query arguments: its `query_schema`'s fields, which BaseHandler.query reads.
    with_query = [h for h in HANDLERS if h.query_schema is not None]
    assert {h.route for h in with_query} >= {"/history/room/{id}", "/users", "/search/messages"}
    for handler in with_query:
        params = operation(handler.route, "get")["parameters"]
        assert [p["name"] for p in params if p["in"] == "query"] == list(
            SCHEMAS[handler.query_schema]
        )


@pytest.mark.once
def test_the_document_refuses_an_empty_body_exactly_when_the_server_does() -> None:
    """{} is the one body that needs no generator: valid per the document, it must be
    accepted by the check (the path's fields given), and refused by both otherwise."""
    for (path, method), op in openapi.OPERATIONS.items():
        if op.body is None:
            continue
        request_body = operation(path, method)["requestBody"]
        documented = not schema_errors(request_body["content"]["application/json"]["schema"], {})
        try:
            validate(op.body, dict.fromkeys(op.path_fields, A))
            accepted = True
        except InvalidRequest:
            accepted = False
        assert (documented, request_body["required"]) == (accepted, not accepted), (path, method)


@pytest.mark.once
def test_error_responses_list_the_codes_of_their_status() -> None:
    responses = DOC["components"]["responses"]
    forbidden = responses["403"]["content"]["application/json"]["schema"]
    assert not schema_errors(forbidden, {"error": {"code": "not_a_member", "message": "m"}})
    assert schema_errors(forbidden, {"error": {"code": "not_found", "message": "m"}})
    every_code = {code for r in responses.values() for code in _codes(r)}
    assert set(ApiError.by_code) <= every_code  # errors.py's and those raised elsewhere
    assert set(_codes(responses["416"])) == {"range_not_satisfiable"}


def _codes(response: dict[str, Any]) -> list[str]:
    schema = response["content"]["application/json"]["schema"]["allOf"][1]
    codes: list[str] = schema["properties"]["error"]["properties"]["code"]["enum"]
    return codes


@pytest.mark.once
def test_errors_per_operation() -> None:
    login = operation("/auth/login", "post")
    assert login["security"] == [] and {"401", "429", "503"} <= set(login["responses"])
    rooms = operation("/rooms", "get")
    assert rooms["security"] == [{"bearerAuth": []}] and "401" in rooms["responses"]
    health = operation("/healthz", "get")
    assert health["security"] == [] and "401" not in health["responses"]
    components = DOC["components"]["responses"]
    assert components["429"]["headers"]["Retry-After"]["required"] is True


@pytest.mark.once
def test_every_get_documents_304() -> None:
    gets = [(p, ops["get"]) for p, ops in DOC["paths"].items() if "get" in ops]
    assert gets and all("304" in op["responses"] for _, op in gets), [
        p for p, op in gets if "304" not in op["responses"]
    ]


# --- views, with every optional field -----------------------------------------------------------


def _shape_errors(shape: str, instances: list[dict[str, Any]]) -> list[str]:
    """Errors of the views against shape `shape`, and any property none of them has (between
    them they have every optional field)."""
    errors = [e for view in instances for e in schema_errors(ref(shape), view)]
    return errors + sorted(set(SHAPES[shape]["properties"]).difference(*instances))


def ref(shape: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{shape}"}


@pytest.mark.once
def test_views_with_every_optional_field_match_their_shapes() -> None:
    """Calls (direct and group), a call message, a history line, images, a room with a live
    call: what the fuzzer never creates. A view growing a field, or losing one, fails here."""
    now = datetime.now(UTC)
    call = {"_id": A, "room_id": B, "media": "audio", "caller_id": A, "created_at": now}
    group = views.call_view(
        call | {"kind": "group", "state": "active", "participant_ids": [A], "present_ids": [A]}
    )
    direct = views.call_view(
        call
        | {"kind": "direct", "callee_id": B, "state": "ended", "outcome": "completed"}
        | {"end_reason": "hangup", "answered_at": now, "ended_at": now, "duration_s": 3}
    )
    image = upload_view(
        {"_id": A, "content_type": "image/png", "size": 3, "name": "a.png", "width": 2}
        | {"height": 2}
    )
    message = views.message_view(
        {"_id": A, "room_id": B, "sender_id": A, "type": "call", "text": "", "call": direct}
        | {"client_msg_id": "x", "created_at": now, "edited_at": now, "deleted": False}
        | {"version": 1, "attachments": [image], "reactions": {"👍": [A]}}
    )
    system = {"event": "room_renamed", "actor_id": A, "user_ids": [B], "name": "n"}
    system |= {"old_name": "o", "private": True, "banned": True, "role": "admin"}
    line = views.message_view(
        {"_id": B, "room_id": B, "sender_id": A, "type": "system", "text": "", "system": system}
        | {"client_msg_id": "system:x", "created_at": now, "deleted": False, "version": 2}
    )
    reply = views.message_view(  # a reply with mentions, and what it answers
        {"_id": B, "room_id": B, "sender_id": B, "type": "text", "text": "@u @room"}
        | {"client_msg_id": "y", "created_at": now, "deleted": False, "version": 3}
        | {"mentions": [A], "mention_room": True, "reply_to_id": A},
        {"_id": A, "sender_id": A, "type": "text", "text": "q", "deleted": True}
        | {"created_at": now},
    )
    room = views.room_view(
        {"_id": B, "kind": "group", "name": "n", "private": True, "created_by": A}
        | {"created_at": now, "last_activity_at": now, "version": 2},
        [A],
        call | {"kind": "group", "present_ids": [A]},
    )
    stored = {
        "user_id": A,
        "role": "admin",
        "last_read_message_id": A,
        "last_read_at": now,
        "joined_at": now,
    }
    membership = views.membership_fields(stored)
    member = views.member_view(stored | {"last_delivered_message_id": B, "last_delivered_at": now})
    user = views.user_view(
        {"_id": A, "username": "u", "display_name": "d", "avatar_url": f"/uploads/{B}"}
        | {"status_message": "s", "created_at": now},
        online=True,
    )
    checks = {
        "Call": [group, direct],
        "Upload": [image],
        "Message": [message, line, reply],
        "ActiveCall": [room["active_call"]],
        "Room": [room],
        "RoomDetail": [room | membership | {"members": [member]}],
        "RoomSummary": [
            room | membership | {"unread_count": 0, "mention_count": 0, "last_message": message}
        ],
        "User": [user],
    }
    for shape, instances in checks.items():
        assert not _shape_errors(shape, instances), (shape, _shape_errors(shape, instances))


# --- the live server ----------------------------------------------------------------------------


@pytest.mark.once
async def test_the_server_serves_the_committed_document_without_auth(api: Api) -> None:
    r = await api.get("/openapi.json")
    assert r.status == 200
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    assert r.headers["Cache-Control"] == CACHE_CONTROL
    assert r.body == json.loads(COMMITTED.read_text())
    again = await api.get("/openapi.json", headers={"If-None-Match": r.headers["Etag"]})
    assert again.status == 304


async def test_a_json_get_answers_304_as_documented(api: Api) -> None:
    alice = await api.register()
    r = await api.get("/users/me", alice)
    again = await api.get("/users/me", alice, headers={"If-None-Match": r.headers["Etag"]})
    assert again.status == 304
    assert "304" in operation("/users/me", "get")["responses"]


async def test_an_empty_change_is_refused_as_documented(api: Api) -> None:
    alice = await api.register()
    room = await api.group(alice)
    for path, route in (("/users/me", "/users/me"), (f"/rooms/{room}", "/rooms/{id}")):
        r = await api.patch(path, {}, alice)
        assert (r.status, r.body["error"]["message"]) == (400, "nothing to change"), path
        body = operation(route, "patch")["requestBody"]
        assert body["required"] is True
        assert schema_errors(body["content"]["application/json"]["schema"], {}), route


@pytest.mark.parametrize("control", ["\x1f", "\x1c", "\x0b", "\x0c", "\x85"])
async def test_controls_strip_would_take_for_spaces_are_refused(api: Api, control: str) -> None:
    """Leading or trailing, in a query or a body: refused, as the document's pattern says,
    not trimmed away."""
    alice = await api.register("alice")
    before = (await api.get("/users/me", alice)).body
    r = await api.get(f"/users?q={quote(control)}alice", alice)
    assert (r.status, r.body["error"]["field"]) == (400, "q"), r.body
    r = await api.patch("/users/me", {"display_name": f"Alice{control}"}, alice)
    assert (r.status, r.body["error"]["field"]) == (400, "display_name"), r.body
    body = operation("/users/me", "patch")["requestBody"]["content"]["application/json"]
    pattern = body["schema"]["properties"]["display_name"]["pattern"]
    assert not re.search(pattern, f"Alice{control}")
    assert (await api.get("/users/me", alice)).body == before  # unchanged


def png() -> bytes:
    buf = BytesIO()
    Image.new("RGB", (8, 6), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


async def test_shapes_the_fuzzer_rarely_reaches_match_real_answers(api: Api) -> None:
    """Attachments, thumbnails, reactions, receipts, read state, a room's last message, a
    byte range: the schemathesis run seldom gets that far with generated input."""
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    r = await api.request(
        "POST",
        "/uploads?filename=one.png",
        raw=png(),
        token=alice.access_token,
        headers={"Content-Type": "image/png"},
    )
    assert_documented("/uploads", "post", r)
    image = r.body
    r = await api.post(
        f"/rooms/{room}/messages",
        {"client_msg_id": "m1", "text": "look", "attachment_ids": [image["id"]]},
        alice,
    )
    assert_documented("/rooms/{id}/messages", "post", r)
    message = r.body["id"]
    assert r.body["attachments"][0]["thumbnail_url"]  # the optional fields were checked
    r = await api.request(
        "PUT", f"/messages/{message}/reactions/%F0%9F%91%8D", token=bob.access_token
    )
    assert_documented("/messages/{id}/reactions/{emoji}", "put", r)
    r = await api.post(f"/rooms/{room}/read", {"message_id": message}, bob)
    assert_documented("/rooms/{id}/read", "post", r)
    checks = [
        ("/history/room/{id}", f"/history/room/{room}"),
        ("/messages/{id}/receipts", f"/messages/{message}/receipts"),
        ("/rooms", "/rooms"),
        ("/rooms/{id}", f"/rooms/{room}"),
        ("/rooms/{id}/calls", f"/rooms/{room}/calls"),
        ("/search/messages", "/search/messages?q=look"),
        ("/calls/ice-servers", "/calls/ice-servers"),
        ("/config", "/config"),
    ]
    for route, path in checks:
        r = await api.get(path, bob)
        assert r.status == 200, (path, r.body)
        assert_documented(route, "get", r)
    r = await api.get("/rooms", bob)
    assert r.body["rooms"][0]["last_message"]["reactions"]  # nested shapes, filled
    r = await api.get(f"/rooms/{room}", await api.register())
    assert (r.status, r.error_code) == (403, "not_a_member")
    assert_documented("/rooms/{id}", "get", r)  # an error's code, against its status's
    # A byte range: 206 with the Content-Range the document requires (the body is binary).
    r = await api.get(image["url"], bob, headers={"Range": "bytes=0-3"})
    assert r.status == 206
    header = operation("/uploads/{id}", "get")["responses"]["206"]["headers"]["Content-Range"]
    assert header["required"] is True
    assert re.fullmatch(header["schema"]["pattern"], r.headers["Content-Range"])


async def test_the_workers_answers_match_the_document(db_uri: str | None, tmp_path: Path) -> None:
    """The internal API, which schemathesis leaves out (it needs control tokens)."""
    servers = GroupServers(db_uri, tmp_path)
    try:
        api = Api((await servers.start()).port)
        worker = await FakeWorker(api).start(beat=False)
        route = "/internal/sfu/workers/{id}"
        assert_documented(f"{route}/register", "post", await worker.register())
        r = await worker.post("heartbeat", worker.heartbeat_body())
        assert_documented(f"{route}/heartbeat", "post", r)
        r = await worker.post("events", {"events": []})
        assert_documented(f"{route}/events", "post", r)
        r = await worker.post("heartbeat", worker.heartbeat_body() | {"cpu": -1})
        assert_documented(f"{route}/heartbeat", "post", r)
    finally:
        await servers.stop_all()


async def test_an_uploads_filename_query_argument_is_read_as_sent(api: Api) -> None:
    """Like every query argument (BaseHandler.query): tornado's getter would have turned the
    control character into a space and trimmed it off; the upload service sanitises it."""
    alice = await api.register()
    r = await api.request(
        "POST",
        "/uploads?filename=%1Fone.png",
        raw=png(),
        token=alice.access_token,
        headers={"Content-Type": "image/png"},
    )
    assert (r.status, r.body["name"]) == (201, "_one.png"), r.body
