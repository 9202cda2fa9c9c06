"""JWT access and refresh tokens: HS256 only (the algorithm is pinned on decode), with
`sub` (a user id in its one lower-case form), `typ`, `iat`, `exp` and `jti` required. Both
kinds carry `fam`, the login (refresh-token family) they were issued to."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt

from fastsock.errors import Unauthenticated
from fastsock.services.fields import canonical_id

ALGORITHM = "HS256"
ACCESS, REFRESH = "access", "refresh"


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    jti: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class TokenCodec:
    secret: str
    access_ttl: timedelta = timedelta(minutes=15)
    refresh_ttl: timedelta = timedelta(days=30)

    def issue(self, typ: str, user_id: str, now: datetime, **extra: str) -> IssuedToken:
        ttl = self.access_ttl if typ == ACCESS else self.refresh_ttl
        jti = secrets.token_urlsafe(16)
        expires_at = now + ttl
        claims: dict[str, Any] = {
            "sub": user_id,
            "typ": typ,
            "iat": int(now.timestamp()),
            "exp": int(expires_at.timestamp()),
            "jti": jti,
            **extra,
        }
        return IssuedToken(jwt.encode(claims, self.secret, algorithm=ALGORITHM), jti, expires_at)

    def decode(self, token: Any, typ: str) -> dict[str, Any]:
        if not isinstance(token, str) or not token:
            raise Unauthenticated("a token is required")
        if not token.isascii():  # a JWT is base64url; anything else (a lone surrogate) is not one
            raise Unauthenticated("invalid token")
        try:
            claims = jwt.decode(
                token,
                self.secret,
                algorithms=[ALGORITHM],
                options={"require": ["sub", "typ", "iat", "exp", "jti"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired") from None
        except jwt.InvalidTokenError:
            raise Unauthenticated("invalid token") from None
        # Only this server signs tokens, but a malformed id must never pass for a user: every
        # later check compares ids as strings.
        sub = claims.get("sub")
        if claims.get("typ") != typ or sub is None or canonical_id(sub) != sub:
            raise Unauthenticated("invalid token")
        # Tokens issued before access tokens carried the login have no `fam` (15 minutes at most).
        if not isinstance(claims.get("fam", ""), str):
            raise Unauthenticated("invalid token")
        return claims
