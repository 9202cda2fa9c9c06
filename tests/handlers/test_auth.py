"""Accounts over real HTTP: register, login, access-token checks, refresh rotation, logout,
profiles and the user directory."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from typing import Any

import jwt
import pytest

from tests.conftest import JWT_SECRET
from tests.support import PASSWORD, Api, Response, User

USER_KEYS = {
    "id",
    "username",
    "display_name",
    "avatar_url",
    "status_message",
    "online",
    "created_at",
    "deactivated",
}
OWN_KEYS = USER_KEYS | {"server_admin"}  # the user's own view (sessions, /users/me)
SESSION_KEYS = {"user", "access_token", "refresh_token"}
UNKNOWN_ID = "0123456789abcdef01234567"


# --- helpers --------------------------------------------------------------------------------


def assert_error(r: Response, status: int, code: str, field: str | None = None) -> None:
    """Every error is `{"error": {"code", "message"}}` (plus `field` for invalid input)."""
    assert r.status == status, (r.status, r.body)
    assert isinstance(r.body, dict) and set(r.body) == {"error"}, r.body
    err = r.body["error"]
    assert isinstance(err, dict), r.body
    assert set(err) <= {"code", "message", "field"}, err
    assert err["code"] == code, err
    assert isinstance(err["message"], str) and err["message"], err
    if field is not None:
        assert err.get("field") == field, err


def assert_no_secrets(body: Any, *passwords: str) -> None:
    """No password, hash or hash-shaped value in a JSON document that carries users."""
    text = json.dumps(body)
    assert "password" not in text.lower(), text
    assert "scrypt$" not in text, text
    for pw in (PASSWORD, *passwords):
        assert pw not in text, text


def assert_user(user: Any, *, username: str | None = None, own: bool = False) -> None:
    assert isinstance(user, dict) and set(user) == (OWN_KEYS if own else USER_KEYS), user
    assert isinstance(user["id"], str) and len(user["id"]) == 24
    assert user["created_at"].endswith("Z")
    assert isinstance(user["online"], bool)
    if username is not None:
        assert user["username"] == username
    assert_no_secrets(user)


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def craft(
    sub: str,
    typ: str = "access",
    *,
    exp_in: int = 900,
    secret: str = JWT_SECRET,
    algorithm: str = "HS256",
    drop: tuple[str, ...] = (),
) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": sub,
        "typ": typ,
        "iat": now - 5,
        "exp": now + exp_in,
        "jti": uuid.uuid4().hex,
    }
    for key in drop:
        claims.pop(key)
    return jwt.encode(claims, secret, algorithm=algorithm)


def unsigned(sub: str) -> str:
    """An `alg: none` token: header and claims, empty signature."""
    now = int(time.time())
    header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    claims = {"sub": sub, "typ": "access", "iat": now, "exp": now + 900, "jti": "x" * 22}
    return f"{header}.{b64url(json.dumps(claims).encode())}."


async def me_with(api: Api, authorization: str | None) -> Response:
    headers = {} if authorization is None else {"Authorization": authorization}
    return await api.request("GET", "/users/me", headers=headers)


async def register_raw(api: Api, body: Any) -> Response:
    return await api.post("/auth/register", body)


# --- register -------------------------------------------------------------------------------


async def test_register_returns_session_and_public_user(api: Api) -> None:
    r = await register_raw(api, {"username": "alice", "password": PASSWORD})
    assert r.status == 201, r.body
    assert set(r.body) == SESSION_KEYS
    assert_user(r.body["user"], username="alice", own=True)
    assert r.body["user"]["display_name"] == "alice"
    assert r.body["user"]["status_message"] == ""
    assert r.body["user"]["avatar_url"] is None
    assert isinstance(r.body["access_token"], str) and r.body["access_token"].count(".") == 2
    assert isinstance(r.body["refresh_token"], str) and r.body["refresh_token"].count(".") == 2
    assert r.body["access_token"] != r.body["refresh_token"]
    me = await api.request("GET", "/users/me", token=r.body["access_token"])
    assert me.status == 200 and me.body["id"] == r.body["user"]["id"]


async def test_register_with_display_name(api: Api) -> None:
    r = await register_raw(
        api, {"username": "carol", "password": PASSWORD, "display_name": "  Carol C.  "}
    )
    assert r.status == 201, r.body
    assert r.body["user"]["display_name"] == "Carol C."


async def test_register_normalises_username_to_lowercase(api: Api) -> None:
    r = await register_raw(api, {"username": "  MiXeD.Case_1 ", "password": PASSWORD})
    assert r.status == 201, r.body
    assert r.body["user"]["username"] == "mixed.case_1"
    login = await api.post("/auth/login", {"username": "MIXED.CASE_1", "password": PASSWORD})
    assert login.status == 200, login.body
    assert login.body["user"]["id"] == r.body["user"]["id"]


@pytest.mark.parametrize(
    "username",
    [
        "ab",  # too short
        "a" * 33,  # too long
        "bad name",
        "bad!",
        "slash/es",
        "émile",
        "",
        123,
        None,
        ["alice"],
        {"name": "alice"},
    ],
)
async def test_register_refuses_invalid_usernames(api: Api, username: Any) -> None:
    r = await register_raw(api, {"username": username, "password": PASSWORD})
    assert_error(r, 400, "invalid_request", field="username")


async def test_register_accepts_username_bounds(api: Api) -> None:
    for name in ("abc", "a" * 32, "a_b.c-9"):
        r = await register_raw(api, {"username": name, "password": PASSWORD})
        assert r.status == 201, (name, r.body)
        assert r.body["user"]["username"] == name


async def test_register_missing_username(api: Api) -> None:
    r = await register_raw(api, {"password": PASSWORD})
    assert_error(r, 400, "invalid_request", field="username")


@pytest.mark.parametrize("password", ["1234567", "x" * 1025, "", 12345678, None, ["x" * 10]])
async def test_register_refuses_invalid_passwords(api: Api, password: Any) -> None:
    r = await register_raw(api, {"username": "dave", "password": password})
    assert_error(r, 400, "invalid_request", field="password")
    # Nothing was created: the name is still free.
    ok = await register_raw(api, {"username": "dave", "password": PASSWORD})
    assert ok.status == 201, ok.body


async def test_register_accepts_password_bounds(api: Api) -> None:
    for name, pw in (("eve8", "x" * 8), ("eve1024", "y" * 1024)):
        r = await register_raw(api, {"username": name, "password": pw})
        assert r.status == 201, r.body
        assert_no_secrets(r.body["user"], pw)
        login = await api.post("/auth/login", {"username": name, "password": pw})
        assert login.status == 200, login.body


async def test_register_duplicate_username_conflicts(api: Api) -> None:
    first = await register_raw(api, {"username": "frank", "password": PASSWORD})
    assert first.status == 201
    again = await register_raw(api, {"username": "frank", "password": "another password"})
    assert_error(again, 409, "conflict")
    upper = await register_raw(api, {"username": "FRANK", "password": "another password"})
    assert_error(upper, 409, "conflict")
    # The original account keeps its password.
    login = await api.post("/auth/login", {"username": "frank", "password": PASSWORD})
    assert login.status == 200 and login.body["user"]["id"] == first.body["user"]["id"]


@pytest.mark.parametrize("extra", ["is_admin", "password_hash", "id"])
async def test_register_refuses_unknown_fields(api: Api, extra: str) -> None:
    r = await register_raw(api, {"username": "gina", "password": PASSWORD, extra: True})
    assert_error(r, 400, "invalid_request", field=extra)


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b'"text"', b"\xff\xfe"])
async def test_register_refuses_non_object_bodies(api: Api, raw: bytes) -> None:
    r = await api.request(
        "POST", "/auth/register", raw=raw, headers={"Content-Type": "application/json"}
    )
    assert_error(r, 400, "invalid_request")


async def test_register_refuses_bad_display_name(api: Api) -> None:
    for bad in ("", "   ", "x" * 65, "bell\x07", 42):
        r = await register_raw(api, {"username": "hank", "password": PASSWORD, "display_name": bad})
        assert_error(r, 400, "invalid_request", field="display_name")


# --- login ----------------------------------------------------------------------------------


async def test_login_returns_a_fresh_session(api: Api) -> None:
    user = await api.register("ivan")
    r = await api.post("/auth/login", {"username": "ivan", "password": PASSWORD})
    assert r.status == 200, r.body
    assert set(r.body) == SESSION_KEYS
    assert_user(r.body["user"], username="ivan", own=True)
    assert r.body["user"]["id"] == user.id
    assert r.body["refresh_token"] != user.refresh_token
    me = await api.request("GET", "/users/me", token=r.body["access_token"])
    assert me.status == 200 and me.body["id"] == user.id


async def test_login_wrong_password_and_unknown_user_look_the_same(api: Api) -> None:
    await api.register("judy")
    wrong = await api.post("/auth/login", {"username": "judy", "password": "wrong password"})
    unknown = await api.post("/auth/login", {"username": "nobody", "password": PASSWORD})
    assert_error(wrong, 401, "unauthenticated")
    assert_error(unknown, 401, "unauthenticated")
    assert wrong.body == unknown.body
    assert "access_token" not in json.dumps(wrong.body)


async def test_login_does_not_truncate_long_passwords(api: Api) -> None:
    """A password that merely starts with the real (maximum-length) one is not the password."""
    pw = "y" * 1024
    r = await register_raw(api, {"username": "lara", "password": pw})
    assert r.status == 201
    assert (await api.post("/auth/login", {"username": "lara", "password": pw})).status == 200
    longer = await api.post("/auth/login", {"username": "lara", "password": pw + "z"})
    assert longer.status in (400, 401), longer.body
    assert "access_token" not in json.dumps(longer.body)


async def test_login_password_is_case_sensitive(api: Api) -> None:
    await api.register("kate")
    r = await api.post("/auth/login", {"username": "kate", "password": PASSWORD.upper()})
    assert_error(r, 401, "unauthenticated")


@pytest.mark.parametrize(
    "body", [{}, {"username": "kim"}, {"password": PASSWORD}, {"username": 1, "password": 2}]
)
async def test_login_refuses_missing_or_non_string_credentials(api: Api, body: Any) -> None:
    r = await api.post("/auth/login", body)
    assert_error(r, 400, "invalid_request")


# --- access tokens --------------------------------------------------------------------------


async def test_crafted_valid_token_is_accepted(api: Api) -> None:
    """Control for the refusals below: a well-formed HS256 token with the test secret works."""
    user = await api.register()
    r = await me_with(api, f"Bearer {craft(user.id)}")
    assert r.status == 200 and r.body["id"] == user.id
    lower = await me_with(api, f"bearer {user.access_token}")
    assert lower.status == 200


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Token abc.def.ghi",
        "Bearer not-a-jwt",
        "Bearer a.b.c",
    ],
)
async def test_missing_or_malformed_authorization_header(api: Api, header: str | None) -> None:
    r = await me_with(api, header)
    assert_error(r, 401, "unauthenticated")


async def test_raw_token_without_bearer_scheme_is_refused(api: Api) -> None:
    user = await api.register()
    r = await me_with(api, user.access_token)
    assert_error(r, 401, "unauthenticated")


async def test_expired_access_token_is_refused(api: Api) -> None:
    user = await api.register()
    r = await me_with(api, f"Bearer {craft(user.id, exp_in=-60)}")
    assert_error(r, 401, "unauthenticated")


async def test_tampered_signature_is_refused(api: Api) -> None:
    user = await api.register()
    header, claims, sig = user.access_token.split(".")
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    r = await me_with(api, f"Bearer {header}.{claims}.{flipped}")
    assert_error(r, 401, "unauthenticated")


async def test_tampered_claims_are_refused(api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    header, claims, sig = alice.access_token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    payload["sub"] = bob.id
    forged = f"{header}.{b64url(json.dumps(payload).encode())}.{sig}"
    r = await me_with(api, f"Bearer {forged}")
    assert_error(r, 401, "unauthenticated")


async def test_alg_none_token_is_refused(api: Api) -> None:
    user = await api.register()
    r = await me_with(api, f"Bearer {unsigned(user.id)}")
    assert_error(r, 401, "unauthenticated")


async def test_token_signed_with_another_secret_is_refused(api: Api) -> None:
    user = await api.register()
    token = craft(user.id, secret="another-secret-" + "y" * 40)
    r = await me_with(api, f"Bearer {token}")
    assert_error(r, 401, "unauthenticated")


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_hs512_token_with_right_secret_is_refused(api: Api) -> None:
    user = await api.register()
    token = craft(user.id, algorithm="HS512")
    r = await me_with(api, f"Bearer {token}")
    assert_error(r, 401, "unauthenticated")


@pytest.mark.parametrize("claim", ["sub", "typ", "iat", "exp", "jti"])
async def test_token_missing_a_required_claim_is_refused(api: Api, claim: str) -> None:
    user = await api.register()
    r = await me_with(api, f"Bearer {craft(user.id, drop=(claim,))}")
    assert_error(r, 401, "unauthenticated")


async def test_refresh_token_is_not_an_access_token(api: Api) -> None:
    user = await api.register()
    r = await me_with(api, f"Bearer {user.refresh_token}")
    assert_error(r, 401, "unauthenticated")
    crafted = await me_with(api, f"Bearer {craft(user.id, typ='refresh')}")
    assert_error(crafted, 401, "unauthenticated")


# --- refresh rotation -----------------------------------------------------------------------


async def refresh(api: Api, token: Any) -> Response:
    return await api.post("/auth/refresh", {"refresh_token": token})


async def test_refresh_issues_a_new_pair(api: Api) -> None:
    user = await api.register()
    r = await refresh(api, user.refresh_token)
    assert r.status == 200, r.body
    assert set(r.body) == SESSION_KEYS
    assert_user(r.body["user"], username=user.username, own=True)
    assert r.body["refresh_token"] != user.refresh_token
    assert r.body["access_token"] != user.access_token
    me = await api.request("GET", "/users/me", token=r.body["access_token"])
    assert me.status == 200 and me.body["id"] == user.id
    # The new refresh token rotates in turn.
    again = await refresh(api, r.body["refresh_token"])
    assert again.status == 200, again.body


async def test_refresh_reuse_revokes_the_family(api: Api) -> None:
    user = await api.register()
    other_session = await api.post("/auth/login", {"username": user.username, "password": PASSWORD})
    assert other_session.status == 200
    first = await refresh(api, user.refresh_token)
    assert first.status == 200
    second = await refresh(api, first.body["refresh_token"])
    assert second.status == 200
    newest = second.body["refresh_token"]

    reused = await refresh(api, user.refresh_token)
    assert_error(reused, 401, "unauthenticated")
    # The whole family is gone, including its newest token...
    assert_error(await refresh(api, newest), 401, "unauthenticated")
    assert_error(await refresh(api, first.body["refresh_token"]), 401, "unauthenticated")
    # ...but another login of the same account is a different family and keeps working.
    ok = await refresh(api, other_session.body["refresh_token"])
    assert ok.status == 200, ok.body


async def test_concurrent_refresh_with_one_token_succeeds_at_most_once(api: Api) -> None:
    user = await api.register()
    results = await asyncio.gather(*(refresh(api, user.refresh_token) for _ in range(5)))
    ok = [r for r in results if r.status == 200]
    assert len(ok) <= 1, [r.status for r in results]
    for r in results:
        if r.status != 200:
            assert_error(r, 401, "unauthenticated")
    # A copy was presented after rotation, so the family is revoked.
    for r in ok:
        assert_error(await refresh(api, r.body["refresh_token"]), 401, "unauthenticated")


async def test_access_token_is_not_a_refresh_token(api: Api) -> None:
    user = await api.register()
    r = await refresh(api, user.access_token)
    assert_error(r, 401, "unauthenticated")
    # And the real refresh token was not disturbed.
    assert (await refresh(api, user.refresh_token)).status == 200


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c"])
async def test_refresh_refuses_garbage(api: Api, token: str) -> None:
    r = await refresh(api, token)
    assert_error(r, 401, "unauthenticated")


@pytest.mark.parametrize(
    "body", [{}, {"refresh_token": 42}, {"refresh_token": None}, {"refresh_token": "x\ud800y"}]
)
@pytest.mark.parametrize("path", ["/auth/refresh", "/auth/logout"])
async def test_refresh_and_logout_refuse_a_malformed_body(api: Api, path: str, body: dict) -> None:
    user = await api.register()
    r = await api.post(path, body, user)
    assert_error(r, 400, "invalid_request", field="refresh_token")
    assert (await refresh(api, user.refresh_token)).status == 200  # nothing was revoked


async def test_refresh_refuses_forged_and_unknown_tokens(api: Api) -> None:
    user = await api.register()
    other_secret = craft(user.id, "refresh", secret="z" * 48)
    assert_error(await refresh(api, other_secret), 401, "unauthenticated")
    # Right secret, but never issued (no stored record).
    never_issued = craft(user.id, "refresh")
    assert_error(await refresh(api, never_issued), 401, "unauthenticated")
    expired = craft(user.id, "refresh", exp_in=-60)
    assert_error(await refresh(api, expired), 401, "unauthenticated")


# --- logout ---------------------------------------------------------------------------------


async def test_logout_requires_an_access_token(api: Api) -> None:
    user = await api.register()
    r = await api.post("/auth/logout", {"refresh_token": user.refresh_token})
    assert_error(r, 401, "unauthenticated")
    # Using the refresh token as the bearer is not enough either.
    r2 = await api.request(
        "POST", "/auth/logout", {"refresh_token": user.refresh_token}, token=user.refresh_token
    )
    assert_error(r2, 401, "unauthenticated")
    assert (await refresh(api, user.refresh_token)).status == 200


async def test_logout_revokes_the_refresh_token(api: Api) -> None:
    user = await api.register()
    r = await api.post("/auth/logout", {"refresh_token": user.refresh_token}, user)
    assert r.status == 204, r.body
    assert r.body is None
    assert_error(await refresh(api, user.refresh_token), 401, "unauthenticated")


async def test_logout_after_rotation_revokes_the_current_token(api: Api) -> None:
    user = await api.register()
    rotated = await refresh(api, user.refresh_token)
    assert rotated.status == 200
    current = rotated.body["refresh_token"]
    r = await api.request(
        "POST", "/auth/logout", {"refresh_token": current}, token=rotated.body["access_token"]
    )
    assert r.status == 204
    assert_error(await refresh(api, current), 401, "unauthenticated")


async def test_logout_with_someone_elses_refresh_token_is_refused(api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    r = await api.post("/auth/logout", {"refresh_token": bob.refresh_token}, alice)
    assert r.status in (401, 403), r.body
    assert_error(r, r.status, "unauthenticated" if r.status == 401 else "forbidden")
    # Bob's session survived.
    ok = await refresh(api, bob.refresh_token)
    assert ok.status == 200, ok.body


async def test_logout_refuses_an_access_token_in_the_body(api: Api) -> None:
    user = await api.register()
    r = await api.post("/auth/logout", {"refresh_token": user.access_token}, user)
    assert_error(r, 401, "unauthenticated")
    assert (await refresh(api, user.refresh_token)).status == 200


# --- profiles -------------------------------------------------------------------------------


async def test_get_me(api: Api) -> None:
    user = await api.register("lena")
    r = await api.get("/users/me", user)
    assert r.status == 200
    assert_user(r.body, username="lena", own=True)
    assert r.body["id"] == user.id


async def test_patch_me_updates_and_persists(api: Api) -> None:
    user = await api.register("mona")
    r = await api.patch(
        "/users/me", {"display_name": "  Mona L. ", "status_message": "in a meeting"}, user
    )
    assert r.status == 200, r.body
    assert_user(r.body, username="mona")
    assert r.body["display_name"] == "Mona L."
    assert r.body["status_message"] == "in a meeting"
    again = await api.get("/users/me", user)
    assert (
        again.body["display_name"] == "Mona L." and again.body["status_message"] == "in a meeting"
    )
    # One field at a time leaves the other untouched; status can be cleared.
    cleared = await api.patch("/users/me", {"status_message": ""}, user)
    assert cleared.status == 200
    assert cleared.body["status_message"] == "" and cleared.body["display_name"] == "Mona L."


async def test_patch_me_accepts_bounds(api: Api) -> None:
    user = await api.register()
    r = await api.patch("/users/me", {"display_name": "d" * 64, "status_message": "s" * 140}, user)
    assert r.status == 200, r.body
    assert r.body["display_name"] == "d" * 64 and r.body["status_message"] == "s" * 140


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"display_name": ""}, "display_name"),
        ({"display_name": "   "}, "display_name"),
        ({"display_name": "d" * 65}, "display_name"),
        ({"display_name": None}, "display_name"),
        ({"display_name": 5}, "display_name"),
        ({"display_name": "nul\x00byte"}, "display_name"),
        ({"status_message": "s" * 141}, "status_message"),
        ({"status_message": ["x"]}, "status_message"),
        ({"status_message": "esc\x1b[31m"}, "status_message"),
        ({"username": "renamed"}, "username"),
        ({"password_hash": "scrypt$1$1$1$a$b"}, "password_hash"),
        ({"display_name": "ok", "bogus": 1}, "bogus"),
    ],
)
async def test_patch_me_refuses_invalid_fields(api: Api, body: dict[str, Any], field: str) -> None:
    user = await api.register("nina")
    r = await api.patch("/users/me", body, user)
    assert_error(r, 400, "invalid_request", field=field)
    unchanged = await api.get("/users/me", user)
    assert unchanged.body["display_name"] == "nina" and unchanged.body["username"] == "nina"


async def test_patch_me_empty_body_is_refused(api: Api) -> None:
    user = await api.register()
    assert_error(await api.patch("/users/me", {}, user), 400, "invalid_request")
    assert_error(await api.patch("/users/me", None, user), 400, "invalid_request")


async def test_profile_endpoints_require_auth(api: Api) -> None:
    assert_error(await api.get("/users/me"), 401, "unauthenticated")
    assert_error(await api.patch("/users/me", {"display_name": "x"}), 401, "unauthenticated")
    assert_error(await api.get("/users"), 401, "unauthenticated")
    assert_error(await api.get(f"/users/{UNKNOWN_ID}"), 401, "unauthenticated")


# --- directory ------------------------------------------------------------------------------


async def test_directory_prefix_search(api: Api) -> None:
    me = await api.register("zed")
    for name in ("alice1", "alina", "bob", "malice"):
        await api.register(name)
    await api.register("quinn", display_name="Alfred Q")

    r = await api.get("/users?q=ali", me)
    assert r.status == 200, r.body
    assert set(r.body) == {"users"}
    assert [u["username"] for u in r.body["users"]] == ["alice1", "alina"]
    for u in r.body["users"]:
        assert_user(u)

    upper = await api.get("/users?q=ALI", me)
    assert [u["username"] for u in upper.body["users"]] == ["alice1", "alina"]

    by_display = await api.get("/users?q=alf", me)
    assert [u["username"] for u in by_display.body["users"]] == ["quinn"]

    none = await api.get("/users?q=lic", me)
    assert none.status == 200 and none.body["users"] == []

    regex = await api.get("/users?q=.%2A", me)  # ".*" must be literal, not a pattern
    assert regex.status == 200 and regex.body["users"] == []

    everyone = await api.get("/users", me)
    names = {u["username"] for u in everyone.body["users"]}
    assert names == {"zed", "alice1", "alina", "bob", "malice", "quinn"}
    assert_no_secrets(everyone.body)


async def test_directory_limit(api: Api) -> None:
    me = await api.register("aaa0")
    for i in range(1, 4):
        await api.register(f"aaa{i}")
    r = await api.get("/users?q=aaa&limit=2", me)
    assert r.status == 200
    assert [u["username"] for u in r.body["users"]] == ["aaa0", "aaa1"]
    assert len((await api.get("/users?limit=1", me)).body["users"]) == 1
    assert len((await api.get("/users?limit=50", me)).body["users"]) == 4


@pytest.mark.parametrize("limit", ["0", "51", "-1", "abc", "1.5", ""])
async def test_directory_limit_bounds(api: Api, limit: str) -> None:
    me = await api.register()
    r = await api.get(f"/users?limit={limit}", me)
    assert_error(r, 400, "invalid_request", field="limit")


async def test_directory_refuses_overlong_query(api: Api) -> None:
    me = await api.register()
    assert_error(await api.get("/users?q=" + "a" * 65, me), 400, "invalid_request", field="q")


async def test_get_user_by_id(api: Api) -> None:
    alice, bob = await api.register("olga"), await api.register("pete")
    r = await api.get(f"/users/{bob.id}", alice)
    assert r.status == 200
    assert_user(r.body, username="pete")
    assert r.body["id"] == bob.id
    upper = await api.get(f"/users/{bob.id.upper()}", alice)
    assert upper.status == 200 and upper.body["id"] == bob.id


@pytest.mark.parametrize("bad", ["nope", "123", "g" * 24, "0" * 25])
async def test_get_user_bad_id(api: Api, bad: str) -> None:
    me = await api.register()
    assert_error(await api.get(f"/users/{bad}", me), 400, "invalid_request")


async def test_get_user_unknown_id(api: Api) -> None:
    me = await api.register()
    assert_error(await api.get(f"/users/{UNKNOWN_ID}", me), 404, "not_found")


async def test_no_user_json_ever_contains_password_material(api: Api) -> None:
    secret_pw = "s3cret-Pass-" + uuid.uuid4().hex
    reg = await register_raw(api, {"username": "rita", "password": secret_pw})
    assert reg.status == 201
    user = User(reg.body["user"]["id"], "rita", reg.body["access_token"], reg.body["refresh_token"])
    bodies = [reg.body["user"]]
    login = await api.post("/auth/login", {"username": "rita", "password": secret_pw})
    bodies.append(login.body)
    bodies.append((await refresh(api, login.body["refresh_token"])).body)
    bodies.append((await api.get("/users/me", user)).body)
    bodies.append((await api.patch("/users/me", {"display_name": "Rita"}, user)).body)
    bodies.append((await api.get(f"/users/{user.id}", user)).body)
    bodies.append((await api.get("/users?q=r", user)).body)
    checked = 0
    for body in bodies:
        assert_no_secrets(body, secret_pw)
        users = [body] if "id" in body else [body.get("user"), *body.get("users", [])]
        for u in users:
            if u is not None:
                assert_user(u, own="server_admin" in u)  # sessions and /users/me
                checked += 1
    assert checked >= len(bodies)


async def test_unknown_endpoint_uses_error_shape(api: Api) -> None:
    assert_error(await api.get("/no/such/thing"), 404, "not_found")


@pytest.mark.parametrize("password", ["pass\x00word!", "pass\u202eword!", "tab\tand\x7fdel"])
async def test_any_password_registration_takes_logs_in(api: Api, password: str) -> None:
    """Registration and login judge a password alike: what one takes the other accepts."""
    user = await api.register(password=password)
    r = await api.post("/auth/login", {"username": user.username, "password": password})
    assert r.status == 200, r.body
