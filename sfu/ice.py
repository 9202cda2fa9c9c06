"""ICE for the worker: host candidates on the configured addresses (loopback allowed), UDP ports
bound within a range, optionally announced with a public IP (1:1 NAT, as on cloud instances),
and no STUN: clients reach the worker directly or through FastSock's TURN.

aioice has no option for any of this: `configure_ice` patches it process-wide (the module's
`get_host_addresses` and `Connection.get_component_candidates`; sfu.internals checks both)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from dataclasses import dataclass
from typing import Any

import aioice.ice
from aioice import turn
from aioice.candidate import Candidate, candidate_foundation, candidate_priority
from aiortc import RTCBundlePolicy, RTCConfiguration

log = logging.getLogger(__name__)

_STOCK_HOST_ADDRESSES = aioice.ice.get_host_addresses
_STOCK_COMPONENT_CANDIDATES = aioice.ice.Connection.get_component_candidates


@dataclass(frozen=True)
class _IceSettings:
    ips: tuple[str, ...]
    public_ip: str | None
    min_port: int
    max_port: int


_settings: _IceSettings | None = None
_next_port = 0  # where the next search for a free port starts (round robin over the range)


def configure_ice(
    *, ips: tuple[str, ...], public_ip: str | None, min_port: int, max_port: int
) -> None:
    """Patch aioice for every peer connection of this process (idempotent: a second call
    replaces the settings). `ips` empty: aioice's own choice (every non-loopback address)."""
    global _settings, _next_port
    if not 1 <= min_port <= max_port <= 65535:
        raise ValueError(f"bad RTC port range {min_port}-{max_port}")
    _settings = _IceSettings(tuple(ips), public_ip, min_port, max_port)
    _next_port = min_port
    aioice.ice.get_host_addresses = _host_addresses
    aioice.ice.Connection.get_component_candidates = _component_candidates  # type: ignore[method-assign]


def rtc_configuration() -> RTCConfiguration:
    """`iceServers=[]`, not None: aiortc falls back to Google's STUN server on None. Every m-line
    on one transport from the first offer: with aiortc's default (balanced), a second m-line of
    a kind shares the first one's transport and is then left on it when BUNDLE moves that first
    one, so its media never flows."""
    return RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


def _host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    assert _settings is not None
    if not _settings.ips:
        return _STOCK_HOST_ADDRESSES(use_ipv4, use_ipv6)
    versions = {4} if use_ipv4 else set()
    versions |= {6} if use_ipv6 else set()
    return [ip for ip in _settings.ips if ipaddress.ip_address(ip).version in versions]


async def _component_candidates(
    self: aioice.ice.Connection, component: int, addresses: list[str], timeout: int = 5
) -> list[Candidate]:
    """aioice's host candidate gathering with ports from the range and the announced IP; its own
    code then adds whatever else the connection has (TURN, for in-process clients)."""
    settings = _settings
    assert settings is not None
    candidates = []
    for address in addresses:
        protocol = await _bind(self, address, settings)
        if protocol is None:
            continue
        bound, port = protocol.transport.get_extra_info("sockname")[:2]
        host = _announced(bound, settings.public_ip)
        protocol.local_candidate = Candidate(
            foundation=candidate_foundation("host", "udp", host),
            component=component,
            transport="udp",
            priority=candidate_priority(component, "host"),
            host=host,
            port=port,
            type="host",
        )
        self._protocols.append(protocol)
        candidates.append(protocol.local_candidate)
    others = await _STOCK_COMPONENT_CANDIDATES(
        self, component=component, addresses=[], timeout=timeout
    )
    return candidates + others


async def _bind(
    connection: aioice.ice.Connection, address: str, settings: _IceSettings
) -> Any | None:
    """A StunProtocol on the first free port of the range, searched round robin."""
    global _next_port
    loop = asyncio.get_running_loop()
    size = settings.max_port - settings.min_port + 1
    for _ in range(size):
        port = _next_port
        _next_port = settings.min_port + (port + 1 - settings.min_port) % size
        try:
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: aioice.ice.StunProtocol(connection), local_addr=(address, port)
            )
        except OSError:
            continue
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, turn.UDP_SOCKET_BUFFER_SIZE)
        return protocol
    log.warning(
        "sfu_no_free_udp_port",
        extra={
            "fields": {
                "address": address,
                "min_port": settings.min_port,
                "max_port": settings.max_port,
            }
        },
    )
    return None


def _announced(bound: str, public_ip: str | None) -> str:
    """The public IP replaces host addresses of its IP version (a 1:1 NAT keeps the port)."""
    if public_ip is None:
        return bound
    same_version = ipaddress.ip_address(bound).version == ipaddress.ip_address(public_ip).version
    return public_ip if same_version else bound
