"""Cluster-mode fixtures: one `redis-server` per session (flushed between tests) and FastSock
nodes sharing it and one fresh database on the MongoDB stand-in.

Cluster mode needs MongoDB, so these tests run in the mongo pass only. `nodes` starts the
nodes in this process (each its own Server, hub, Redis link and ports); tests that kill a
node start it as a process of its own (tests/cluster/processes.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from fastsock.app import Server
from tests.conftest import make_settings
from tests.mongo_standin import EmbeddedMongo
from tests.redis_server import RedisServer
from tests.support import Api


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/cluster/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.mongo_only)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def redis_url(redis_server: RedisServer) -> str:
    await redis_server.flush()
    return redis_server.url


@pytest.fixture
def cluster_db(mongo: EmbeddedMongo) -> str:
    return mongo.uri_for("c" + uuid.uuid4().hex[:12])


class Nodes:
    """FastSock nodes of one cluster, started in this process."""

    def __init__(self, db_uri: str, redis_url: str, root: Path) -> None:
        self.db_uri, self.redis_url, self.root = db_uri, redis_url, root
        self.servers: list[Server] = []

    async def start(self, **overrides: object) -> Server:
        data_dir = self.root / f"node{len(self.servers)}"
        settings = make_settings(self.db_uri, data_dir, redis_url=self.redis_url, **overrides)
        server = Server(settings)
        await server.start()
        self.servers.append(server)
        return server

    def api(self, index: int) -> Api:
        return Api(self.servers[index].port)

    async def stop(self) -> None:
        for server in reversed(self.servers):
            await server.stop()


@pytest.fixture
async def nodes(cluster_db: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Nodes]:
    """Three nodes; tests that need other settings start their own with `Nodes.start`."""
    cluster = Nodes(cluster_db, redis_url, tmp_path)
    for _ in range(3):
        await cluster.start()
    yield cluster
    await cluster.stop()
