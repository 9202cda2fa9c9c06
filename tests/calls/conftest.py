"""Calls fixtures: one real coturn for the session (tests/coturn.py) and a FastSock server whose
`GET /calls/ice-servers` hands out credentials for it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from fastsock.app import Server
from tests.conftest import make_settings
from tests.coturn import Coturn
from tests.support import Api

TURN_SECRET = "turn-test-secret-" + uuid.uuid4().hex
TURN_TTL = 600


@pytest.fixture(scope="session")
def coturn() -> Iterator[Coturn]:
    with Coturn(TURN_SECRET) as turn:
        yield turn


@pytest.fixture
async def turn_server(db_uri: str | None, tmp_path: Path, coturn: Coturn) -> AsyncIterator[Server]:
    settings = make_settings(
        db_uri,
        tmp_path,
        turn_secret=TURN_SECRET,
        turn_uris=(coturn.stun_uri, coturn.uri),
        turn_ttl=TURN_TTL,
    )
    server = Server(settings)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def turn_api(turn_server: Server) -> Api:
    return Api(turn_server.port)
