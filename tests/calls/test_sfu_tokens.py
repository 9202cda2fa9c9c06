"""Join and control tokens between FastSock and SFU workers (fastsock/calls/sfu_tokens.py): what
each side accepts, and every kind of token it must refuse."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import jwt
import pytest

from fastsock.calls.sfu_tokens import (
    MAX_JOIN_TTL_S,
    TokenRefused,
    issue_control,
    issue_join,
    verify_control,
    verify_join,
)
from fastsock.services.tokens import ACCESS, TokenCodec
from fastsock.store.ids import new_id

pytestmark = pytest.mark.once

SECRET = "sfu-test-secret-" + "s" * 32
OTHER_SECRET = "sfu-other-secret-" + "o" * 32
NOW = 1_700_000_000.0
USER, ROOM, CALL, WORKER = new_id(), new_id(), new_id(), new_id()


def join(secret: str = SECRET, **overrides: object) -> str:
    kw: dict = {
        "user_id": USER,
        "room_id": ROOM,
        "call_id": CALL,
        "worker_id": WORKER,
        "now": NOW,
    }
    return issue_join(secret, **(kw | overrides))


def refused(token: object, *, worker_id: str = WORKER, now: float = NOW) -> str:
    with pytest.raises(TokenRefused) as info:
        verify_join(SECRET, token, worker_id=worker_id, now=now)
    return info.value.code


def signed(claims: dict, secret: str = SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


def join_claims(**overrides: object) -> dict:
    claims = {
        "iss": "fastsock",
        "typ": "sfu_join",
        "sub": USER,
        "room": ROOM,
        "call": CALL,
        "wid": WORKER,
        "iat": int(NOW),
        "exp": int(NOW) + 30,
        "jti": "j1",
    }
    return claims | overrides


def test_a_join_token_admits_its_user_to_its_call_on_its_worker() -> None:
    claims = verify_join(SECRET, join(), worker_id=WORKER, now=NOW + 59)
    assert (claims.user_id, claims.room_id, claims.call_id, claims.worker_id) == (
        USER,
        ROOM,
        CALL,
        WORKER,
    )
    assert claims.exp == int(NOW) + MAX_JOIN_TTL_S
    assert claims.jti and claims.jti != verify_join(SECRET, join(), worker_id=WORKER, now=NOW).jti


def test_an_expired_join_token_is_refused() -> None:
    assert refused(join(ttl=10), now=NOW + 10) == "expired"
    assert refused(join(), now=NOW + MAX_JOIN_TTL_S + 1) == "expired"


def test_a_forged_join_token_is_refused() -> None:
    assert refused(join(OTHER_SECRET)) == "invalid"
    head, _, sig = join().split(".")
    tampered = signed(join_claims(sub=new_id())).split(".")[1]
    assert refused(f"{head}.{tampered}.{sig}") == "invalid"
    unsigned = jwt.encode(join_claims(), None, algorithm="none")  # alg "none"
    assert refused(unsigned) == "invalid"
    for junk in ("", "x", "a.b.c", 42, None, "é" * 10, "a" * 5000):
        assert refused(junk) == "invalid"


def test_a_join_token_for_another_worker_is_refused() -> None:
    assert refused(join(), worker_id=new_id()) == "other_worker"


def test_a_token_of_another_kind_is_refused() -> None:
    control = issue_control(SECRET, WORKER, NOW)
    assert refused(control) == "invalid"
    with pytest.raises(TokenRefused) as info:
        verify_control(SECRET, join(), NOW)
    assert info.value.code == "invalid"
    assert refused(signed(join_claims(typ="access"))) == "invalid"


def test_a_join_token_living_longer_than_60_s_is_refused() -> None:
    assert refused(signed(join_claims(exp=int(NOW) + MAX_JOIN_TTL_S + 1))) == "invalid"
    # Asking for more gives the most there is.
    exp = verify_join(SECRET, join(ttl=3600), worker_id=WORKER, now=NOW).exp
    assert exp == int(NOW) + MAX_JOIN_TTL_S


def test_a_join_token_missing_a_claim_is_refused() -> None:
    for claim in ("iss", "typ", "sub", "room", "call", "wid", "iat", "exp", "jti"):
        claims = join_claims()
        del claims[claim]
        assert refused(signed(claims)) == "invalid", claim
    assert refused(signed(join_claims(iss="someone-else"))) == "invalid"
    assert refused(signed(join_claims(room=7))) == "invalid"


def test_a_users_access_token_is_no_sfu_token() -> None:
    """Signed with the JWT secret (which settings keep apart from the SFU secret), and even if
    it were signed with the SFU secret, of the wrong kind."""
    now = datetime.fromtimestamp(NOW, UTC)
    for secret in (OTHER_SECRET, SECRET):
        access = TokenCodec(secret).issue(ACCESS, USER, now).token
        assert refused(access) == "invalid"
        with pytest.raises(TokenRefused):
            verify_control(SECRET, access, NOW)


def test_control_tokens_name_their_worker_and_expire_within_30_s() -> None:
    token = issue_control(SECRET, WORKER, NOW)
    assert verify_control(SECRET, token, NOW + 29) == WORKER
    with pytest.raises(TokenRefused) as info:
        verify_control(SECRET, token, NOW + 30)
    assert info.value.code == "expired"
    with pytest.raises(TokenRefused) as info:
        verify_control(OTHER_SECRET, token, NOW)
    assert info.value.code == "invalid"


def test_tokens_are_checked_against_the_callers_clock() -> None:
    """Workers pass their own clock: a token issued now is good now whatever PyJWT thinks."""
    now = time.time()
    assert verify_join(SECRET, join(now=now), worker_id=WORKER, now=now).user_id == USER
