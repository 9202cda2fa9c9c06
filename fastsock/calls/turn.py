"""TURN REST credentials (the scheme coturn checks with `use-auth-secret`).

username = "<expiry unix time>:<user_id>", credential = base64(HMAC-SHA1(secret, username)).
coturn recomputes the credential from the shared secret and refuses it after the expiry, so
the server hands out short-lived credentials without talking to coturn."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

from fastsock.config import Settings

# Expiries are rounded up to a step (a tenth of the TTL, at most a minute): a user's username,
# and so coturn's per-user allocation quota, which counts per username, stays the same for a
# while instead of changing every second.
MAX_EXPIRY_STEP_S = 60


def _expiry(now: float, ttl: int) -> int:
    step = max(1, min(MAX_EXPIRY_STEP_S, ttl // 10))
    return -(-int(now + ttl) // step) * step


def credential(secret: str, username: str) -> str:
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def ice_servers(settings: Settings, user_id: str, now: float | None = None) -> dict[str, Any]:
    """The `GET /calls/ice-servers` body for one user: RTCIceServer-shaped entries."""
    stun = [u for u in settings.turn_uris if u.startswith(("stun:", "stuns:"))]
    turn = [u for u in settings.turn_uris if u.startswith(("turn:", "turns:"))]
    servers: list[dict[str, Any]] = []
    if stun:
        servers.append({"urls": stun})
    if turn and settings.turn_secret:
        expiry = _expiry(now if now is not None else time.time(), settings.turn_ttl)
        username = f"{expiry}:{user_id}"
        servers.append(
            {
                "urls": turn,
                "username": username,
                "credential": credential(settings.turn_secret, username),
            }
        )
    return {
        "ice_servers": servers,
        "ttl": settings.turn_ttl,
        "ice_transport_policy": "relay" if settings.turn_relay_only else "all",
    }
