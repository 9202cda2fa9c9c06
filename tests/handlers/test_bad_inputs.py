"""Inputs that used to get a 500 (or a wrong answer) over REST: each now gets a clear 4xx,
changes nothing, and leaves the server serving. WebSocket frames: tests/realtime/
test_bad_frames.py."""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any
from urllib.parse import quote

import jwt
import pytest

from tests.conftest import JWT_SECRET
from tests.handlers.test_auth import assert_error
from tests.handlers.test_uploads import upload
from tests.support import PASSWORD, Api

LONE = "\\ud800"  # a lone surrogate, spelt as JSON spells it
DEEP = 30_000  # levels: past Python's parser (RecursionError), within the 64 KiB body limit


def with_lone_surrogate(body: dict[str, Any]) -> bytes:
    """`body` as JSON, every "<S>" replaced by a lone surrogate escape."""
    return json.dumps(body).replace("<S>", LONE).encode()


def deep_json(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


def token_for(sub: Any) -> str:
    now = int(time.time())
    claims = {"sub": sub, "typ": "access", "iat": now, "exp": now + 60, "jti": uuid.uuid4().hex}
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


# --- lone surrogates ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/auth/register", {"username": "surro", "password": "long enough<S>"}, "password"),
        ("/auth/register", {"username": "surro", "password": PASSWORD, "<S>": 1}, None),
        ("/auth/login", {"username": "surro", "password": "x<S>" * 4}, "password"),
        ("/auth/refresh", {"refresh_token": "a.b<S>.c"}, "refresh_token"),
        ("/auth/refresh", {"refresh_token": ["<S>"]}, "refresh_token"),
    ],
)
async def test_lone_surrogates_in_unauthenticated_bodies_are_a_400(
    api: Api, path: str, body: dict[str, Any], field: str | None
) -> None:
    r = await api.post(path, raw=with_lone_surrogate(body))
    assert_error(r, 400, "invalid_request", field=field)
    # Nothing was made: the username is still free.
    assert (await api.register("surro")).username == "surro"


async def test_lone_surrogates_in_authenticated_bodies_are_a_400_and_change_nothing(
    api: Api,
) -> None:
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    kept = await api.send(alice, room, "unchanged")
    cases = [
        (f"/rooms/{room}/messages", {"client_msg_id": "c1", "text": "hi <S>"}, "text"),
        (f"/rooms/{room}/messages", {"client_msg_id": "<S>", "text": "hi"}, "client_msg_id"),
        (f"/rooms/{room}/members", {"user_ids": ["<S>"]}, "user_ids"),
        ("/rooms", {"name": "x", "member_ids": [], "private": True, "<S>": 1}, None),
        ("/rooms/direct", {"user_id": bob.id + "<S>"}, "user_id"),
    ]
    for path, body, field in cases:
        r = await api.post(path, raw=with_lone_surrogate(body), user=alice)
        assert_error(r, 400, "invalid_request", field=field)
    for method, path, body, field in [
        ("PATCH", f"/messages/{kept['id']}", {"text": "<S>"}, "text"),
        ("PATCH", "/users/me", {"status_message": "away <S>"}, "status_message"),
        ("PATCH", f"/rooms/{room}", {"name": "<S>"}, "name"),
    ]:
        r = await api.request(method, path, raw=with_lone_surrogate(body), token=alice.access_token)
        assert_error(r, 400, "invalid_request", field=field)
    history = (await api.get(f"/history/room/{room}", alice)).body["messages"]
    assert [m["text"] for m in history] == ["unchanged"]
    assert [r["id"] for r in (await api.get("/rooms", alice)).body["rooms"]] == [room]


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/users?q=%ED%A0%80", "q"),  # U+D800 in UTF-8's form: not UTF-8
        ("/search/messages?q=a%ED%B0%80", "q"),
        ("/rooms/public?q=%ED%A0%80", "q"),
        ("/users/%ED%A0%80", None),
    ],
)
async def test_lone_surrogates_in_queries_and_paths_are_a_400_naming_the_argument(
    api: Api, path: str, field: str | None
) -> None:
    alice = await api.register()
    r = await api.get(path, alice)
    assert_error(r, 400, "invalid_request", field=field)
    if field is None:
        assert "field" not in r.body["error"]


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/users?q=%06", "q"),  # tornado's getters turn it into a space, then strip: q=""
        ("/search/messages?q=a%07b", "q"),
        ("/rooms/public?q=%1B", "q"),
    ],
)
async def test_control_characters_in_queries_are_a_400_not_silently_rewritten(
    api: Api, path: str, field: str
) -> None:
    alice = await api.register()
    r = await api.get(path, alice)
    assert_error(r, 400, "invalid_request", field=field)


# --- deep JSON ------------------------------------------------------------------------------


async def test_json_nested_thousands_deep_is_a_400(api: Api) -> None:
    alice = await api.register()
    room = await api.group(alice)
    r = await api.post("/auth/login", raw=deep_json(DEEP))
    assert_error(r, 400, "invalid_request")
    body = b'{"client_msg_id": "deep", "text": ' + deep_json(DEEP) + b"}"
    r = await api.post(f"/rooms/{room}/messages", raw=body, user=alice)
    assert_error(r, 400, "invalid_request")
    assert (await api.get(f"/history/room/{room}", alice)).body["messages"] == []


# --- search without a word ------------------------------------------------------------------


@pytest.mark.parametrize("query", ["-x", ".*", "\\", "-", '"', "*", "_", '"-', "(", "$"])
async def test_a_search_without_a_searchable_word_finds_nothing(api: Api, query: str) -> None:
    alice = await api.register()
    room = await api.group(alice)
    await api.send(alice, room, "hello world")
    r = await api.get(f"/search/messages?q={quote(query)}", alice)
    assert r.status == 200, r.body
    assert r.body == {"messages": [], "has_more": False}
    r = await api.get(f"/search/messages?q={quote(query)}&room_id={room}", alice)
    assert r.status == 200 and r.body == {"messages": [], "has_more": False}


async def test_search_syntax_is_read_as_plain_words_on_every_backend(api: Api) -> None:
    alice = await api.register()
    room = await api.group(alice)
    hello = await api.send(alice, room, "hello world")
    for query in ("-hello", '"hello', "hello -world", "-hello -world"):
        r = await api.get(f"/search/messages?q={quote(query)}", alice)
        assert r.status == 200, (query, r.body)
        assert [m["id"] for m in r.body["messages"]] == [hello["id"]], query


# --- Range with a huge number ---------------------------------------------------------------


async def test_a_range_with_a_number_thousands_of_digits_long_is_past_the_end(api: Api) -> None:
    """Also: 416 has the error shape of every other refusal, and `bytes=-` is no range."""
    alice = await api.register()
    up = await upload(api, alice, b"hello", "text/plain", "a.txt")
    assert up.status == 201, up.body
    huge = "9" * 5000  # Python refuses to convert more than 4300 digits

    async def get(range_: str) -> Any:
        return await api.get(f"/uploads/{up.body['id']}", alice, headers={"Range": range_})

    r = await get(f"bytes={huge}-")
    assert_error(r, 416, "range_not_satisfiable")
    assert r.headers["Content-Range"] == "bytes */5"
    r = await get("bytes=-")  # no range at all: ignored (RFC 9110)
    assert r.status == 200 and r.body == "hello"
    for whole in (f"bytes=0-{huge}", f"bytes=-{huge}", f"bytes=0-{'0' * 5000}4"):
        r = await get(whole)
        assert r.status == 206 and r.body == "hello", whole
        assert r.headers["Content-Range"] == "bytes 0-4/5"
    r = await get(f"bytes={'0' * 5000}1-")
    assert r.status == 206 and r.body == "ello"


# --- tokens with a malformed user id --------------------------------------------------------


async def test_signed_tokens_with_a_malformed_user_id_are_refused(api: Api) -> None:
    alice = await api.register()
    room = await api.group(alice)
    for sub in ("zzz", alice.id.upper(), " " + alice.id, 5, None, [alice.id]):
        token = token_for(sub)
        for path in ("/rooms", "/users/me", f"/rooms/{room}", f"/history/room/{room}"):
            r = await api.request("GET", path, token=token)
            assert_error(r, 401, "unauthenticated")
        body = {"client_msg_id": "c", "text": "x"}
        r = await api.request("POST", f"/rooms/{room}/messages", body, token=token)
        assert_error(r, 401, "unauthenticated")
    assert (await api.get(f"/history/room/{room}", alice)).body["messages"] == []


# --- ids in either case ---------------------------------------------------------------------


async def test_an_upper_case_path_id_acts_on_the_lower_case_id_fully(api: Api) -> None:
    """Ids are accepted in either case and always used in lower case, so a removal in upper
    case removes the membership *and* tells the removed user, with the id they know."""
    alice, bob, carol = await api.register(), await api.register(), await api.register()
    room = await api.group(alice, bob, carol)
    bob_ws, carol_ws = await api.ws(bob), await api.ws(carol)
    msg = await api.send(alice, room, "hello")
    assert (await api.get(f"/rooms/{room.upper()}", alice)).body["id"] == room
    r = await api.patch(f"/messages/{msg['id'].upper()}", {"text": "edited"}, alice)
    assert r.status == 200 and r.body["id"] == msg["id"]
    r = await api.delete(f"/rooms/{room.upper()}/members/{bob.id.upper()}", alice)
    assert r.status == 204, r.body
    removed = await bob_ws.expect("room.member_removed")
    assert removed["user_id"] == bob.id and removed["room"]["id"] == room
    assert (await carol_ws.expect("room.member_removed"))["user_id"] == bob.id
    members = (await api.get(f"/rooms/{room}", alice)).body["members"]
    assert {m["user_id"] for m in members} == {alice.id, carol.id}
    assert (await api.get(f"/rooms/{room}", bob)).status == 403


# --- smaller fixes --------------------------------------------------------------------------


async def test_a_direct_room_with_an_unknown_user_names_the_user_id_field(api: Api) -> None:
    alice = await api.register()
    r = await api.post("/rooms/direct", {"user_id": "0123456789abcdef01234567"}, alice)
    assert_error(r, 400, "invalid_request", field="user_id")


UPGRADE = {"Upgrade": "websocket", "Connection": "Upgrade"}


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 400, "invalid_request"),
        ({"Upgrade": "websocket"}, 400, "invalid_request"),
        ({"Connection": "Upgrade"}, 400, "invalid_request"),
        ({"Upgrade": "h2c", "Connection": "Upgrade"}, 400, "invalid_request"),
        ({**UPGRADE, "Sec-WebSocket-Version": "13"}, 400, "invalid_request"),  # no key
        ({**UPGRADE, "Sec-WebSocket-Version": "8"}, 426, "upgrade_required"),
    ],
)
async def test_ws_requests_that_cannot_be_upgraded_get_the_json_error_shape(
    api: Api, headers: dict[str, str], status: int, code: str
) -> None:
    r = await api.get("/ws", headers=headers)
    assert_error(r, status, code)
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"


@pytest.mark.once
@pytest.mark.parametrize("path", ["/static/%00", "/static/favicon.svg%00", "/static/js%00/main.js"])
async def test_a_nul_in_a_static_path_is_not_found(
    api: Api, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    r = await api.request("GET", path)
    assert r.status == 404
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]


@pytest.mark.parametrize("name", ["team\nBob removed you", "a\tb", "a\u2028b", "trailing\n"])
async def test_room_names_are_one_line(api: Api, name: str) -> None:
    alice = await api.register()
    r = await api.post("/rooms", {"name": name}, alice)
    assert_error(r, 400, "invalid_request", "name")
    assert (await api.get("/rooms", alice)).body["rooms"] == []  # nothing created
    room = await api.group(alice)
    r = await api.patch(f"/rooms/{room}", {"name": name}, alice)
    assert_error(r, 400, "invalid_request", "name")
    assert (await api.get(f"/rooms/{room}", alice)).body["name"] != name  # not renamed
