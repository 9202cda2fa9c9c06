"""Call settings: TURN (coturn and the credentials handed to clients), 1:1 call timers, and the
group-call control plane (SFU workers' secret, heartbeats, participant cap)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from fastsock.config_values import PREFIX, ConfigError, flag, ip, no_controls, port_number, positive

# coturn's defaults (RFC 5766): relay ports are picked from this range.
TURN_MIN_PORT = 49152
TURN_MAX_PORT = 65535
TURN_SCHEMES = ("stun:", "stuns:", "turn:", "turns:")


def _turn_port(name: str, raw: str, lowest: int) -> int:
    port = port_number(name, raw)
    if port < lowest:
        raise ConfigError(f"{name} must be between {lowest} and 65535, got {port}")
    return port


def turn_settings(get: Callable[[str], str | None]) -> dict[str, object]:
    kwargs: dict[str, object] = {}
    if (v := get("TURN_SECRET")) is not None:
        if len(v) < 16:
            raise ConfigError(f"{PREFIX}TURN_SECRET must be at least 16 characters")
        # coturn's config file strips these, and would then check a different secret.
        if v != v.strip() or v.startswith('"') or v.endswith('"'):
            raise ConfigError(f"{PREFIX}TURN_SECRET must not begin or end with spaces or quotes")
        kwargs["turn_secret"] = no_controls(PREFIX + "TURN_SECRET", v)
    if (v := get("TURN_URIS")) is not None:
        uris = tuple(u.strip() for u in v.split(",") if u.strip())
        if not uris or any(not u.startswith(TURN_SCHEMES) for u in uris):
            raise ConfigError(
                f"{PREFIX}TURN_URIS must be a comma-separated list of stun:, stuns:, turn: "
                "or turns: URIs"
            )
        kwargs["turn_uris"] = uris
    if (v := get("TURN_TTL")) is not None:
        ttl = positive(PREFIX + "TURN_TTL", v, int)
        if not 60 <= ttl <= 86400:
            raise ConfigError(f"{PREFIX}TURN_TTL must be between 60 and 86400 seconds")
        kwargs["turn_ttl"] = ttl
    if (v := get("TURN_RELAY_ONLY")) is not None:
        kwargs["turn_relay_only"] = flag(PREFIX + "TURN_RELAY_ONLY", v)
    if (v := get("TURN_ALLOW_LOOPBACK")) is not None:
        kwargs["turn_allow_loopback"] = flag(PREFIX + "TURN_ALLOW_LOOPBACK", v)
    for key in ("LISTEN_IP", "RELAY_IP"):
        if (v := get("TURN_" + key)) is not None:
            kwargs["turn_" + key.lower()] = ip(PREFIX + "TURN_" + key, v)
    if (v := get("TURN_EXTERNAL_IP")) is not None:
        for part in v.split("/", 1):
            ip(PREFIX + "TURN_EXTERNAL_IP", part)
        kwargs["turn_external_ip"] = v
    if (v := get("TURN_LISTEN_PORT")) is not None:
        kwargs["turn_listen_port"] = _turn_port(PREFIX + "TURN_LISTEN_PORT", v, 1)
    if (v := get("TURN_REALM")) is not None:
        if not re.fullmatch(r"[A-Za-z0-9.-]{1,128}", v):
            raise ConfigError(f"{PREFIX}TURN_REALM must be a domain-like name ([A-Za-z0-9.-])")
        kwargs["turn_realm"] = v
    min_port, max_port = TURN_MIN_PORT, TURN_MAX_PORT
    if (v := get("TURN_MIN_PORT")) is not None:
        kwargs["turn_min_port"] = min_port = _turn_port(PREFIX + "TURN_MIN_PORT", v, 1024)
    if (v := get("TURN_MAX_PORT")) is not None:
        kwargs["turn_max_port"] = max_port = _turn_port(PREFIX + "TURN_MAX_PORT", v, 1024)
    if min_port > max_port:
        raise ConfigError(f"{PREFIX}TURN_MIN_PORT must not be above {PREFIX}TURN_MAX_PORT")
    cert, pkey = get("TURN_CERT"), get("TURN_PKEY")
    if (cert is None) != (pkey is None):
        missing = "TURN_PKEY" if pkey is None else "TURN_CERT"
        raise ConfigError(f"{PREFIX}{missing} must be set too: TLS needs a certificate and its key")
    if cert is not None and pkey is not None:
        kwargs["turn_cert"] = Path(no_controls(PREFIX + "TURN_CERT", cert))
        kwargs["turn_pkey"] = Path(no_controls(PREFIX + "TURN_PKEY", pkey))
    for key in ("USER_QUOTA", "TOTAL_QUOTA", "MAX_BPS"):
        if (v := get("TURN_" + key)) is not None:
            kwargs["turn_" + key.lower()] = positive(PREFIX + "TURN_" + key, v, int)
    if (v := get("CALL_RING_S")) is not None:
        kwargs["call_ring_s"] = positive(PREFIX + "CALL_RING_S", v, float)
    if (v := get("CALL_GRACE_S")) is not None:
        kwargs["call_grace_s"] = positive(PREFIX + "CALL_GRACE_S", v, float)
    return kwargs


SFU_SECRET_MIN = 32


def sfu_secret(name: str, raw: str) -> str:
    """The secret FastSock and its SFU workers share (also read by sfu/config.py)."""
    if len(raw) < SFU_SECRET_MIN:
        raise ConfigError(f"{name} must be at least {SFU_SECRET_MIN} characters")
    # Worker env files and config files strip these: the two sides would hold different secrets.
    if raw != raw.strip() or raw[0] in "\"'" or raw[-1] in "\"'":
        raise ConfigError(f"{name} must not begin or end with spaces or quotes")
    return no_controls(name, raw)


def _bounded(
    name: str, raw: str, parse: type[int] | type[float], low: float, high: float
) -> int | float:
    value = positive(name, raw, parse)
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g}, got {raw!r}")
    return value


def sfu_settings(get: Callable[[str], str | None]) -> dict[str, object]:
    kwargs: dict[str, object] = {}
    if (v := get("SFU_SECRET")) is not None:
        kwargs["sfu_secret"] = sfu_secret(PREFIX + "SFU_SECRET", v)
        # A user's access token must never pass for a worker's control token (nor the reverse).
        if v == get("JWT_SECRET"):
            raise ConfigError(f"{PREFIX}SFU_SECRET must differ from {PREFIX}JWT_SECRET")
    bounds: dict[str, tuple[type[int] | type[float], float, float]] = {
        "SFU_HEARTBEAT_S": (float, 0.2, 30),
        "SFU_MISSED_HEARTBEATS": (int, 2, 20),
        "SFU_TOKEN_TTL_S": (int, 5, 60),  # join tokens live at most a minute (design.md)
        "CALL_MAX_PARTICIPANTS": (int, 2, 64),
    }
    for key, (parse, low, high) in bounds.items():
        if (v := get(key)) is not None:
            kwargs[key.lower()] = _bounded(PREFIX + key, v, parse, low, high)
    if (v := get("CALL_EMPTY_GRACE_S")) is not None:
        kwargs["call_empty_grace_s"] = positive(PREFIX + "CALL_EMPTY_GRACE_S", v, float)
    return kwargs
