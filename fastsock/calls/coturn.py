"""coturn's configuration, rendered from the FastSock settings (`fastsock turn`).

The template lives in turn/turnserver.conf.template (a source checkout, like `turn/run`). The
rendered file holds FASTSOCK_TURN_SECRET, so it is written with mode 0600 and printed only
with the secret redacted."""

from __future__ import annotations

import os
import re
import string
from pathlib import Path

from fastsock.config import PREFIX, ConfigError, Settings

TEMPLATE = Path(__file__).resolve().parents[2] / "turn" / "turnserver.conf.template"
CONFIG_NAME = "turnserver.conf"
REDACTED = "<redacted: FASTSOCK_TURN_SECRET>"

# `#[if flag]` / `#[if !flag]` ... `#[end]` on lines of their own; blocks do not nest.
_BLOCK = re.compile(r"^#\[if (!?)(\w+)\]\n(.*?)^#\[end\]\n", re.MULTILINE | re.DOTALL)


def render(settings: Settings, *, redact: bool = False) -> str:
    """The coturn config for these settings; ConfigError without FASTSOCK_TURN_SECRET."""
    if not settings.turn_secret:
        raise ConfigError(f"{PREFIX}TURN_SECRET must be set to run coturn")
    data_dir = settings.data_dir.resolve()
    if any(c in str(data_dir) for c in "\r\n"):
        raise ConfigError(f"{PREFIX}DATA_DIR must not contain line breaks")
    flags = {
        "listen_ip": settings.turn_listen_ip is not None,
        "relay_ip": settings.turn_relay_ip is not None,
        "external_ip": settings.turn_external_ip is not None,
        "tls": settings.turn_cert is not None,
        "allow_loopback": settings.turn_allow_loopback,
    }
    for name, path in (("CERT", settings.turn_cert), ("PKEY", settings.turn_pkey)):
        if path is not None and not path.is_file():
            # coturn would log the error and carry on without TLS.
            raise ConfigError(f"{PREFIX}TURN_{name} {path}: no such file")
    values = {
        "listen_port": settings.turn_listen_port,
        "listen_ip": settings.turn_listen_ip,
        "relay_ip": settings.turn_relay_ip,
        "external_ip": settings.turn_external_ip,
        "min_port": settings.turn_min_port,
        "max_port": settings.turn_max_port,
        "cert": settings.turn_cert and settings.turn_cert.resolve(),
        "pkey": settings.turn_pkey and settings.turn_pkey.resolve(),
        "secret": REDACTED if redact else settings.turn_secret,
        "realm": settings.turn_realm,
        "user_quota": settings.turn_user_quota,
        "total_quota": settings.turn_total_quota,
        "max_bps": settings.turn_max_bps,
        "userdb": data_dir / "turndb",
        "pidfile": data_dir / "turnserver.pid",
    }
    try:
        text = TEMPLATE.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RuntimeError(f"{TEMPLATE} is missing: run `fastsock turn` from a checkout") from None
    text = _BLOCK.sub(lambda m: m[3] if flags[m[2]] != (m[1] == "!") else "", text)
    return string.Template(text).substitute(values)


def write_config(settings: Settings) -> Path:
    """Render into <data dir>/turnserver.conf, readable by its owner only."""
    text = render(settings)
    target = (settings.data_dir / CONFIG_NAME).resolve()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # Created 0600 before the secret is written, then renamed over the old file.
        tmp = target.with_name(f".{target.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # a leftover temp file keeps its old mode through O_TRUNC
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, target)
    except OSError as exc:
        raise ConfigError(f"{PREFIX}DATA_DIR {target.parent}: {exc.strerror}") from exc
    return target
