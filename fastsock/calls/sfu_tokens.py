"""Tokens between FastSock and SFU workers, signed with FASTSOCK_SFU_SECRET (HS256 pinned).

A *join* token admits one user to one call on one worker: FastSock issues it with `call.sfu`, the
worker checks it when the client's first frame arrives and claims its `jti` once. A *control*
token is what a worker presents on FastSock's internal API (`sub` = its worker id). Both are
short-lived, and their `typ` keeps one from passing for the other or for a user's access token
(which is signed with another secret anyway). The secret is shared: every worker holds it, so
any worker can mint any worker's control tokens and any join token (workers are trusted as a
group; `wid` and `sub` guard against mistakes, not against a rogue worker)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import jwt

ALGORITHM = "HS256"
ISSUER = "fastsock"
JOIN, CONTROL = "sfu_join", "sfu_control"
MAX_JOIN_TTL_S = 60
CONTROL_TTL_S = 30


class TokenRefused(Exception):
    """`code` is "invalid" (forged, malformed, wrong kind), "expired" or "other_worker"."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True, slots=True)
class JoinClaims:
    user_id: str
    room_id: str
    call_id: str
    worker_id: str
    jti: str
    exp: int


def _encode(secret: str, claims: dict[str, Any]) -> str:
    return jwt.encode({"iss": ISSUER, **claims}, secret, algorithm=ALGORITHM)


def _decode(secret: str, token: object, typ: str, now: float) -> dict[str, Any]:
    if not isinstance(token, str) or not token or not token.isascii() or len(token) > 4096:
        raise TokenRefused("invalid")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["iss", "typ", "sub", "iat", "exp", "jti"], "verify_exp": False},
        )
    except jwt.InvalidTokenError:
        raise TokenRefused("invalid") from None
    if claims.get("typ") != typ or not all(
        isinstance(claims.get(k), str) and claims[k] for k in ("sub", "jti")
    ):
        raise TokenRefused("invalid")
    exp = claims.get("exp")
    # Checked here against the caller's clock (tests and workers pass theirs), not PyJWT's.
    if not isinstance(exp, int) or exp <= now:
        raise TokenRefused("expired")
    return claims


def issue_join(
    secret: str,
    *,
    user_id: str,
    room_id: str,
    call_id: str,
    worker_id: str,
    now: float,
    ttl: int = MAX_JOIN_TTL_S,
) -> str:
    ttl = min(ttl, MAX_JOIN_TTL_S)
    return _encode(
        secret,
        {
            "typ": JOIN,
            "sub": user_id,
            "room": room_id,
            "call": call_id,
            "wid": worker_id,
            "iat": int(now),
            "exp": int(now) + ttl,
            "jti": secrets.token_urlsafe(16),
        },
    )


def verify_join(secret: str, token: object, *, worker_id: str, now: float) -> JoinClaims:
    claims = _decode(secret, token, JOIN, now)
    fields = [claims.get(k) for k in ("room", "call", "wid")]
    if not all(isinstance(f, str) and f for f in fields):
        raise TokenRefused("invalid")
    if claims["exp"] - claims["iat"] > MAX_JOIN_TTL_S:
        raise TokenRefused("invalid")
    if claims["wid"] != worker_id:
        raise TokenRefused("other_worker")
    return JoinClaims(
        user_id=claims["sub"],
        room_id=claims["room"],
        call_id=claims["call"],
        worker_id=claims["wid"],
        jti=claims["jti"],
        exp=claims["exp"],
    )


def issue_control(secret: str, worker_id: str, now: float) -> str:
    return _encode(
        secret,
        {
            "typ": CONTROL,
            "sub": worker_id,
            "iat": int(now),
            "exp": int(now) + CONTROL_TTL_S,
            "jti": secrets.token_urlsafe(8),
        },
    )


def verify_control(secret: str, token: object, now: float) -> str:
    """The worker id the token was issued to."""
    return str(_decode(secret, token, CONTROL, now)["sub"])
