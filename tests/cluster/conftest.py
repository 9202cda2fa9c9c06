"""Cluster-mode fixtures: one `redis-server` per session (flushed between tests) and FastSock
nodes sharing it and one fresh database on the MongoDB stand-in.

Cluster mode needs MongoDB, so these tests run in the mongo pass only. `nodes` starts the
nodes in this process (each its own Server, hub, Redis link and ports); tests that kill a
node start it as a process of its own (tests/cluster/processes.py)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from fastsock.app import Server
from fastsock.cluster.hub import ClusterHub
from tests.cluster.processes import NodeProcess
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
async def private_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A Redis of the test's own, for tests that stop or stall it: the session's is shared."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


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

    def hub(self, index: int) -> ClusterHub:
        ctx = self.servers[index].ctx
        assert ctx is not None and isinstance(ctx.hub, ClusterHub)
        return ctx.hub

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


@pytest.fixture
async def node_process(
    cluster_db: str, redis_url: str, tmp_path: Path
) -> AsyncIterator[Callable[..., Awaitable[NodeProcess]]]:
    """Starts a node as a process of its own (with FASTSOCK_* settings of its own, if given),
    in the same cluster as `nodes`; every one is reaped (SIGKILL at worst) when the test
    ends."""
    started: list[NodeProcess] = []

    async def start(**env: str) -> NodeProcess:
        node = NodeProcess(cluster_db, redis_url, tmp_path / f"process{len(started)}", **env)
        started.append(node)
        await node.start()
        return node

    yield start
    for node in started:
        await node.stop()


async def until(
    condition: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = 15.0
) -> None:
    """Wait until `condition` holds (checked every 20 ms), at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        held = condition()
        if not isinstance(held, bool):
            held = await held
        if held:
            return
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        await asyncio.sleep(0.02)
