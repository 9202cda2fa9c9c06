"""Moderation (docs/api.md, "Moderation"): group roles, the ban list, server admins and
deactivated accounts, through the real HTTP API, WebSocket and `fastsock admin` CLI."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tornado.websocket import websocket_connect

from fastsock.app import Server
from fastsock.config import Settings
from fastsock.services.clock import now
from fastsock.store.sqlite.store import SqliteStore
from tests.conftest import make_settings
from tests.handlers.test_auth import assert_error
from tests.store.documents import count_reads
from tests.support import PASSWORD, Api, Socket, User

FASTSOCK = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "fastsock"
REMOVED = "you were removed from this group; an admin can let you back"


async def roles(api: Api, room_id: str, user: User) -> dict[str, str]:
    r = await api.get(f"/rooms/{room_id}", user)
    assert r.status == 200, r.body
    return {m["user_id"]: m["role"] for m in r.body["members"]}


async def history_events(api: Api, room_id: str, user: User) -> list[dict]:
    r = await api.get(f"/history/room/{room_id}", user)
    assert r.status == 200, r.body
    return [m["system"] for m in reversed(r.body["messages"]) if m["type"] == "system"]


# --- roles ----------------------------------------------------------------------------------


async def test_admins_promote_and_demote_and_a_group_keeps_one_admin(api: Api) -> None:
    alice, bob, carol = [await api.register() for _ in range(3)]
    room = await api.group(alice, bob, carol)
    carol_ws = await api.ws(carol)

    r = await api.patch(f"/rooms/{room}/members/{carol.id}", {"role": "admin"}, bob)
    assert_error(r, 403, "forbidden")  # members cannot
    r = await api.patch(f"/rooms/{room}/members/{bob.id}", {"role": "admin"}, alice)
    assert r.status == 200, r.body
    assert {m["user_id"]: m["role"] for m in r.body["members"]}[bob.id] == "admin"
    event = await carol_ws.expect("room.updated")
    assert (event["user_id"], event["role"], event["room"]["id"]) == (bob.id, "admin", room)

    # Bob, an admin now, demotes alice; then he is the last admin and cannot step down.
    r = await api.patch(f"/rooms/{room}/members/{alice.id}", {"role": "member"}, bob)
    assert r.status == 200, r.body
    assert await roles(api, room, carol) == {
        alice.id: "member",
        bob.id: "admin",
        carol.id: "member",
    }
    r = await api.patch(f"/rooms/{room}/members/{bob.id}", {"role": "member"}, bob)
    assert_error(r, 409, "conflict")
    r = await api.patch(f"/rooms/{room}/members/{alice.id}", {"role": "admin"}, alice)
    assert_error(r, 403, "forbidden")  # alice is no admin any more
    assert await roles(api, room, carol) == {
        alice.id: "member",
        bob.id: "admin",
        carol.id: "member",
    }
    lines = [
        (s["event"], s["user_ids"], s.get("role")) for s in await history_events(api, room, carol)
    ]
    assert lines[-2:] == [
        ("role_changed", [bob.id], "admin"),
        ("role_changed", [alice.id], "member"),
    ]


async def test_role_changes_refuse_bad_input_and_direct_rooms(api: Api) -> None:
    alice, bob, carol = [await api.register() for _ in range(3)]
    room = await api.group(alice, bob)
    for body in ({"role": "owner"}, {}, {"role": None}, {"role": "admin", "x": 1}):
        r = await api.patch(f"/rooms/{room}/members/{bob.id}", body, alice)
        assert_error(r, 400, "invalid_request")
    r = await api.patch(f"/rooms/{room}/members/{carol.id}", {"role": "admin"}, alice)
    assert_error(r, 404, "not_found")  # not a member
    r = await api.patch(f"/rooms/{room}/members/nope", {"role": "admin"}, alice)
    assert_error(r, 400, "invalid_request", "user_id")
    r = await api.patch(f"/rooms/{room}/members/{bob.id}", {"role": "admin"}, carol)
    assert_error(r, 403, "not_a_member")
    dm = (await api.post("/rooms/direct", {"user_id": bob.id}, alice)).body["id"]
    r = await api.patch(f"/rooms/{dm}/members/{bob.id}", {"role": "admin"}, alice)
    assert_error(r, 403, "forbidden")
    assert (await roles(api, room, alice))[bob.id] == "member"


# --- bans -----------------------------------------------------------------------------------


async def test_a_removed_member_cannot_rejoin_until_an_admin_lets_them(api: Api) -> None:
    alice, bob, carol = [await api.register() for _ in range(3)]
    room = await api.group(alice, bob, carol, private=False)

    assert (await api.delete(f"/rooms/{room}/members/{bob.id}", alice)).status == 204
    r = await api.post(f"/rooms/{room}/join", None, bob)
    assert_error(r, 403, "forbidden")
    assert r.body["error"]["message"] == REMOVED
    r = await api.get(f"/rooms/{room}/bans", alice)
    assert r.status == 200, r.body
    [ban] = r.body["bans"]
    assert (ban["user_id"], ban["banned_by"]) == (bob.id, alice.id)
    assert ban["banned_at"].endswith("Z")
    assert_error(await api.get(f"/rooms/{room}/bans", carol), 403, "forbidden")
    assert_error(await api.get(f"/rooms/{room}/bans", bob), 403, "not_a_member")
    assert_error(await api.delete(f"/rooms/{room}/bans/{bob.id}", carol), 403, "forbidden")

    assert (await api.delete(f"/rooms/{room}/bans/{bob.id}", alice)).status == 204
    assert_error(await api.delete(f"/rooms/{room}/bans/{bob.id}", alice), 404, "not_found")
    assert (await api.get(f"/rooms/{room}/bans", alice)).body == {"bans": []}
    assert (await api.post(f"/rooms/{room}/join", None, bob)).status == 200
    events = [(s["event"], s["user_ids"]) for s in await history_events(api, room, alice)]
    assert ("member_unbanned", [bob.id]) in events


async def test_leaving_bans_nothing_and_an_admin_adding_lifts_the_ban(api: Api) -> None:
    alice, bob, carol = [await api.register() for _ in range(3)]
    room = await api.group(alice, bob, carol, private=False)
    assert (await api.delete(f"/rooms/{room}/members/{carol.id}", carol)).status == 204
    assert (await api.post(f"/rooms/{room}/join", None, carol)).status == 200

    assert (await api.delete(f"/rooms/{room}/members/{bob.id}", alice)).status == 204
    assert [b["user_id"] for b in (await api.get(f"/rooms/{room}/bans", alice)).body["bans"]] == [
        bob.id
    ]
    r = await api.post(f"/rooms/{room}/members", {"user_ids": [bob.id]}, alice)
    assert r.status == 200, r.body
    assert (await api.get(f"/rooms/{room}/bans", alice)).body == {"bans": []}
    # Left again by himself: still not banned.
    assert (await api.delete(f"/rooms/{room}/members/{bob.id}", bob)).status == 204
    assert (await api.post(f"/rooms/{room}/join", None, bob)).status == 200


async def room_entry(api: Api, user: User, room_id: str) -> dict:
    r = await api.get("/rooms", user)
    assert r.status == 200, r.body
    return next(r for r in r.body["rooms"] if r["id"] == room_id)


async def test_members_added_joining_or_let_back_start_caught_up(api: Api) -> None:
    """Their read pointer starts at the room's newest message: no old unread messages, no
    old mentions (`@room` before they came), and the room opens at its end."""
    alice, carol, erin, frank = [await api.register() for _ in range(4)]
    room = await api.group(alice, carol, private=False)
    await api.send(alice, room, "before anyone new")
    assert (await api.delete(f"/rooms/{room}/members/{carol.id}", alice)).status == 204
    await api.send(alice, room, "@room while carol is away")
    newest = (await api.send(alice, room, "the newest"))["id"]

    r = await api.post(f"/rooms/{room}/members", {"user_ids": [erin.id, carol.id]}, alice)
    assert r.status == 200, r.body
    assert (await api.post(f"/rooms/{room}/join", None, frank)).status == 200
    for user in (erin, carol, frank):
        entry = await room_entry(api, user, room)
        assert (entry["unread_count"], entry["mention_count"]) == (0, 0), user
        # At the newest message (for frank: the history line about erin and carol).
        assert entry["last_read_message_id"] >= newest
    later = await api.send(alice, room, "@room after")
    entry = await room_entry(api, erin, room)
    assert (entry["unread_count"], entry["mention_count"]) == (1, 1)
    assert later["id"] > newest


# --- server admins --------------------------------------------------------------------------


def admin_cli(settings: Settings, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`fastsock admin ...` as a real process, on the test's database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTSOCK_")}
    env["FASTSOCK_DATA_DIR"] = str(settings.data_dir)
    if settings.mongo_uri:
        env["FASTSOCK_MONGO_URI"] = settings.mongo_uri
    return subprocess.run(
        [str(FASTSOCK), "admin", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Api]:
    """A server on the settings' database, for the block (the CLI runs between two: the
    embedded database serves one process at a time)."""
    server = Server(settings)
    await server.start()
    try:
        yield Api(server.port)
    finally:
        await server.stop()


async def test_the_first_account_and_those_granted_are_server_admins(
    db_uri: str | None, tmp_path: Path
) -> None:
    settings = make_settings(db_uri, tmp_path)
    async with running(settings) as api:
        alice, bob, carol = [await api.register() for _ in range(3)]
        assert (await api.get("/users/me", alice)).body["server_admin"] is True
        assert (await api.get("/users/me", bob)).body["server_admin"] is False
        assert "server_admin" not in (await api.get(f"/users/{alice.id}", bob)).body
        assert (await api.ws(bob)).ready["user"]["server_admin"] is False
        deactivate = f"/admin/users/{carol.id}/deactivate"
        assert_error(await api.post(deactivate, None, bob), 403, "forbidden")

    done = admin_cli(settings, tmp_path, "grant", bob.username.upper())
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{bob.username} is now a server admin"
    async with running(settings) as api:
        assert (await api.get("/users/me", bob)).body["server_admin"] is True
        assert (await api.ws(bob)).ready["user"]["server_admin"] is True
        r = await api.post(deactivate, None, bob)
        assert r.status == 200 and r.body["deactivated"] is True, r.body

    done = admin_cli(settings, tmp_path, "revoke", bob.username)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{bob.username} is no longer a server admin"
    refused = admin_cli(settings, tmp_path, "revoke", alice.username)
    assert refused.returncode == 1
    assert "is the first account: always a server admin" in refused.stderr
    unknown = admin_cli(settings, tmp_path, "grant", "nobody-here")
    assert unknown.returncode == 1 and "no user named 'nobody-here'" in unknown.stderr
    async with running(settings) as api:
        assert (await api.get("/users/me", bob)).body["server_admin"] is False
        r = await api.post(f"/admin/users/{carol.id}/reactivate", None, bob)
        assert_error(r, 403, "forbidden")
        assert (await api.get("/users/me", alice)).body["server_admin"] is True


async def test_server_admins_cannot_deactivate_each_other_nor_the_first_account(
    server: Server, api: Api
) -> None:
    alice, bob, carol = [await api.register() for _ in range(3)]  # alice first, alone
    for admin in (bob, carol):
        await server.store.users.update(admin.id, {"server_admin": True})
    r = await api.post(f"/admin/users/{carol.id}/deactivate", None, bob)
    assert_error(r, 409, "conflict")
    assert f"`fastsock admin revoke {carol.username}`" in r.body["error"]["message"]
    r = await api.post(f"/admin/users/{alice.id}/deactivate", None, bob)
    assert_error(r, 409, "conflict")
    assert r.body["error"]["message"] == "the first account cannot be deactivated"
    assert (await api.get("/users/me", carol)).status == 200
    assert (await api.get("/users/me", alice)).status == 200

    await server.store.users.update(carol.id, {"server_admin": False})  # revoked
    r = await api.post(f"/admin/users/{carol.id}/deactivate", None, bob)
    assert r.status == 200 and r.body["deactivated"] is True, r.body


# --- deactivation ---------------------------------------------------------------------------


async def test_deactivation_closes_sockets_and_refuses_tokens_login_and_refresh(api: Api) -> None:
    alice, bob, carol = [await api.register() for _ in range(3)]
    room = await api.group(alice, bob)
    await api.send(bob, room, "bob was here")
    tabs = [await api.ws(bob), await api.ws(bob)]
    watcher = await api.ws(alice)

    assert_error(
        await api.post(f"/admin/users/{alice.id}/deactivate", None, alice), 409, "conflict"
    )
    assert_error(
        await api.post("/admin/users/0123456789abcdef01234567/deactivate", None, alice),
        404,
        "not_found",
    )
    r = await api.post(f"/admin/users/{bob.id}/deactivate", None, alice)
    assert r.status == 200, r.body
    assert r.body["id"] == bob.id and r.body["deactivated"] is True
    for ws in tabs:
        assert await ws.close_code() == 4403
    seen = await watcher.expect("user.updated", lambda f: f["data"]["user"]["id"] == bob.id)
    assert seen["user"]["deactivated"] is True

    assert_error(await api.get("/users/me", bob), 401, "unauthenticated")
    r = await api.post("/auth/refresh", {"refresh_token": bob.refresh_token})
    assert_error(r, 401, "unauthenticated")
    r = await api.post("/auth/login", {"username": bob.username, "password": PASSWORD})
    assert_error(r, 403, "forbidden")
    assert r.body["error"]["message"] == "this account is deactivated"
    r = await api.post("/auth/login", {"username": bob.username, "password": "wrong password!"})
    assert_error(r, 401, "unauthenticated")  # the password first: no word on the account
    again = Socket(await websocket_connect(f"ws://127.0.0.1:{api.port}/ws"))
    await again.send("auth", {"token": bob.access_token})
    assert await again.close_code() == 4401  # refused like any signed-out token
    # Messages and memberships stay; the directory leaves bob out, his profile says so.
    texts = [m["text"] for m in (await api.get(f"/history/room/{room}", alice)).body["messages"]]
    assert "bob was here" in texts
    assert bob.id in (await api.get(f"/rooms/{room}", alice)).body["member_ids"]
    found = (await api.get(f"/users?q={bob.username}", alice)).body["users"]
    assert found == []
    assert (await api.get(f"/users/{bob.id}", alice)).body["deactivated"] is True
    assert_error(await api.post(f"/admin/users/{bob.id}/deactivate", None, carol), 403, "forbidden")

    r = await api.post(f"/admin/users/{bob.id}/reactivate", None, alice)
    assert r.status == 200 and r.body["deactivated"] is False, r.body
    r = await api.post("/auth/login", {"username": bob.username, "password": PASSWORD})
    assert r.status == 200, r.body
    assert (
        await api.get("/users/me", User(bob.id, bob.username, r.body["access_token"], ""))
    ).status == 200
    assert [u["id"] for u in (await api.get(f"/users?q={bob.username}", alice)).body["users"]] == [
        bob.id
    ]


async def test_a_deactivated_accounts_token_stays_refused_after_a_restart(
    db_uri: str | None, tmp_path: Path
) -> None:
    settings = make_settings(db_uri, tmp_path)
    async with running(settings) as api:
        alice, bob = await api.register(), await api.register()
        r = await api.post(f"/admin/users/{bob.id}/deactivate", None, alice)
        assert r.status == 200, r.body
    async with running(settings) as api:
        assert_error(await api.get("/users/me", bob), 401, "unauthenticated")
        assert (await api.get("/users/me", alice)).status == 200


async def test_the_access_token_check_reads_nothing_more_per_request(
    server: Server, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deactivation is enforced by the revoked-login check requests already make (at most one
    read per login per CONFIRM_S), never a read of the user per request."""
    if not isinstance(server.store, SqliteStore):
        pytest.skip("counts the embedded store's reader jobs")
    alice = await api.register()
    assert (await api.get("/rooms/public", alice)).status == 200  # the login is confirmed
    jobs = count_reads(server.store, monkeypatch)
    for _ in range(10):
        assert (await api.get("/rooms/public", alice)).status == 200
    assert not [j for j in jobs if j.startswith(("users.", "tokens."))], jobs


async def test_a_login_that_raced_the_deactivation_is_ended_too(
    server: Server, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The account is deactivated while its password is being checked (after the login read
    it): the login that was being issued is refused and its refresh token revoked."""
    assert server.ctx is not None
    services = server.ctx.services
    alice, bob = await api.register(), await api.register()
    verify = services.accounts.hasher.verify

    async def deactivated_meanwhile(password: str, stored: str) -> bool:
        ok = await verify(password, stored)
        r = await api.post(f"/admin/users/{bob.id}/deactivate", None, alice)
        assert r.status == 200, r.body
        return ok

    monkeypatch.setattr(services.accounts.hasher, "verify", deactivated_meanwhile)
    issued: list[str] = []
    session = services.accounts._session

    async def recorded(user: dict, family: str | None) -> dict:
        out = await session(user, family)
        issued.append(out["refresh_token"])
        return out

    monkeypatch.setattr(services.accounts, "_session", recorded)
    r = await api.post("/auth/login", {"username": bob.username, "password": PASSWORD})
    assert_error(r, 403, "forbidden")
    [refresh] = issued
    assert_error(
        await api.post("/auth/refresh", {"refresh_token": refresh}), 401, "unauthenticated"
    )


async def test_the_stored_account_decides_refresh_and_login(server: Server, api: Api) -> None:
    """An account marked deactivated in the store whose logins were not revoked (the request
    that deactivated it failed half-way): refreshing is refused and ends the login, logging in
    is refused."""
    bob = await api.register()
    await server.store.users.update(bob.id, {"deactivated_at": now()})
    r = await api.post("/auth/refresh", {"refresh_token": bob.refresh_token})
    assert_error(r, 401, "unauthenticated")
    assert_error(await api.get("/users/me", bob), 401, "unauthenticated")
    r = await api.post("/auth/login", {"username": bob.username, "password": PASSWORD})
    assert_error(r, 403, "forbidden")
