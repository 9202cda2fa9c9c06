"""One Settings object, read from FASTSOCK_* environment variables and an optional config file.

The config file holds `KEY=VALUE` lines with the same keys as the environment; the environment
wins over the file. Any bad value raises `ConfigError` naming the variable, and `serve` prints
that one line and exits.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from fastsock.config_calls import TURN_MAX_PORT, TURN_MIN_PORT, sfu_settings, turn_settings
from fastsock.config_values import PREFIX as PREFIX  # `as`: re-exported, imported from here
from fastsock.config_values import ConfigError as ConfigError
from fastsock.config_values import choice, flag, port_number, positive


def _half_the_cores() -> int:
    # The CPUs this process may run on (affinity, cpusets), not the host's; a cgroup CPU quota
    # (docker --cpus) is not seen: set FASTSOCK_LIMIT_HASH_WORKERS there (operations.md).
    return max(1, (os.process_cpu_count() or 2) // 2)


@dataclass(frozen=True, slots=True)
class Limits:
    """Abuse limits (design.md section 5). Rates are per user unless noted."""

    send_per_s: float = 10.0
    send_burst: int = 20
    typing_per_s: float = 5.0  # typing frames accepted; relays are further limited per room
    typing_burst: int = 10
    reactions_per_s: float = 5.0
    reactions_burst: int = 20
    invites_per_min: int = 300  # people added to rooms (also new DMs), per user
    logins_per_min: int = 10  # per client IP + username
    auth_per_ip_per_min: int = 30  # logins and registrations per client IP, any username
    auth_concurrent_per_ip: int = 2  # of those, waiting for or in password hashing at once
    registrations_per_min: int = 20  # per client IP
    receipts_per_s: float = 20.0  # read/delivered confirmations, edits and deletes
    receipts_burst: int = 80
    abuse_refusals: int = 200  # refusals within 10 s that close a socket with 4429
    uploads_per_min: int = 30
    # Profile changes: each one is announced to everyone who shares a room with the user.
    profile_updates_per_min: int = 10
    # `@room` mentions: each one notifies every member of the room.
    room_mentions_per_hour: int = 10
    call_invites_per_min: int = 5
    call_joins_per_min: int = 30  # group call joins and worker-lost reports
    # 1:1 call.signal (SDP, trickled candidates: dozens at a call's start) and call.media_state
    call_signals_per_s: float = 20.0
    call_signals_burst: int = 100
    ice_servers_per_min: int = 30  # TURN credentials handed out (each call, each refresh)
    pings_per_s: float = 1.0  # WebSocket `ping` frames, per socket (clients send one per 25 s)
    pings_burst: int = 10
    # Password hashing (login, registration) runs on this many threads of its own; at most
    # hash_queue requests wait for one, each at most hash_wait_s. Beyond that: 503.
    hash_workers: int = field(default_factory=_half_the_cores)
    hash_queue: int = 32
    hash_wait_s: float = 5.0


# FASTSOCK_LIMIT_<NAME> -> Limits field, with its parser.
LIMIT_VARS: dict[str, tuple[str, type[int] | type[float]]] = {
    "SEND_PER_S": ("send_per_s", float),
    "SEND_BURST": ("send_burst", int),
    "TYPING_PER_S": ("typing_per_s", float),
    "TYPING_BURST": ("typing_burst", int),
    "REACTIONS_PER_S": ("reactions_per_s", float),
    "REACTIONS_BURST": ("reactions_burst", int),
    "INVITES_PER_MIN": ("invites_per_min", int),
    "LOGINS_PER_MIN": ("logins_per_min", int),
    "AUTH_PER_IP_PER_MIN": ("auth_per_ip_per_min", int),
    "AUTH_CONCURRENT_PER_IP": ("auth_concurrent_per_ip", int),
    "REGISTRATIONS_PER_MIN": ("registrations_per_min", int),
    "RECEIPTS_PER_S": ("receipts_per_s", float),
    "RECEIPTS_BURST": ("receipts_burst", int),
    "ABUSE_REFUSALS": ("abuse_refusals", int),
    "UPLOADS_PER_MIN": ("uploads_per_min", int),
    "PROFILE_UPDATES_PER_MIN": ("profile_updates_per_min", int),
    "ROOM_MENTIONS_PER_HOUR": ("room_mentions_per_hour", int),
    "CALL_INVITES_PER_MIN": ("call_invites_per_min", int),
    "CALL_JOINS_PER_MIN": ("call_joins_per_min", int),
    "CALL_SIGNALS_PER_S": ("call_signals_per_s", float),
    "CALL_SIGNALS_BURST": ("call_signals_burst", int),
    "ICE_SERVERS_PER_MIN": ("ice_servers_per_min", int),
    "PINGS_PER_S": ("pings_per_s", float),
    "PINGS_BURST": ("pings_burst", int),
    "HASH_WORKERS": ("hash_workers", int),
    "HASH_QUEUE": ("hash_queue", int),
    "HASH_WAIT_S": ("hash_wait_s", float),
}

DEFAULT_UPLOAD_TYPES = (
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "application/pdf",
    "text/plain",
    "application/zip",
    "audio/mpeg",
    "audio/ogg",
    "video/mp4",
    "video/webm",
)

# Pillow refuses to decode more (its decompression-bomb limit, about 89.5 million pixels).
MAX_IMAGE_MEGAPIXELS = 89
JWT_SECRET_FILE = "jwt-secret"  # in the data dir: the generated secret (ensure_jwt_secret)
JWT_SECRET_MIN = 32  # characters
MAX_UNREAD_WINDOW_S = 5.0


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8888
    env: str = "development"
    data_dir: Path = Path("var")
    mongo_uri: str | None = None
    # Cluster mode (docs/architecture.md, "Several nodes"): N nodes share this Redis and MongoDB.
    redis_url: str | None = None
    # "normal": faster commits, but the last ones may be lost on power loss (docs/operations.md)
    sqlite_synchronous: str = "full"
    jwt_secret: str = ""
    metrics_token: str | None = None
    metrics_port: int | None = None  # set: /metrics is served there only, on 127.0.0.1
    log_level: str = "INFO"
    limits: Limits = Limits()
    trust_proxy: bool = False
    # Slow clients (fastsock/connections.py). Headers must arrive within header_timeout_s of the
    # connection opening or of the previous response (tornado has one timer for both, so it is
    # also the keep-alive idle timeout); a body within body_timeout_s, plus 1 s per
    # connections.BODY_MIN_RATE bytes it declares.
    header_timeout_s: float = 20.0
    body_timeout_s: float = 30.0
    max_connections: int = 10_000  # open HTTP and WebSocket connections; beyond: 503, closed
    max_connections_per_ip: int = 256  # of those, from one client address (IPv6: per /64)
    # New messages' `unread` events are coalesced per room over this window (services/unread.py).
    unread_window_s: float = 0.15
    upload_dir: Path | None = None  # None: <data_dir>/uploads
    blob_backend: str = "local"
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    max_upload_bytes: int = 25 * 1024 * 1024
    upload_types: tuple[str, ...] = DEFAULT_UPLOAD_TYPES
    max_image_megapixels: float = 40.0  # larger images are refused before they are decoded
    turn_secret: str | None = None
    turn_uris: tuple[str, ...] = ()
    turn_ttl: int = 3600
    turn_relay_only: bool = False  # clients use relayed media only: peers never see each other's IP
    turn_allow_loopback: bool = False  # coturn may relay to 127.0.0.0/8 and private ranges (tests)
    # coturn only (`fastsock turn` renders turn/turnserver.conf.template from these):
    turn_listen_ip: str | None = None  # None: every interface
    turn_listen_port: int = 3478
    turn_realm: str = "fastsock"
    turn_relay_ip: str | None = None  # None: the address the client reached
    turn_external_ip: str | None = None  # "public" or "public/private" behind a 1:1 NAT
    turn_min_port: int = TURN_MIN_PORT
    turn_max_port: int = TURN_MAX_PORT
    turn_cert: Path | None = None  # with turn_pkey: TLS/DTLS on 5349 (turns:)
    turn_pkey: Path | None = None
    turn_user_quota: int = 12  # concurrent allocations per credential
    turn_total_quota: int = 1200  # concurrent allocations on the server
    turn_max_bps: int = 1_000_000  # bytes/s per allocation, each direction (8 Mbit/s)
    call_ring_s: float = 30.0  # unanswered for this long: missed
    call_grace_s: float = 20.0  # a party's device gone this long without resuming: the call ends
    # Group calls (docs/calls.md): SFU workers authenticate with sfu_secret; None: no group calls.
    sfu_secret: str | None = None
    sfu_heartbeat_s: float = 2.0  # workers heartbeat this often (told at registration)
    sfu_missed_heartbeats: int = 3  # this many missed: the worker is lost, its calls move
    sfu_token_ttl_s: int = 60  # join tokens' lifetime
    call_max_participants: int = 16  # per group call
    call_empty_grace_s: float = 15.0  # a group call left by a dropped or moved device ends after

    @property
    def uploads_path(self) -> Path:
        return self.upload_dir if self.upload_dir is not None else self.data_dir / "uploads"

    @property
    def spool_path(self) -> Path:
        """Uploads being received: this node's scratch space. Not in the upload directory,
        which several nodes may share: each clears its own spool when it starts."""
        return self.data_dir / "upload-spool"

    @property
    def embedded_db(self) -> bool:
        return self.mongo_uri is None

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def peer_connection_cap(self) -> int | None:
        """max_connections_per_ip as the listener applies it to the connecting address: not
        behind a trusted proxy, which every connection comes from (the proxy limits clients)."""
        return None if self.trust_proxy else self.max_connections_per_ip


def read_config_file(path: str | os.PathLike[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from exc
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip().startswith(PREFIX):
            raise ConfigError(f"config file {path} line {number}: expected FASTSOCK_KEY=value")
        values[key.strip()] = value.strip().strip('"').strip("'")
    return values


def _mongo_uri(name: str, raw: str) -> str:
    if not raw.startswith(("mongodb://", "mongodb+srv://")):
        raise ConfigError(f"{name} must start with mongodb:// or mongodb+srv://")
    return raw


def _redis_url(name: str, raw: str) -> str:
    """The URL as the redis client reads it; never echoed (it may hold a password)."""
    from redis.asyncio.connection import parse_url  # only for `serve` in cluster mode

    if not raw.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"{name} must start with redis://, rediss:// or unix://")
    try:
        parse_url(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    database = urlsplit(raw).path.strip("/") if not raw.startswith("unix://") else ""
    if database and not database.isdigit():  # the client would use database 0 silently
        raise ConfigError(f"{name}: the database must be a number, as in redis://host:6379/0")
    return raw


def _jwt_secret(name: str, raw: str) -> str:
    if len(raw) < JWT_SECRET_MIN:
        raise ConfigError(f"{name} must be at least {JWT_SECRET_MIN} characters")
    return raw


def load_settings(
    environ: Mapping[str, str] | None = None, config_file: str | os.PathLike[str] | None = None
) -> Settings:
    """Build Settings; `environ` defaults to os.environ. Does not touch the filesystem
    except to read `config_file`; the dev JWT secret is resolved by `ensure_jwt_secret`."""
    source: dict[str, str] = {}
    if config_file is not None:
        source.update(read_config_file(config_file))
    env = os.environ if environ is None else environ
    source.update({k: v for k, v in env.items() if k.startswith(PREFIX)})

    def get(key: str) -> str | None:
        value = source.get(PREFIX + key)
        return value if value not in (None, "") else None

    kwargs: dict[str, object] = {}
    if (v := get("HOST")) is not None:
        kwargs["host"] = v
    if (v := get("PORT")) is not None:
        kwargs["port"] = port_number(PREFIX + "PORT", v)
    if (v := get("ENV")) is not None:
        kwargs["env"] = choice(PREFIX + "ENV", v, ("development", "production"))
    if (v := get("DATA_DIR")) is not None:
        kwargs["data_dir"] = Path(v)
    if (v := get("MONGO_URI")) is not None:
        kwargs["mongo_uri"] = _mongo_uri(PREFIX + "MONGO_URI", v)
    if (v := get("REDIS_URL")) is not None:
        kwargs["redis_url"] = _redis_url(PREFIX + "REDIS_URL", v)
    if (v := get("SQLITE_SYNCHRONOUS")) is not None:
        kwargs["sqlite_synchronous"] = choice(
            PREFIX + "SQLITE_SYNCHRONOUS", v.lower(), ("full", "normal")
        )
    if (v := get("JWT_SECRET")) is not None:
        kwargs["jwt_secret"] = _jwt_secret(PREFIX + "JWT_SECRET", v)
    if (v := get("METRICS_TOKEN")) is not None:
        kwargs["metrics_token"] = v
    if (v := get("METRICS_PORT")) is not None:
        kwargs["metrics_port"] = port_number(PREFIX + "METRICS_PORT", v)
    if (v := get("LOG_LEVEL")) is not None:
        kwargs["log_level"] = choice(
            PREFIX + "LOG_LEVEL", v.upper(), ("DEBUG", "INFO", "WARNING", "ERROR")
        )
    if (v := get("TRUST_PROXY")) is not None:
        kwargs["trust_proxy"] = flag(PREFIX + "TRUST_PROXY", v)
    for key, parse in (("HEADER_TIMEOUT_S", float), ("BODY_TIMEOUT_S", float)):
        if (v := get(key)) is not None:
            kwargs[key.lower()] = positive(PREFIX + key, v, parse)
    if (v := get("UNREAD_WINDOW_S")) is not None:
        window = positive(PREFIX + "UNREAD_WINDOW_S", v, float)
        if window > MAX_UNREAD_WINDOW_S:  # counts that late look wrong to people
            raise ConfigError(f"{PREFIX}UNREAD_WINDOW_S must be at most {MAX_UNREAD_WINDOW_S}")
        kwargs["unread_window_s"] = window
    for key in ("MAX_CONNECTIONS", "MAX_CONNECTIONS_PER_IP"):
        if (v := get(key)) is not None:
            kwargs[key.lower()] = positive(PREFIX + key, v, int)
    if (v := get("UPLOAD_DIR")) is not None:
        kwargs["upload_dir"] = Path(v)
    if (v := get("BLOB_BACKEND")) is not None:
        kwargs["blob_backend"] = choice(PREFIX + "BLOB_BACKEND", v, ("local", "s3"))
    if (v := get("S3_BUCKET")) is not None:
        kwargs["s3_bucket"] = v
    if (v := get("S3_ENDPOINT_URL")) is not None:
        if not v.startswith(("http://", "https://")):
            raise ConfigError(f"{PREFIX}S3_ENDPOINT_URL must be an http(s) URL")
        kwargs["s3_endpoint_url"] = v
    if (v := get("MAX_UPLOAD_BYTES")) is not None:
        kwargs["max_upload_bytes"] = positive(PREFIX + "MAX_UPLOAD_BYTES", v, int)
    if (v := get("UPLOAD_TYPES")) is not None:
        types = tuple(t.strip().lower() for t in v.split(",") if t.strip())
        unknown = [t for t in types if t not in DEFAULT_UPLOAD_TYPES]
        if not types or unknown:
            raise ConfigError(
                f"{PREFIX}UPLOAD_TYPES must list types among {', '.join(DEFAULT_UPLOAD_TYPES)}"
            )
        kwargs["upload_types"] = types
    if (v := get("MAX_IMAGE_MEGAPIXELS")) is not None:
        megapixels = positive(PREFIX + "MAX_IMAGE_MEGAPIXELS", v, float)
        if megapixels > MAX_IMAGE_MEGAPIXELS:  # Pillow's own decompression-bomb guard
            raise ConfigError(
                f"{PREFIX}MAX_IMAGE_MEGAPIXELS must be at most {MAX_IMAGE_MEGAPIXELS}"
            )
        kwargs["max_image_megapixels"] = megapixels
    kwargs.update(turn_settings(get))
    kwargs.update(sfu_settings(get))
    limits: dict[str, object] = {}
    for suffix, (attr, parse) in LIMIT_VARS.items():
        if (v := get("LIMIT_" + suffix)) is not None:
            limits[attr] = positive(PREFIX + "LIMIT_" + suffix, v, parse)
    if limits:
        kwargs["limits"] = Limits(**limits)  # type: ignore[arg-type]  # each parsed as its field
    settings = Settings(**kwargs)  # type: ignore[arg-type]  # each value parsed for its field
    check_cluster(settings)
    if settings.production and not settings.jwt_secret:
        raise ConfigError(f"{PREFIX}JWT_SECRET must be set when {PREFIX}ENV=production")
    if settings.production and settings.turn_allow_loopback:
        raise ConfigError(
            f"{PREFIX}TURN_ALLOW_LOOPBACK opens the relay to private addresses: "
            f"not with {PREFIX}ENV=production"
        )
    if settings.turn_relay_only and not settings.turn_secret:
        raise ConfigError(f"{PREFIX}TURN_RELAY_ONLY needs {PREFIX}TURN_SECRET and a turn: URI")
    if settings.blob_backend == "s3" and not settings.s3_bucket:
        raise ConfigError(f"{PREFIX}S3_BUCKET must be set when {PREFIX}BLOB_BACKEND=s3")
    return settings


def check_cluster(settings: Settings) -> None:
    """Cluster mode shares one database between nodes: the embedded one is a file that one
    process locks, so it cannot be that database."""
    if settings.redis_url and settings.embedded_db:
        raise ConfigError(
            f"{PREFIX}REDIS_URL (cluster mode) needs {PREFIX}MONGO_URI: the embedded SQLite "
            "database serves one node only"
        )


def check_metrics_access(settings: Settings) -> None:
    """For `serve`: in production /metrics must not be open to whoever reaches the port."""
    if settings.production and not settings.metrics_token and settings.metrics_port is None:
        raise ConfigError(
            f"{PREFIX}METRICS_TOKEN must be set when {PREFIX}ENV=production "
            f"(or {PREFIX}METRICS_PORT, to serve /metrics on 127.0.0.1 only)"
        )


def ensure_jwt_secret(settings: Settings) -> Settings:
    """In development without FASTSOCK_JWT_SECRET, generate one once and keep it in the data
    dir, so tokens survive restarts."""
    if settings.jwt_secret:
        return settings
    path = settings.data_dir / JWT_SECRET_FILE
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            # Write then rename, so a crash never leaves an empty secret behind.
            tmp = path.with_name(f".{JWT_SECRET_FILE}.{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(48))
            os.replace(tmp, path)
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)  # an older or hand-made secret file: private, like the database
        secret = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{PREFIX}DATA_DIR {settings.data_dir}: {exc.strerror}") from exc
    if len(secret) < JWT_SECRET_MIN:
        raise ConfigError(
            f"{PREFIX}DATA_DIR {path} holds an invalid secret; delete it or set {PREFIX}JWT_SECRET"
        )
    return replace(settings, jwt_secret=secret)
