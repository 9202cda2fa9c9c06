"""Abuse limits with the default settings (design.md section 5): send rate limits over the
WebSocket and REST, close 4429 on persistent abuse, login throttling, and their metric."""

from __future__ import annotations

import asyncio
import math
import re
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tornado.websocket import WebSocketClosedError

from fastsock.app import Server
from fastsock.config import Limits
from fastsock.errors import RateLimited
from tests.conftest import make_settings
from tests.support import PASSWORD, Api, Socket, User

FLOOD = 200


async def _server(db_uri: str | None, tmp_path: Path, limits: Limits) -> Server:
    srv = Server(make_settings(db_uri, tmp_path, limits=limits))
    await srv.start()
    return srv


@pytest.fixture
async def limited(db_uri: str | None, tmp_path: Path) -> AsyncIterator[Api]:
    """A server with the real default limits (the shared fixture relaxes them)."""
    srv = await _server(db_uri, tmp_path, Limits())
    yield Api(srv.port)
    await srv.stop()


async def _replies(ws: Socket, refs: list[str], timeout: float = 15) -> dict[str, dict[str, Any]]:
    """The frame answering each ref (`message.ack` or `error`), read by this one reader."""
    wanted = set(refs)
    got: dict[str, dict[str, Any]] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seen = 0
    while wanted - set(got) and loop.time() < deadline and not ws.closed:
        await ws.drain(0.05)
        for frame in ws.frames[seen:]:
            ref = frame.get("ref")
            if ref in wanted and frame["type"] in ("message.ack", "error"):
                assert ref not in got, f"two replies to {ref}"
                got[ref] = frame
        seen = len(ws.frames)
    missing = wanted - set(got)
    assert not missing, f"{len(missing)} frames got no reply within {timeout}s"
    return got


async def _history(api: Api, user: User, room: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    path = f"/history/room/{room}?limit=100"
    while True:
        r = await api.get(path, user)
        assert r.status == 200, r.body
        messages += r.body["messages"]
        if not r.body["has_more"]:
            return messages
        path = f"/history/room/{room}?limit=100&before={messages[-1]['id']}"


def _new_ids(ws: Socket) -> list[str]:
    return [f["data"]["message"]["id"] for f in ws.frames if f["type"] == "message.new"]


async def test_ws_flood_is_limited_and_loses_nothing_that_was_accepted(limited: Api) -> None:
    api = limited
    alice, bob, carol, dave = [await api.register() for _ in range(4)]
    flooded = await api.group(alice, bob)
    quiet = await api.group(carol, dave)
    alice_ws, bob_ws = await api.ws(alice), await api.ws(bob)
    carol_ws, dave_ws = await api.ws(carol), await api.ws(dave)

    # Alice writes 200 sends without waiting for any reply; carol sends a normal burst in
    # another room at the same time.
    flood_refs = [f"f{i}" for i in range(FLOOD)]
    calm_refs = [f"c{i}" for i in range(15)]
    for ref in flood_refs:
        data = {"room_id": flooded, "client_msg_id": "cid-" + ref, "text": "spam " + ref}
        await alice_ws.send("message.send", data, ref)
    for ref in calm_refs:
        data = {"room_id": quiet, "client_msg_id": "cid-" + ref, "text": "hello " + ref}
        await carol_ws.send("message.send", data, ref)

    # Carol is not slowed into refusals by alice: every message is accepted and delivered.
    calm = await _replies(carol_ws, calm_refs)
    assert all(f["type"] == "message.ack" for f in calm.values()), calm
    calm_ids = {f["data"]["message"]["id"] for f in calm.values()}
    delivered = [(await dave_ws.expect("message.new", timeout=15))["message"]["id"] for _ in calm]
    assert Counter(delivered) == Counter(dict.fromkeys(calm_ids, 1))

    # Alice: every frame is answered, the excess with rate_limited and a usable retry_after.
    replies = await _replies(alice_ws, flood_refs)
    acked = {r: f for r, f in replies.items() if f["type"] == "message.ack"}
    refused = {r: f for r, f in replies.items() if f["type"] == "error"}
    assert len(acked) + len(refused) == FLOOD
    assert Limits().send_burst <= len(acked) < FLOOD // 2, len(acked)
    for frame in refused.values():
        error = frame["data"]
        assert error["code"] == "rate_limited", error
        retry = error["retry_after"]
        assert isinstance(retry, int | float) and not isinstance(retry, bool) and retry > 0
        assert retry <= 1 / Limits().send_per_s + 0.01
    for ref, frame in acked.items():
        assert frame["data"]["client_msg_id"] == "cid-" + ref
    acked_ids = {f["data"]["message"]["id"] for f in acked.values()}
    assert len(acked_ids) == len(acked)

    # Stored exactly once each, and nothing that was refused.
    stored = await _history(api, bob, flooded)
    assert Counter(m["id"] for m in stored) == Counter(dict.fromkeys(acked_ids, 1))
    assert {m["client_msg_id"] for m in stored} == {"cid-" + r for r in acked}
    # Delivered to bob exactly once each, and nothing else.
    delivered = [(await bob_ws.expect("message.new", timeout=15))["message"]["id"] for _ in acked]
    await bob_ws.drain(0.5)
    delivered += _new_ids(bob_ws)
    assert Counter(delivered) == Counter(dict.fromkeys(acked_ids, 1))
    # Dave (another room) got only carol's messages.
    await dave_ws.drain(0.2)
    assert _new_ids(dave_ws) == []
    assert alice_ws.conn.close_code is None  # limited, not disconnected (defaults)

    # retry_after tells the truth: after waiting it, a send is accepted.
    await asyncio.sleep(max(f["data"]["retry_after"] for f in refused.values()) + 0.05)
    data = {"room_id": flooded, "client_msg_id": "after-wait", "text": "calm now"}
    await alice_ws.send("message.send", data, "after")
    assert (await _replies(alice_ws, ["after"]))["after"]["type"] == "message.ack"

    metrics = (await api.get("/metrics")).body
    match = re.search(r'fastsock_rate_limited_total\{kind="send"\} ([0-9.e+]+)', metrics)
    assert match and float(match.group(1)) >= len(refused), metrics


async def test_persistent_abuse_closes_the_socket_with_4429(
    db_uri: str | None, tmp_path: Path
) -> None:
    srv = await _server(db_uri, tmp_path, Limits(abuse_refusals=20))
    try:
        api = Api(srv.port)
        alice, bob = await api.register(), await api.register()
        room = await api.group(alice, bob)
        alice_ws, bob_ws = await api.ws(alice), await api.ws(bob)
        for i in range(FLOOD):
            data = {"room_id": room, "client_msg_id": f"m{i}", "text": f"spam {i}"}
            try:
                await alice_ws.send("message.send", data, f"r{i}")
            except WebSocketClosedError:
                break
        assert await alice_ws.close_code(timeout=10) == 4429
        errors = [f for f in alice_ws.frames if f["type"] == "error"]
        assert errors and all(f["data"]["code"] == "rate_limited" for f in errors)
        assert len(errors) >= 20
        # Bob is unaffected: his socket is open and still works.
        await bob_ws.send("ping", ref="p")
        await bob_ws.expect("pong")
        # A well-behaved client can connect again.
        again = await api.ws(alice)
        await again.send("ping", ref="p")
        await again.expect("pong")
    finally:
        await srv.stop()


async def test_rest_sends_over_the_limit_get_429_with_retry_after(limited: Api) -> None:
    api = limited
    alice = await api.register()
    room = await api.group(alice)
    accepted = 0
    for i in range(60):
        r = await api.post(
            f"/rooms/{room}/messages", {"client_msg_id": f"m{i}", "text": "x"}, alice
        )
        if r.status == 429:
            break
        assert r.status == 201, r.body
        accepted += 1
    else:
        pytest.fail("60 sends in a row were never limited")
    assert accepted >= Limits().send_burst
    assert r.error_code == "rate_limited"
    retry_after = r.body["error"]["retry_after"]
    assert isinstance(retry_after, int | float) and retry_after > 0
    header = r.headers.get("Retry-After")
    assert header is not None and header.isdigit() and int(header) >= 1
    assert int(header) == math.ceil(retry_after)
    # The refused send was not stored; after waiting, sending works again.
    history = (await api.get(f"/history/room/{room}?limit=100", alice)).body["messages"]
    assert len(history) == accepted
    await asyncio.sleep(retry_after + 0.05)
    body = {"client_msg_id": "after-wait", "text": "x"}
    assert (await api.post(f"/rooms/{room}/messages", body, alice)).status == 201


async def test_profile_changes_over_the_limit_get_429_and_announce_nothing(
    limited: Api,
) -> None:
    """Each profile change is announced to every co-member, so changes are limited per user;
    a refused one is neither stored nor announced."""
    api = limited
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    bob_ws = await api.ws(bob)
    allowed = Limits().profile_updates_per_min
    for i in range(allowed):
        r = await api.patch("/users/me", {"status_message": f"s{i}"}, alice)
        assert r.status == 200, r.body
    r = await api.patch("/users/me", {"status_message": "refused"}, alice)
    assert r.status == 429 and r.error_code == "rate_limited", r.body
    header = r.headers.get("Retry-After")
    assert header is not None and header.isdigit() and int(header) >= 1
    me = (await api.get("/users/me", alice)).body
    assert me["status_message"] == f"s{allowed - 1}"
    # Frames reach bob in order: by this message every announcement is there.
    await api.send(alice, room, "after")
    await bob_ws.expect("message.new")
    statuses = [
        f["data"]["user"]["status_message"] for f in bob_ws.frames if f["type"] == "user.updated"
    ]
    assert statuses == [f"s{i}" for i in range(allowed)]
    bob_ws.close()


async def test_login_is_throttled_per_ip_and_username(limited: Api) -> None:
    api = limited
    alice, bob = await api.register(), await api.register()
    per_min = Limits().logins_per_min
    wrong = {"username": alice.username, "password": "wrong password!"}
    right = {"username": alice.username, "password": PASSWORD}
    for i in range(per_min):
        r = await api.post("/auth/login", wrong if i < 3 else right)
        assert r.status == (401 if i < 3 else 200), (i, r.body)
    # The 11th attempt within the minute is refused, even with the right password.
    r = await api.post("/auth/login", right)
    assert r.status == 429 and r.error_code == "rate_limited", r.body
    assert "access_token" not in r.body
    header = r.headers.get("Retry-After")
    assert header is not None and int(header) >= 1
    # The username is matched however it is spelled.
    r = await api.post("/auth/login", {**right, "username": alice.username.upper()})
    assert r.status == 429
    # Another username from the same address is not affected.
    r = await api.post("/auth/login", {"username": bob.username, "password": PASSWORD})
    assert r.status == 200, r.body
    # An existing session is not affected either.
    assert (await api.get("/users/me", alice)).status == 200

    metrics = (await api.get("/metrics")).body
    assert re.search(r'fastsock_rate_limited_total\{kind="login"\} [1-9]', metrics), metrics


def test_retry_after_is_never_rounded_down_to_zero() -> None:
    # A bucket a hair short of a token waits well under a millisecond; the client must still be
    # told to wait (a 0 would invite an immediate retry that is refused again).
    for wait in (0.0004, 0.00001, 1e-9):
        retry_after = RateLimited("slow down", retry_after=wait).to_dict()["retry_after"]
        assert isinstance(retry_after, int | float) and retry_after > 0, (wait, retry_after)
