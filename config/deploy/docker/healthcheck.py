#!/usr/bin/env python3
"""The image's health check: `fastsock-healthcheck [TARGET]`, exit 0 when healthy, else 1.

TARGET is an http(s):// URL (200 expected) or `stun:HOST:PORT` (a STUN Binding request must be
answered, which is how coturn is checked). Without TARGET: FastSock's /healthz on
FASTSOCK_PORT. Standard library only, so the image needs no curl."""

from __future__ import annotations

import os
import secrets
import socket
import struct
import sys
import urllib.error
import urllib.request

TIMEOUT_S = 3.0
STUN_MAGIC = 0x2112A442
BINDING_REQUEST, BINDING_SUCCESS = 0x0001, 0x0101


def default_target() -> str:
    host = os.environ.get("FASTSOCK_HOST") or "127.0.0.1"
    if host in ("0.0.0.0", "::"):  # listening everywhere: loopback is one of them
        host = "127.0.0.1" if host == "0.0.0.0" else "[::1]"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{os.environ.get('FASTSOCK_PORT') or 8888}/healthz"


def check_http(url: str) -> str | None:
    """None when the URL answers 200, else why not."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:
        return f"{url}: {exc}"
    return None if status == 200 else f"{url}: HTTP {status}"


def check_stun(target: str) -> str | None:
    """None when a STUN Binding request to stun:HOST:PORT gets its success response."""
    host, _, port = target.removeprefix("stun:").rpartition(":")
    if not host or not port.isdigit():
        return f"{target}: expected stun:HOST:PORT"
    transaction = secrets.token_bytes(12)
    request = struct.pack("!HHI", BINDING_REQUEST, 0, STUN_MAGIC) + transaction
    try:
        with socket.socket(
            socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM
        ) as s:
            s.settimeout(TIMEOUT_S)
            s.sendto(request, (host.strip("[]"), int(port)))
            reply = s.recv(2048)
    except OSError as exc:
        return f"{target}: {exc}"
    if len(reply) < 20 or struct.unpack("!H", reply[:2])[0] != BINDING_SUCCESS:
        return f"{target}: not a STUN Binding success response"
    if reply[8:20] != transaction:
        return f"{target}: the response is for another request"
    return None


def main(argv: list[str]) -> int:
    target = argv[1] if len(argv) > 1 else default_target()
    problem = check_stun(target) if target.startswith("stun:") else check_http(target)
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
