"""TURN credentials: the REST scheme coturn checks, `GET /calls/ice-servers`, and a real coturn
that relays with the endpoint's credentials and refuses expired or forged ones."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from aioice import Candidate, Connection, TransportPolicy, stun
from aioice.turn import create_turn_endpoint

from fastsock.app import Server
from fastsock.calls.turn import credential, ice_servers
from fastsock.config import ConfigError, Settings, load_settings
from fastsock.logs import JsonFormatter
from tests.calls.conftest import TURN_SECRET, TURN_TTL
from tests.conftest import RELAXED, make_settings
from tests.coturn import Coturn
from tests.support import Api

SECRET = "unit-test-secret-0123456789"
GATHER_TIMEOUT_S = 10.0

# --- credentials and the response body (no network) -----------------------------------------


def test_credential_is_base64_hmac_sha1_of_the_username() -> None:
    username = "1700000000:64b7f0c2a1b2c3d4e5f60718"
    expected = base64.b64encode(
        hmac.new(SECRET.encode(), username.encode(), hashlib.sha1).digest()
    ).decode()
    assert credential(SECRET, username) == expected
    assert len(expected) == 28  # 20 bytes of SHA-1
    assert credential(SECRET + "x", username) != expected
    assert credential(SECRET, username.replace("1700", "1800")) != expected


def test_ice_servers_group_stun_and_turn_uris_with_expiring_credentials() -> None:
    settings = Settings(
        turn_secret=SECRET,
        turn_uris=("stun:turn.example:3478", "turn:turn.example:3478?transport=udp", "turns:t.ex"),
        turn_ttl=900,
    )
    body = ice_servers(settings, "user42", now=1_700_000_000.7)
    stun_entry, turn_entry = body["ice_servers"]
    assert stun_entry == {"urls": ["stun:turn.example:3478"]}
    assert turn_entry["urls"] == ["turn:turn.example:3478?transport=udp", "turns:t.ex"]
    # expiry = now + ttl rounded up to the minute: 1_700_000_900.7 -> 1_700_000_940
    assert turn_entry["username"] == "1700000940:user42"
    assert turn_entry["credential"] == credential(SECRET, "1700000940:user42")
    # Within that minute a user keeps the same username (coturn's per-user quota holds).
    assert ice_servers(settings, "user42", now=1_700_000_039)["ice_servers"][1] == turn_entry
    assert body["ttl"] == 900 and body["ice_transport_policy"] == "all"
    assert SECRET not in json.dumps(body)


def test_no_turn_entry_without_a_secret() -> None:
    uris = ("stun:s.example:3478", "turn:t.example:3478")
    body = ice_servers(Settings(turn_uris=uris), "u")
    assert body["ice_servers"] == [{"urls": ["stun:s.example:3478"]}]
    assert ice_servers(Settings(turn_uris=("turn:t.example",)), "u")["ice_servers"] == []


def test_stun_only_uris_give_one_entry_without_credentials() -> None:
    body = ice_servers(Settings(turn_secret=SECRET, turn_uris=("stun:a:3478", "stuns:b")), "u")
    assert body["ice_servers"] == [{"urls": ["stun:a:3478", "stuns:b"]}]


def test_relay_only_policy() -> None:
    settings = Settings(turn_secret=SECRET, turn_uris=("turn:t",), turn_relay_only=True)
    assert ice_servers(settings, "u")["ice_transport_policy"] == "relay"
    loaded = load_settings(
        {
            "FASTSOCK_TURN_SECRET": SECRET,
            "FASTSOCK_TURN_URIS": "turn:t",
            "FASTSOCK_TURN_RELAY_ONLY": "true",
        }
    )
    assert loaded.turn_relay_only
    # Relay-only without TURN credentials would leave clients with no path at all.
    with pytest.raises(ConfigError, match="FASTSOCK_TURN_RELAY_ONLY"):
        load_settings({"FASTSOCK_TURN_RELAY_ONLY": "true"})


# --- GET /calls/ice-servers ------------------------------------------------------------------


def turn_entry(body: dict[str, Any]) -> dict[str, Any]:
    (entry,) = [e for e in body["ice_servers"] if "credential" in e]
    return entry


async def test_ice_servers_requires_authentication(turn_api: Api) -> None:
    r = await turn_api.get("/calls/ice-servers")
    assert r.status == 401 and r.error_code == "unauthenticated"
    r = await turn_api.request("GET", "/calls/ice-servers", token="not-a-token")
    assert r.status == 401


async def test_ice_servers_response(
    turn_api: Api, coturn: Coturn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    alice = await turn_api.register()
    before = int(time.time())
    r = await turn_api.get("/calls/ice-servers", alice)
    after = int(time.time())
    assert r.status == 200, r.body
    assert r.headers["Cache-Control"] == "no-store"
    assert r.body["ttl"] == TURN_TTL and r.body["ice_transport_policy"] == "all"
    # RTCIceServer-shaped: `urls` is a list of strings; `username`/`credential` only with TURN.
    assert r.body["ice_servers"] == [{"urls": [coturn.stun_uri]}, turn_entry(r.body)]
    entry = turn_entry(r.body)
    assert set(entry) == {"urls", "username", "credential"}
    assert entry["urls"] == [coturn.uri]
    expiry, user_id = entry["username"].split(":")
    assert user_id == alice.id
    step = min(60, TURN_TTL // 10)
    assert before + TURN_TTL <= int(expiry) <= after + TURN_TTL + step
    assert int(expiry) % step == 0
    assert entry["credential"] == credential(TURN_SECRET, entry["username"])

    assert TURN_SECRET not in json.dumps(r.body) and TURN_SECRET not in str(r.headers)
    lines = [JsonFormatter().format(record) for record in caplog.records]
    assert any('"http_request"' in line for line in lines)
    assert not [line for line in lines if TURN_SECRET in line]
    assert TURN_SECRET not in coturn.log()


# --- a real coturn ---------------------------------------------------------------------------


def turn_address(uri: str) -> tuple[str, int]:
    """("127.0.0.1", 3478) from "turn:127.0.0.1:3478?transport=udp"."""
    host, port = uri.split(":", 1)[1].split("?", 1)[0].rsplit(":", 1)
    return host, int(port)


def ice(
    coturn: Coturn,
    username: str,
    password: str,
    *,
    controlling: bool = True,
    relay_only: bool = False,
) -> Connection:
    return Connection(
        ice_controlling=controlling,
        components=1,
        turn_server=turn_address(coturn.uri),
        turn_username=username,
        turn_password=password,
        use_ipv6=False,
        transport_policy=TransportPolicy.RELAY if relay_only else TransportPolicy.ALL,
    )


async def gathered(conn: Connection) -> list[Candidate]:
    try:
        await asyncio.wait_for(conn.gather_candidates(), GATHER_TIMEOUT_S)
        return conn.local_candidates
    finally:
        await conn.close()


async def test_endpoint_credentials_get_a_relay_candidate(turn_api: Api, coturn: Coturn) -> None:
    alice = await turn_api.register()
    entry = turn_entry((await turn_api.get("/calls/ice-servers", alice)).body)
    (uri,) = entry["urls"]
    candidates = await gathered(ice(coturn, entry["username"], entry["credential"]))
    relays = [c for c in candidates if c.type == "relay"]
    assert len(relays) == 1, (candidates, coturn.log())
    assert relays[0].host == "127.0.0.1" and relays[0].port != turn_address(uri)[1]
    assert any(c.type == "host" for c in candidates)


async def refused_with(coturn: Coturn, username: str, password: str) -> int:
    """coturn's error code for an allocation with these credentials."""
    with pytest.raises(stun.TransactionFailed) as info:
        transport, _ = await create_turn_endpoint(
            asyncio.DatagramProtocol, turn_address(coturn.uri), username, password
        )
        transport.close()
    return info.value.response.error_code


@pytest.mark.parametrize(
    ("make_username", "secret"),
    [
        (lambda uid: f"{int(time.time()) - 60}:{uid}", TURN_SECRET),  # expired, correctly signed
        (lambda uid: f"{int(time.time()) + 600}:{uid}", "wrong-secret-0123456789"),  # forged
    ],
    ids=["expired", "forged"],
)
async def test_expired_or_forged_credentials_get_no_relay(
    turn_api: Api, coturn: Coturn, make_username: Any, secret: str
) -> None:
    alice = await turn_api.register()
    username = make_username(alice.id)
    password = credential(secret, username)
    assert await refused_with(coturn, username, password) == 401
    candidates = await gathered(ice(coturn, username, password))
    assert candidates and not [c for c in candidates if c.type == "relay"]


async def test_a_credential_is_bound_to_its_username(turn_api: Api, coturn: Coturn) -> None:
    """Another user's id (or a later expiry) with a credential handed out for alice: 401."""
    alice, mallory = await turn_api.register(), await turn_api.register()
    entry = turn_entry((await turn_api.get("/calls/ice-servers", alice)).body)
    expiry, _ = entry["username"].split(":")
    assert await refused_with(coturn, f"{expiry}:{mallory.id}", entry["credential"]) == 401
    later = f"{int(expiry) + 86400}:{alice.id}"
    assert await refused_with(coturn, later, entry["credential"]) == 401


async def test_two_peers_exchange_data_through_the_relay_only(
    turn_api: Api, coturn: Coturn
) -> None:
    alice, bob = await turn_api.register(), await turn_api.register()
    conns = []
    for user, controlling in ((alice, True), (bob, False)):
        entry = turn_entry((await turn_api.get("/calls/ice-servers", user)).body)
        conns.append(
            ice(
                coturn,
                entry["username"],
                entry["credential"],
                controlling=controlling,
                relay_only=True,
            )
        )
    a, b = conns
    try:
        await asyncio.wait_for(
            asyncio.gather(a.gather_candidates(), b.gather_candidates()), GATHER_TIMEOUT_S
        )
        for conn in (a, b):
            assert [c.type for c in conn.local_candidates] == ["relay"], coturn.log()
        # The signaling FastSock does with call.signal, done by hand.
        for local, remote in ((a, b), (b, a)):
            local.remote_username = remote.local_username
            local.remote_password = remote.local_password
            for candidate in remote.local_candidates:
                await local.add_remote_candidate(candidate)
            await local.add_remote_candidate(None)
        await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), 15)
        await a.send(b"hello through coturn")
        assert await asyncio.wait_for(b.recv(), 5) == b"hello through coturn"
        await b.send(b"and back")
        assert await asyncio.wait_for(a.recv(), 5) == b"and back"
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_ice_servers_are_rate_limited_per_user(
    db_uri: str | None, tmp_path: Path, coturn: Coturn
) -> None:
    """Each fetch mints a new TURN username (coturn counts its quotas per username), so a
    user cannot collect credentials without limit."""
    limits = dataclasses.replace(RELAXED, ice_servers_per_min=3)
    settings = make_settings(
        db_uri,
        tmp_path,
        turn_secret=TURN_SECRET,
        turn_uris=(coturn.uri,),
        limits=limits,
    )
    server = Server(settings)
    await server.start()
    try:
        api = Api(server.port)
        alice, bob = await api.register(), await api.register()
        for _ in range(3):
            assert (await api.get("/calls/ice-servers", alice)).status == 200
        refused = await api.get("/calls/ice-servers", alice)
        assert refused.status == 429 and refused.error_code == "rate_limited"
        assert int(refused.headers["Retry-After"]) >= 1
        assert (await api.get("/calls/ice-servers", bob)).status == 200  # per user
    finally:
        await server.stop()
