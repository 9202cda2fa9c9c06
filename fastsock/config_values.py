"""Parsers for setting values, shared by FastSock's settings (fastsock/config.py) and the SFU
worker's (sfu/config.py): each takes the variable's name and raw text, returns the parsed value or
raises `ConfigError` with one line naming the variable."""

from __future__ import annotations

import ipaddress

PREFIX = "FASTSOCK_"


class ConfigError(Exception):
    """A setting has a bad value; the message names the variable."""


def port_number(name: str, raw: str) -> int:
    try:
        port = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a port number, got {raw!r}") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{name} must be between 0 and 65535, got {port}")
    return port


def positive(name: str, raw: str, parse: type[int] | type[float]) -> int | float:
    try:
        value = parse(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a positive number, got {raw!r}") from None
    if not value > 0:
        raise ConfigError(f"{name} must be a positive number, got {raw!r}")
    return value


def choice(name: str, raw: str, choices: tuple[str, ...]) -> str:
    if raw not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def flag(name: str, raw: str) -> bool:
    return choice(name, raw.lower(), ("true", "false")) == "true"


def ip(name: str, raw: str) -> str:
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        raise ConfigError(f"{name} must be an IP address, got {raw!r}") from None


def no_controls(name: str, raw: str) -> str:
    # Values are written into coturn's line-based config: a newline would add a directive.
    if any(ord(c) < 32 or ord(c) == 127 for c in raw):
        raise ConfigError(f"{name} must not contain control characters")
    return raw
