"""P0 security: the authorization matrix for everything room-scoped (design.md sections 3-4).
The rows of conversations' features (mentions, replies, history lines, moderation, deactivated
users, receipts) are in test_authorization_conversations.py, on the same world.

The world: a private group (admin alice, member bob) with messages, a DM between alice and bob,
and three outsiders: carol (never a member), dave (removed by alice) and erin (left by herself).
Outsiders must get 403 `not_a_member` from every room-scoped REST endpoint and WebSocket event,
learn nothing about the room, change nothing, and receive none of the room's events. A room
that does not exist answers exactly like one the caller is not in.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from bson import ObjectId

from fastsock.app import Server
from tests.support import Api, Response, Socket, User

# Room events an outsider must never see (design.md section 4).
ROOM_EVENTS = (
    "message.new",
    "message.updated",
    "message.deleted",
    "message.read",
    "message.ack",
    "room.updated",
    "room.member_added",
    "room.member_removed",
    "unread",
)
QUIET = 0.4  # seconds of silence that end a bounded drain


@dataclass
class World:
    alice: User
    bob: User
    carol: User
    dave: User
    erin: User
    group: str
    group_name: str
    dm: str
    group_msgs: list[dict[str, Any]]  # oldest first; [0] is alice's, [1] is bob's
    dm_msgs: list[dict[str, Any]]
    sockets: dict[str, Socket] = field(default_factory=dict)

    @property
    def outsiders(self) -> list[User]:
        return [self.carol, self.dave, self.erin]

    @property
    def texts(self) -> list[str]:
        return [m["text"] for m in self.group_msgs + self.dm_msgs]

    def secrets(self) -> list[str]:
        """Strings that reveal something of the rooms: names, texts, member and message ids."""
        ids = [m["id"] for m in self.group_msgs + self.dm_msgs]
        return [self.group_name, *self.texts, self.alice.id, self.bob.id, *ids]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def build_world(api: Api, *, sockets_before_removal: bool = False) -> World:
    """The shared setup. With `sockets_before_removal`, dave and erin connect (and bob as a
    witness) while still members, so the test can watch what a leaver keeps receiving."""
    # alice alone first: the first account, so a server admin (the others at once).
    alice = await api.register()
    bob, carol, dave, erin = await asyncio.gather(*(api.register() for _ in range(4)))
    group_name = unique("Secret Plans")
    r = await api.post(
        "/rooms",
        {"name": group_name, "member_ids": [bob.id, dave.id, erin.id], "private": True},
        alice,
    )
    assert r.status == 201, r.body
    group = r.body["id"]
    group_msgs = [
        await api.send(alice, group, unique("group-secret-alice")),
        await api.send(bob, group, unique("group-secret-bob")),
        await api.send(alice, group, unique("group-secret-alice2")),
    ]
    r = await api.post("/rooms/direct", {"user_id": bob.id}, alice)
    assert r.status in (200, 201), r.body
    dm = r.body["id"]
    dm_msgs = [
        await api.send(alice, dm, unique("dm-secret-alice")),
        await api.send(bob, dm, unique("dm-secret-bob")),
    ]
    world = World(alice, bob, carol, dave, erin, group, group_name, dm, group_msgs, dm_msgs)
    if sockets_before_removal:
        for name in ("bob", "dave", "erin"):
            world.sockets[name] = await api.ws(getattr(world, name))
    r = await api.delete(f"/rooms/{group}/members/{erin.id}", erin)
    assert r.status == 204, r.body
    r = await api.delete(f"/rooms/{group}/members/{dave.id}", alice)
    assert r.status == 204, r.body
    return world


async def snapshot(api: Api, w: World) -> dict[str, Any]:
    """Everything an outsider could try to change, as seen by alice and the outsiders."""
    state: dict[str, Any] = {}
    for room in (w.group, w.dm):
        r = await api.get(f"/rooms/{room}", w.alice)
        assert r.status == 200, r.body
        state[f"room {room}"] = r.body
        r = await api.get(f"/history/room/{room}?limit=100", w.alice)
        assert r.status == 200, r.body
        state[f"history {room}"] = r.body
    for user in w.outsiders:
        r = await api.get("/rooms", user)
        assert r.status == 200, r.body
        state[f"rooms of {user.username}"] = sorted(room["id"] for room in r.body["rooms"])
    return state


def assert_no_leak(body: Any, secrets: list[str], allowed: str = "") -> None:
    """The body names nothing of the room (strings also present in the request are allowed)."""
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    leaked = [s for s in secrets if s in text and s not in allowed]
    assert not leaked, f"response leaks {leaked}: {text}"


def assert_error(r: Response, status: int, code: str) -> None:
    assert r.status == status, (r.status, r.body)
    assert r.error_code == code, r.body
    assert set(r.body) == {"error"}, r.body


# --- the REST matrix ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    room: str
    msg: str  # a message of the room (alice's)
    oldest: str
    newest: str


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: Callable[[Target, User, World], str]
    body: Callable[[Target, User, World], Any] = lambda t, u, w: None
    room_in_path: bool = True  # False: addressed by message id

    def __str__(self) -> str:
        return self.name


ENDPOINTS = [
    Endpoint("get_room", "GET", lambda t, u, w: f"/rooms/{t.room}"),
    Endpoint(
        "patch_room", "PATCH", lambda t, u, w: f"/rooms/{t.room}", lambda t, u, w: {"name": "pwned"}
    ),
    Endpoint(
        "add_self_as_member",
        "POST",
        lambda t, u, w: f"/rooms/{t.room}/members",
        lambda t, u, w: {"user_ids": [u.id]},
    ),
    Endpoint("remove_member", "DELETE", lambda t, u, w: f"/rooms/{t.room}/members/{w.bob.id}"),
    Endpoint("leave", "DELETE", lambda t, u, w: f"/rooms/{t.room}/members/{u.id}"),
    Endpoint(
        "mark_read",
        "POST",
        lambda t, u, w: f"/rooms/{t.room}/read",
        lambda t, u, w: {"message_id": t.newest},
    ),
    Endpoint(
        "send_message",
        "POST",
        lambda t, u, w: f"/rooms/{t.room}/messages",
        lambda t, u, w: {"client_msg_id": uuid.uuid4().hex, "text": "intruder was here"},
    ),
    Endpoint("history", "GET", lambda t, u, w: f"/history/room/{t.room}"),
    Endpoint("history_before", "GET", lambda t, u, w: f"/history/room/{t.room}?before={t.newest}"),
    Endpoint("history_after", "GET", lambda t, u, w: f"/history/room/{t.room}?after={t.oldest}"),
    Endpoint(
        "history_window",
        "GET",
        lambda t, u, w: f"/history/room/{t.room}?after={t.oldest}&before={t.newest}&limit=1",
    ),
    Endpoint(
        "edit_message",
        "PATCH",
        lambda t, u, w: f"/messages/{t.msg}",
        lambda t, u, w: {"text": "pwned"},
        room_in_path=False,
    ),
    Endpoint("delete_message", "DELETE", lambda t, u, w: f"/messages/{t.msg}", room_in_path=False),
]


def target(w: World, room: str) -> Target:
    msgs = w.group_msgs if room == w.group else w.dm_msgs
    return Target(room, msgs[0]["id"], msgs[0]["id"], msgs[-1]["id"])


async def call(api: Api, ep: Endpoint, t: Target, caller: User, w: World) -> Response:
    path, body = ep.path(t, caller, w), ep.body(t, caller, w)
    return await api.request(ep.method, path, body, token=caller.access_token)


@pytest.mark.parametrize("ep", ENDPOINTS, ids=str)
async def test_outsiders_get_not_a_member_from_every_endpoint(api: Api, ep: Endpoint) -> None:
    """carol, dave and erin get 403 not_a_member in the group and the DM. A room id that does
    not exist answers the same, whoever asks (alice too), so nobody learns which rooms exist."""
    w = await build_world(api)
    ghost = Target(str(ObjectId()), w.group_msgs[0]["id"], w.group_msgs[0]["id"], str(ObjectId()))
    cases = [(t, w.outsiders) for t in (target(w, w.group), target(w, w.dm))]
    if ep.room_in_path:
        cases.append((ghost, [w.carol, w.dave, w.alice]))
    before = await snapshot(api, w)
    for t, callers in cases:
        for caller in callers:
            r = await call(api, ep, t, caller, w)
            where = (caller.username, t.room)
            assert r.status == 403 and r.error_code == "not_a_member", (*where, r.status, r.body)
            assert set(r.body) == {"error"}, (*where, r.body)
            assert_no_leak(r.body, w.secrets(), allowed=ep.path(t, caller, w))
    if ep.room_in_path:
        # A real foreign room and a missing one are indistinguishable.
        real = await call(api, ep, target(w, w.group), w.carol, w)
        fake = await call(api, ep, ghost, w.carol, w)
        assert (real.status, real.body) == (fake.status, fake.body)
    assert await snapshot(api, w) == before


UNAUTH_EXTRA = [
    Endpoint("list_rooms", "GET", lambda t, u, w: "/rooms"),
    Endpoint(
        "create_room",
        "POST",
        lambda t, u, w: "/rooms",
        lambda t, u, w: {"name": "x", "member_ids": [], "private": True},
    ),
    Endpoint(
        "direct", "POST", lambda t, u, w: "/rooms/direct", lambda t, u, w: {"user_id": w.bob.id}
    ),
    Endpoint("public_rooms", "GET", lambda t, u, w: "/rooms/public"),
    Endpoint("join", "POST", lambda t, u, w: f"/rooms/{t.room}/join"),
]


def forged_token(secret: str, user: User, **claims: Any) -> str:
    now = int(time.time())
    base = {"sub": user.id, "typ": "access", "iat": now, "exp": now + 600, "jti": "x" * 16}
    return jwt.encode({**base, **claims}, secret, algorithm="HS256")


async def test_unauthenticated_requests_are_refused(api: Api, server: Server) -> None:
    w = await build_world(api)
    t = target(w, w.group)
    secret = server.settings.jwt_secret
    unsigned = jwt.encode({"sub": w.alice.id, "typ": "access"}, None, algorithm="none")
    bad_headers: list[dict[str, str]] = [
        {},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Basic {w.alice.access_token}"},
        {"Authorization": f"Bearer {w.alice.refresh_token}"},  # a refresh token is no access token
        {"Authorization": f"Bearer {unsigned}"},
        {"Authorization": f"Bearer {forged_token('wrong-secret-' + 'y' * 40, w.alice)}"},
        {"Authorization": f"Bearer {forged_token(secret, w.alice, exp=int(time.time()) - 5)}"},
        {"Authorization": f"Bearer {forged_token(secret, w.alice, typ='refresh')}"},
    ]
    # Sanity check of the forgery itself: with the right secret and claims it is accepted.
    r = await api.get(
        "/rooms", headers={"Authorization": f"Bearer {forged_token(secret, w.alice)}"}
    )
    assert r.status == 200, r.body
    before = await snapshot(api, w)
    for ep in ENDPOINTS + UNAUTH_EXTRA:
        path, body = ep.path(t, w.alice, w), ep.body(t, w.alice, w)
        for i, headers in enumerate(bad_headers):
            r = await api.request(ep.method, path, body, headers=headers)
            assert r.status == 401 and r.error_code == "unauthenticated", (
                ep.name,
                i,
                r.status,
                r.body,
            )
            assert_no_leak(r.body, w.secrets(), allowed=path)
    assert await snapshot(api, w) == before


# --- the WebSocket matrix ----------------------------------------------------------------------


def ws_commands(w: World) -> list[tuple[str, dict[str, Any]]]:
    ghost = str(ObjectId())
    commands: list[tuple[str, dict[str, Any]]] = []
    for room, msgs in ((w.group, w.group_msgs), (w.dm, w.dm_msgs)):
        msg = msgs[0]["id"]
        commands += [
            ("message.send", {"room_id": room, "client_msg_id": uuid.uuid4().hex, "text": "hi"}),
            ("message.edit", {"message_id": msg, "text": "pwned"}),
            ("message.delete", {"message_id": msg}),
            ("message.read", {"room_id": room, "message_id": msgs[-1]["id"]}),
        ]
    commands += [
        ("message.send", {"room_id": ghost, "client_msg_id": uuid.uuid4().hex, "text": "hi"}),
        ("message.read", {"room_id": ghost, "message_id": w.group_msgs[-1]["id"]}),
    ]
    return commands


async def test_outsider_socket_events_are_refused_and_the_socket_stays_open(api: Api) -> None:
    w = await build_world(api)
    before = await snapshot(api, w)
    bob_ws = await api.ws(w.bob)
    for outsider in w.outsiders:
        ws = await api.ws(outsider)
        for i, (type_, data) in enumerate(ws_commands(w)):
            ref = f"{outsider.username}-{i}"
            await ws.send(type_, data, ref)
            err = await ws.expect("error", match=lambda f, ref=ref: f.get("ref") == ref)
            assert err["code"] == "not_a_member", (type_, data, err)
            assert_no_leak(err, w.secrets(), allowed=json.dumps(data))
        await ws.send("ping", None, "still-open")
        pong = await ws.expect("pong", match=lambda f: f.get("ref") == "still-open")
        assert pong["__ref"] == "still-open"
        assert not ws.closed
        frames = await ws.drain(QUIET)
        leaked = [f for f in ws.frames if f.get("type") in ROOM_EVENTS or f.get("type") == "ack"]
        assert not leaked, (outsider.username, leaked, frames)
        ws.close()
    # Nothing reached the members and nothing was stored. (build_world's messages may still
    # tell bob his counts, after their window: the counts he had before.)
    await bob_ws.drain(QUIET)
    rooms = (await api.get("/rooms", w.bob)).body["rooms"]
    counts = {r["id"]: (r["unread_count"], r["mention_count"]) for r in rooms}
    for frame in (f for f in bob_ws.frames if f.get("type") in ROOM_EVENTS):
        data = frame["data"]
        assert frame["type"] == "unread", bob_ws.frames
        assert (data["unread_count"], data["mention_count"]) == counts[data["room_id"]]
    assert await snapshot(api, w) == before


def is_removal_of(frame: dict[str, Any], user: User) -> bool:
    return frame.get("type") == "room.member_removed" and frame["data"].get("user_id") == user.id


async def wait_for(ws: Socket, pred: Callable[[dict[str, Any]], bool]) -> int:
    """Index in `ws.frames` of the first frame matching `pred`, reading for at most 5 s."""
    deadline = time.monotonic() + 5
    while True:
        for i, frame in enumerate(ws.frames):
            if pred(frame):
                return i
        assert time.monotonic() < deadline and not ws.closed, ws.frames
        await ws.drain(0.05)


def mentions(frame: dict[str, Any], needles: list[str]) -> bool:
    text = json.dumps(frame, ensure_ascii=False)
    return any(n in text for n in needles)


async def test_outsider_sockets_receive_none_of_the_room_events(api: Api) -> None:
    w = await build_world(api, sockets_before_removal=True)
    bob_ws, dave_ws, erin_ws = w.sockets["bob"], w.sockets["dave"], w.sockets["erin"]
    carol_ws = await api.ws(w.carol)
    frank = await api.register()

    # The leavers hear of their own removal (which names the room they left).
    removal_at: dict[str, int] = {}
    for ws, user in ((dave_ws, w.dave), (erin_ws, w.erin)):
        removal_at[user.id] = await wait_for(ws, lambda f, u=user: is_removal_of(f, u))
        data = ws.frames[removal_at[user.id]]["data"]
        assert data["room"]["id"] == w.group
        assert user.id not in data["room"]["member_ids"]

    # Activity of every kind in the group and the DM; bob witnesses each event.
    new_text = unique("after-removal-secret")
    msg = await api.send(w.alice, w.group, new_text)
    await bob_ws.expect("message.new", match=lambda f: f["data"]["message"]["id"] == msg["id"])
    edited_text = unique("edited-secret")
    r = await api.patch(f"/messages/{msg['id']}", {"text": edited_text}, w.alice)
    assert r.status == 200, r.body
    await bob_ws.expect("message.updated", match=lambda f: f["data"]["message"]["id"] == msg["id"])
    r = await api.post(f"/rooms/{w.group}/read", {"message_id": msg["id"]}, w.bob)
    assert r.status == 200, r.body
    await bob_ws.expect("message.read", match=lambda f: f["data"]["room_id"] == w.group)
    r = await api.delete(f"/messages/{msg['id']}", w.alice)
    assert r.status == 204, r.body
    await bob_ws.expect("message.deleted", match=lambda f: f["data"]["message_id"] == msg["id"])
    new_name = unique("Renamed Plans")
    r = await api.patch(f"/rooms/{w.group}", {"name": new_name}, w.alice)
    assert r.status == 200, r.body
    await bob_ws.expect("room.updated", match=lambda f: f["data"]["room"]["id"] == w.group)
    r = await api.post(f"/rooms/{w.group}/members", {"user_ids": [frank.id]}, w.alice)
    assert r.status == 200, r.body
    await bob_ws.expect("room.member_added", match=lambda f: f["data"]["room"]["id"] == w.group)
    r = await api.delete(f"/rooms/{w.group}/members/{frank.id}", w.alice)
    assert r.status == 204, r.body
    await bob_ws.expect("room.member_removed", match=lambda f: f["data"].get("user_id") == frank.id)
    dm_text = unique("dm-after-secret")
    dm_msg = await api.send(w.alice, w.dm, dm_text)
    await bob_ws.expect("message.new", match=lambda f: f["data"]["message"]["id"] == dm_msg["id"])
    # Presence goes to people who share a room: bob, not the outsiders.
    alice_ws = await api.ws(w.alice)
    await bob_ws.expect(
        "presence", match=lambda f: f["data"] == {"user_id": w.alice.id, "online": True}
    )

    needles = [w.group, w.dm, w.group_name, new_name, new_text, edited_text, dm_text, *w.texts]
    await carol_ws.drain(QUIET)
    assert not [f for f in carol_ws.frames if f.get("type") in ROOM_EVENTS], carol_ws.frames
    assert not [f for f in carol_ws.frames if mentions(f, needles)], carol_ws.frames

    for ws, user in ((dave_ws, w.dave), (erin_ws, w.erin)):
        await ws.drain(QUIET)
        assert not ws.closed, f"{user.username}'s socket was closed"
        own = [f for f in ws.frames if is_removal_of(f, user)]
        assert len(own) == 1, f"{user.username} got {len(own)} removals of himself: {own}"
        later = [
            f
            for f in ws.frames[removal_at[user.id] + 1 :]
            if f.get("type") in ROOM_EVENTS or mentions(f, needles)
        ]
        assert not later, f"{user.username} still hears the room after leaving: {later}"
    for ws in (carol_ws, dave_ws, erin_ws):
        heard = [f for f in ws.frames if f.get("type") == "presence"]
        assert not [f for f in heard if f["data"].get("user_id") == w.alice.id], heard
    for ws in (alice_ws, bob_ws, dave_ws, erin_ws, carol_ws):
        ws.close()


# --- roles ------------------------------------------------------------------------------------


async def test_plain_member_cannot_administer_the_group(api: Api) -> None:
    w = await build_world(api)
    frank = await api.register()
    r = await api.post(f"/rooms/{w.group}/members", {"user_ids": [frank.id]}, w.alice)
    assert r.status == 200, r.body
    before = await snapshot(api, w)

    assert_error(await api.patch(f"/rooms/{w.group}", {"name": "mine"}, w.bob), 403, "forbidden")
    assert_error(await api.patch(f"/rooms/{w.group}", {"private": False}, w.bob), 403, "forbidden")
    r = await api.post(f"/rooms/{w.group}/members", {"user_ids": [w.carol.id]}, w.bob)
    assert_error(r, 403, "forbidden")
    for victim in (w.alice, frank):
        r = await api.delete(f"/rooms/{w.group}/members/{victim.id}", w.bob)
        assert_error(r, 403, "forbidden")

    assert await snapshot(api, w) == before
    r = await api.get(f"/rooms/{w.group}", w.alice)
    members = {m["user_id"]: m["role"] for m in r.body["members"]}
    assert members == {w.alice.id: "admin", w.bob.id: "member", frank.id: "member"}
    assert r.body["name"] == w.group_name and r.body["private"] is True


async def test_only_the_author_edits_and_author_or_admin_deletes(api: Api) -> None:
    w = await build_world(api)
    alice_msg, bob_msg = w.group_msgs[0], w.group_msgs[1]
    before = await snapshot(api, w)

    r = await api.patch(f"/messages/{alice_msg['id']}", {"text": "bob was here"}, w.bob)
    assert_error(r, 403, "forbidden")
    r = await api.delete(f"/messages/{alice_msg['id']}", w.bob)
    assert_error(r, 403, "forbidden")
    # The admin may delete, but not edit, someone else's message.
    r = await api.patch(f"/messages/{bob_msg['id']}", {"text": "alice was here"}, w.alice)
    assert_error(r, 403, "forbidden")
    assert await snapshot(api, w) == before

    r = await api.delete(f"/messages/{bob_msg['id']}", w.alice)
    assert r.status == 204, r.body
    r = await api.get(f"/history/room/{w.group}", w.bob)
    assert r.status == 200, r.body
    by_id = {m["id"]: m for m in r.body["messages"]}
    tomb = by_id[bob_msg["id"]]
    assert tomb["deleted"] is True and tomb["text"] == "", tomb
    assert tomb["version"] > bob_msg["version"]
    assert by_id[alice_msg["id"]]["text"] == alice_msg["text"]
    assert by_id[alice_msg["id"]]["deleted"] is False
    assert bob_msg["text"] not in json.dumps(r.body, ensure_ascii=False)


async def test_direct_rooms_cannot_be_changed_even_by_their_members(api: Api) -> None:
    w = await build_world(api)
    before = await snapshot(api, w)
    for member, other in ((w.alice, w.bob), (w.bob, w.alice)):
        r = await api.patch(f"/rooms/{w.dm}", {"name": "renamed"}, member)
        assert_error(r, 403, "forbidden")
        r = await api.post(f"/rooms/{w.dm}/members", {"user_ids": [w.carol.id]}, member)
        assert_error(r, 403, "forbidden")
        r = await api.delete(f"/rooms/{w.dm}/members/{other.id}", member)
        assert_error(r, 403, "forbidden")
        r = await api.delete(f"/rooms/{w.dm}/members/{member.id}", member)
        assert_error(r, 403, "forbidden")
    assert await snapshot(api, w) == before
    r = await api.get(f"/rooms/{w.dm}", w.alice)
    assert sorted(r.body["member_ids"]) == sorted([w.alice.id, w.bob.id])


# --- discovery and joining --------------------------------------------------------------------


async def test_room_lists_show_only_my_rooms_and_public_groups(api: Api) -> None:
    w = await build_world(api)
    own = await api.group(w.carol)
    public_name = unique("Open Lounge")
    r = await api.post("/rooms", {"name": public_name, "member_ids": [], "private": False}, w.alice)
    assert r.status == 201, r.body
    public = r.body["id"]

    r = await api.get("/rooms", w.carol)
    assert r.status == 200, r.body
    assert [room["id"] for room in r.body["rooms"]] == [own]
    assert_no_leak(r.body, w.secrets())
    for leaver in (w.dave, w.erin):
        r = await api.get("/rooms", leaver)
        assert r.status == 200, r.body
        assert r.body["rooms"] == [], (leaver.username, r.body)

    for query in ("", "?q=Secret", f"?q={w.group_name.split('-')[-1]}"):
        r = await api.get(f"/rooms/public{query}", w.carol)
        assert r.status == 200, r.body
        ids = [room["id"] for room in r.body["rooms"]]
        assert w.group not in ids and w.dm not in ids and own not in ids, (query, r.body)
        assert_no_leak(r.body, w.secrets())
    r = await api.get("/rooms/public", w.carol)
    listed = {room["id"]: room for room in r.body["rooms"]}
    assert public in listed
    assert listed[public]["name"] == public_name and listed[public]["member_count"] == 1
    assert set(listed[public]) <= {"id", "name", "member_count"}, listed[public]


async def test_private_rooms_cannot_be_joined_and_public_ones_can(api: Api) -> None:
    w = await build_world(api)
    before = await snapshot(api, w)
    for user in w.outsiders:
        for room in (w.group, w.dm, str(ObjectId())):
            r = await api.post(f"/rooms/{room}/join", None, user)
            assert_error(r, 404, "not_found")
            assert_no_leak(r.body, w.secrets(), allowed=room)
    assert await snapshot(api, w) == before

    r = await api.post(
        "/rooms", {"name": unique("Open"), "member_ids": [], "private": False}, w.alice
    )
    assert r.status == 201, r.body
    public = r.body["id"]
    welcome = await api.send(w.alice, public, unique("welcome"))
    r = await api.get(f"/history/room/{public}", w.carol)
    assert_error(r, 403, "not_a_member")  # reading history always requires membership
    assert welcome["text"] not in json.dumps(r.body)

    r = await api.post(f"/rooms/{public}/join", None, w.carol)
    assert r.status == 200, r.body
    assert w.carol.id in r.body["member_ids"]
    r = await api.get(f"/history/room/{public}", w.carol)
    assert r.status == 200, r.body
    # The welcome and carol's own joining (a history line: she is a member when it is posted).
    messages = r.body["messages"]
    assert [m["id"] for m in messages if m["type"] != "system"] == [welcome["id"]]
    assert [m["system"]["event"] for m in messages if m["type"] == "system"] == ["member_joined"]
    # Joining one room opens nothing else.
    assert_error(await api.get(f"/history/room/{w.group}", w.carol), 403, "not_a_member")
