"""Password hashing with scrypt (memory-hard, in the standard library).

Stored as `scrypt$n$r$p$salt$hash` (base64), so parameters can be raised later without
invalidating existing hashes. Hashing takes tens of milliseconds: callers run it in a thread."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ScryptParams:
    n: int = 2**14
    r: int = 8
    p: int = 1


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _derive(password: str, salt: bytes, params: ScryptParams) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=params.n,
        r=params.r,
        p=params.p,
        maxmem=256 * 1024 * 1024,
        dklen=32,
    )


def hash_password(password: str, params: ScryptParams = ScryptParams()) -> str:
    salt = secrets.token_bytes(16)
    digest = _derive(password, salt, params)
    return f"scrypt${params.n}${params.r}${params.p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        params = ScryptParams(int(n), int(r), int(p))
        expected = base64.b64decode(digest)
        salt_bytes = base64.b64decode(salt)
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    try:
        derived = _derive(password, salt_bytes, params)
    except ValueError:  # parameters scrypt refuses (corrupt record)
        return False
    return hmac.compare_digest(derived, expected)


# Checked against when the username does not exist, so a wrong username costs the same time
# as a wrong password and does not reveal which accounts exist.
DUMMY_HASH = hash_password(secrets.token_urlsafe(16))
