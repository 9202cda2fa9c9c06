"""The fuzz suite's world: one server with a few users, rooms and messages in it, the names
strategies use to point at them, the database state refused input must leave alone, and a
watch on the server's log for errors and tracebacks."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any
from urllib.parse import quote

import jwt
from PIL import Image

from fastsock.app import Server
from fastsock.services.server_admins import set_server_admin
from fastsock.store.ids import new_id
from tests.conftest import JWT_SECRET
from tests.support import PASSWORD, Api, User


@dataclass(frozen=True, slots=True)
class Named:
    """A value of the running world (an id or a token), filled in just before sending, so
    that strategies stay static and a failing example prints readably."""

    name: str
    upper: bool = False  # the id in upper case (ids are case-insensitive hex)

    def __repr__(self) -> str:
        return f"<{self.name}{' upper' if self.upper else ''}>"


@dataclass(frozen=True, slots=True)
class Forged:
    """A JWT signed with the server's own secret, whatever its claims: Named values are
    filled in, and an `exp` of "future" or "past" becomes a time ten minutes away."""

    claims: dict[str, Any]


EXPIRY = {"future": 600, "past": -600}

ID_NAMES = (
    "alice",
    "bob",
    "carol",
    "group",
    "dm",
    "public",
    "mine",
    "theirs",
    "in_dm",
    "gone",
    "line",
    "upload",
    "avatar",
)
TOKEN_NAMES = ("access", "refresh", "bob_access")
WORLD_ROOMS = ("group", "dm")  # alice's rooms made by `populate` (fuzzing adds more)


class LogWatch(logging.Handler):
    """Keeps every ERROR (or worse) record and every record carrying a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.bad: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.bad.append(record)

    def take(self) -> list[str]:
        lines = [f"{r.levelname} {r.name}: {r.getMessage()}" for r in self.bad]
        lines += [self.format(r) for r in self.bad if r.exc_info]
        self.bad.clear()
        return lines


@dataclass(frozen=True, slots=True)
class State:
    """What refused input must not change: alice's rooms (names, privacy, members, versions,
    read pointers, unread counts, last messages) and her profile."""

    rooms: list[dict[str, Any]]
    me: dict[str, Any]


@dataclass
class World:
    server: Server
    api: Api
    alice: User  # admin of `group` and a server admin, the one who sends everything
    bob: User
    carol: User  # owns `public`; removed from `group`, so banned from it
    values: dict[str, str]
    logs: LogWatch
    _state: State | None = field(default=None, repr=False)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(f"World(port={self.server.port})")  # how hypothesis prints an argument

    def resolve(self, value: Any) -> Any:
        """`value` with every Named replaced by the world's value for it."""
        if isinstance(value, Named):
            found = self.values[value.name]
            return found.upper() if value.upper else found
        if isinstance(value, Forged):
            claims = self.resolve(value.claims)
            if isinstance(claims.get("exp"), str) and claims["exp"] in EXPIRY:
                claims["exp"] = int(time.time()) + EXPIRY[claims["exp"]]
            return jwt.encode(claims, JWT_SECRET, algorithm="HS256")
        if isinstance(value, dict):
            return {self.resolve(k): self.resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        return value

    async def state(self) -> State:
        rooms = await self.api.get("/rooms", self.alice)
        me = await self.api.get("/users/me", self.alice)
        assert rooms.status == 200 and me.status == 200, (rooms.body, me.body)
        presence = {"online"}  # not the database: alice's sockets come and go
        return State(rooms.body["rooms"], {k: v for k, v in me.body.items() if k not in presence})

    async def before(self) -> State:
        """The state before an input (kept from the last check while nothing was accepted)."""
        if self._state is None:
            self._state = await self.state()
        return self._state

    def accepted(self) -> None:
        """An input was accepted: it may have changed the state, so take it again next time."""
        self._state = None

    async def assert_unchanged(self, what: str) -> None:
        """Refused input changed nothing: the same rooms and profile, and no message of
        alice's rooms changed since (their `changed_after` pages are empty)."""
        before = await self.before()
        after = await self.state()
        assert after == before, f"refused {what} changed the database: {differences(before, after)}"
        for name in WORLD_ROOMS:
            room = next(r for r in before.rooms if r["id"] == self.values[name])
            r = await self.api.get(
                f"/history/room/{room['id']}?changed_after={room['version']}", self.alice
            )
            assert r.status == 200 and r.body["messages"] == [], (
                f"refused {what} changed messages of room {room['id']}: {r.body}"
            )

    def assert_quiet_log(self, what: str) -> None:
        bad = self.logs.take()
        assert not bad, f"{what} logged errors:\n" + "\n".join(bad)


def differences(before: State, after: State) -> list[str]:
    """Which rooms (by id) and which of their keys, or which profile keys, differ."""
    out = [
        f"me.{k}" for k in before.me.keys() | after.me.keys() if before.me.get(k) != after.me.get(k)
    ]
    old = {r["id"]: r for r in before.rooms}
    new = {r["id"]: r for r in after.rooms}
    for room_id in old.keys() | new.keys():
        a, b = old.get(room_id, {}), new.get(room_id, {})
        out += [
            f"room {room_id}.{k}: {a.get(k)!r} -> {b.get(k)!r}"
            for k in a.keys() | b.keys()
            if a.get(k) != b.get(k)
        ]
    return out


def png_bytes() -> bytes:
    buf = BytesIO()
    Image.new("RGB", (8, 8), (20, 120, 220)).save(buf, "PNG")
    return buf.getvalue()


async def upload(api: Api, user: User, body: bytes, content_type: str, name: str) -> str:
    r = await api.request(
        "POST",
        f"/uploads?filename={name}",
        raw=body,
        token=user.access_token,
        headers={"Content-Type": content_type},
    )
    assert r.status == 201, r.body
    return r.body["id"]


async def populate(server: Server, logs: LogWatch) -> World:
    """alice and bob in a group (alice admin) and a DM, each with messages; carol's public
    group; carol banned from alice's group (the history line of her removal and a deleted
    message of alice's in it); an upload and an avatar image of alice's. alice is a server
    admin. bob and carol never connect a socket, so call invites end at once
    ("unavailable") and nothing runs in the background."""
    api = Api(server.port)
    alice, bob, carol = await api.register(), await api.register(), await api.register()
    # As `fastsock admin grant` does: the first account may be anyone's on a shared database.
    await set_server_admin(server.store, alice.username, True)
    group = await api.group(alice, bob, carol)
    removed = await api.delete(f"/rooms/{group}/members/{carol.id}", alice)  # bans her
    assert removed.status == 204, removed.body
    gone = await api.send(alice, group, "soon deleted")
    deleted = await api.delete(f"/messages/{gone['id']}", alice)
    assert deleted.status in (200, 204), deleted.body
    dm = await api.post("/rooms/direct", {"user_id": bob.id}, alice)
    public = await api.group(carol, private=False)
    mine = await api.send(alice, group, "hello from alice")
    theirs = await api.send(bob, group, "hello from bob")
    in_dm = await api.send(bob, dm.body["id"], "psst")
    reacted = await api.request(
        "PUT", f"/messages/{theirs['id']}/reactions/{quote('👍')}", token=alice.access_token
    )
    assert reacted.status == 200, reacted.body
    file_id = await upload(api, alice, b"plain words\n", "text/plain", "notes.txt")
    avatar_id = await upload(api, alice, png_bytes(), "image/png", "me.png")
    history = await api.get(f"/history/room/{group}", alice)
    assert history.status == 200, history.body
    line = next(m for m in history.body["messages"] if m["type"] == "system")
    spare = await api.post("/auth/login", {"username": alice.username, "password": PASSWORD})
    assert spare.status == 200, spare.body
    values = {
        "alice": alice.id,
        "bob": bob.id,
        "carol": carol.id,
        "group": group,
        "dm": dm.body["id"],
        "public": public,
        "mine": mine["id"],
        "theirs": theirs["id"],
        "in_dm": in_dm["id"],
        "gone": gone["id"],
        "line": line["id"],
        "upload": file_id,
        "avatar": avatar_id,
        "access": alice.access_token,
        "refresh": spare.body["refresh_token"],
        "bob_access": bob.access_token,
        "worker": new_id(),  # an SFU worker's id, for the internal API
    }
    return World(server, api, alice, bob, carol, values, logs)
