"""The worker's settings, from SFU_* environment variables (docs/operations.md).

Same pattern as fastsock/config.py: one frozen dataclass, one loader, and a bad value raises
`ConfigError` with one line naming the variable (`python -m sfu` prints it and exits 2)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastsock.config_values import ConfigError, choice, ip, no_controls, port_number, positive

PREFIX = "SFU_"
MIN_SECRET = 32
MAX_CAPACITY = 1000  # FastSock's register schema; a heartbeat reports at most 1000 calls
RTC_MIN_PORT, RTC_MAX_PORT = 40000, 40999


@dataclass(frozen=True, slots=True)
class SfuSettings:
    public_url: str  # what clients connect to (FastSock hands it out with their join token)
    control_url: str  # FastSock's base URL, for the internal API
    secret: str  # FASTSOCK_SFU_SECRET
    host: str = "127.0.0.1"
    port: int = 8890
    health_url: str = ""  # "" -> http://host:port/healthz (see `probe_url`)
    rtc_ips: tuple[str, ...] = ()  # () -> every non-loopback address of the host
    rtc_public_ip: str | None = None  # announced in host candidates behind a 1:1 NAT
    rtc_min_port: int = RTC_MIN_PORT
    rtc_max_port: int = RTC_MAX_PORT
    capacity: int = 48  # peers
    drain_timeout_s: float = 25.0
    metrics_token: str | None = None
    log_level: str = "INFO"
    env: str = "development"

    @property
    def probe_url(self) -> str:
        """Where FastSock checks that this worker is alive."""
        if self.health_url:
            return self.health_url
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self.port}/healthz"


def _url(name: str, raw: str, schemes: tuple[str, ...]) -> str:
    no_controls(name, raw)
    parts = urlsplit(raw)
    if parts.scheme not in schemes or not parts.hostname or raw != raw.strip():
        raise ConfigError(f"{name} must be a {' or '.join(s + '://' for s in schemes)} URL")
    return raw


def _public_url(name: str, raw: str) -> str:
    _url(name, raw, ("ws", "wss"))
    if urlsplit(raw).path != "/ws":
        raise ConfigError(f"{name} must end with the worker's WebSocket path /ws")
    return raw


def _secret(name: str, raw: str) -> str:
    if len(raw) < MIN_SECRET:
        raise ConfigError(f"{name} must be at least {MIN_SECRET} characters")
    if raw != raw.strip() or raw[0] in "\"'" or raw[-1] in "\"'":
        raise ConfigError(f"{name} must not begin or end with spaces or quotes")
    return no_controls(name, raw)


def _listen_port(name: str, raw: str, lowest: int) -> int:
    port = port_number(name, raw)
    if port < lowest:
        raise ConfigError(f"{name} must be between {lowest} and 65535, got {port}")
    return port


def _ips(name: str, raw: str) -> tuple[str, ...]:
    ips = tuple(ip(name, part.strip()) for part in raw.split(",") if part.strip())
    if not ips:
        raise ConfigError(f"{name} must be a comma-separated list of IP addresses")
    return ips


def load_sfu_settings(environ: Mapping[str, str] | None = None) -> SfuSettings:
    """SfuSettings from `environ` (default os.environ); ConfigError names the bad variable."""
    env = os.environ if environ is None else environ

    def get(key: str) -> str | None:
        value = env.get(PREFIX + key)
        return value if value not in (None, "") else None

    def required(key: str) -> str:
        if (value := get(key)) is None:
            raise ConfigError(f"{PREFIX}{key} must be set")
        return value

    kwargs: dict[str, object] = {
        "public_url": _public_url(PREFIX + "PUBLIC_URL", required("PUBLIC_URL")),
        "control_url": _url(PREFIX + "CONTROL_URL", required("CONTROL_URL"), ("http", "https")),
        "secret": _secret(PREFIX + "SECRET", required("SECRET")),
    }
    if (v := get("HOST")) is not None:
        kwargs["host"] = no_controls(PREFIX + "HOST", v)
    if (v := get("PORT")) is not None:
        kwargs["port"] = _listen_port(PREFIX + "PORT", v, 1)
    if (v := get("HEALTH_URL")) is not None:
        kwargs["health_url"] = _url(PREFIX + "HEALTH_URL", v, ("http", "https"))
    if (v := get("RTC_IPS")) is not None:
        kwargs["rtc_ips"] = _ips(PREFIX + "RTC_IPS", v)
    if (v := get("RTC_PUBLIC_IP")) is not None:
        kwargs["rtc_public_ip"] = ip(PREFIX + "RTC_PUBLIC_IP", v)
    for key in ("RTC_MIN_PORT", "RTC_MAX_PORT"):
        if (v := get(key)) is not None:
            kwargs[key.lower()] = _listen_port(PREFIX + key, v, 1024)
    if (v := get("CAPACITY")) is not None:
        capacity = positive(PREFIX + "CAPACITY", v, int)
        if capacity > MAX_CAPACITY:
            raise ConfigError(f"{PREFIX}CAPACITY must be at most {MAX_CAPACITY}, got {capacity}")
        kwargs["capacity"] = capacity
    if (v := get("DRAIN_TIMEOUT_S")) is not None:
        kwargs["drain_timeout_s"] = positive(PREFIX + "DRAIN_TIMEOUT_S", v, float)
    if (v := get("METRICS_TOKEN")) is not None:
        kwargs["metrics_token"] = no_controls(PREFIX + "METRICS_TOKEN", v)
    if (v := get("LOG_LEVEL")) is not None:
        kwargs["log_level"] = choice(
            PREFIX + "LOG_LEVEL", v.upper(), ("DEBUG", "INFO", "WARNING", "ERROR")
        )
    if (v := get("ENV")) is not None:
        kwargs["env"] = choice(PREFIX + "ENV", v, ("development", "production"))
    settings = SfuSettings(**kwargs)  # type: ignore[arg-type]  # each value parsed for its field
    if settings.rtc_min_port > settings.rtc_max_port:
        raise ConfigError(f"{PREFIX}RTC_MIN_PORT must not be above {PREFIX}RTC_MAX_PORT")
    # One UDP socket per peer (media is bundled): the range must hold a full worker.
    if settings.rtc_max_port - settings.rtc_min_port + 1 < settings.capacity:
        raise ConfigError(
            f"{PREFIX}RTC_MIN_PORT..{PREFIX}RTC_MAX_PORT must hold at least {PREFIX}CAPACITY "
            f"({settings.capacity}) ports"
        )
    if settings.env == "production" and not settings.public_url.startswith("wss://"):
        raise ConfigError(f"{PREFIX}PUBLIC_URL must be a wss:// URL when {PREFIX}ENV=production")
    return settings
