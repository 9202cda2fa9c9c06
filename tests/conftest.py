"""Fixtures: a fresh database and a real FastSock server on an ephemeral port per test.

The suite runs once per store backend (`make test` runs both passes), chosen by
FASTSOCK_TEST_BACKEND: `sqlite` (the default, as `make run` uses it: a file in the test's data
dir) or `mongo` (a fresh database on one MongoDB wire stand-in per session, mongoeco's memory
engine). Tests marked `once` do not depend on the backend and run in the sqlite pass only;
tests marked `mongo_only` run in the mongo pass only."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fastsock.app import Server
from fastsock.blobs.local import LOCK_FILE
from fastsock.config import Limits, Settings
from tests.mongo_standin import EmbeddedMongo
from tests.support import Api

JWT_SECRET = "test-secret-" + "x" * 40
SFU_SECRET = "sfu-test-secret-" + "z" * 32  # FASTSOCK_SFU_SECRET: SFU workers' control plane
BACKEND = os.environ.get("FASTSOCK_TEST_BACKEND", "sqlite")
if BACKEND not in ("sqlite", "mongo"):
    raise pytest.UsageError(f"FASTSOCK_TEST_BACKEND must be sqlite or mongo, got {BACKEND!r}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "once: backend-independent; runs in the sqlite pass only")
    config.addinivalue_line("markers", "mongo_only: runs in the mongo pass only")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip = "once" if BACKEND == "mongo" else "mongo_only"
    dropped = [item for item in items if item.get_closest_marker(skip)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if not item.get_closest_marker(skip)]


def pytest_report_header() -> str:
    return f"fastsock store backend: {BACKEND}"


@pytest.fixture(scope="session")
async def mongo() -> AsyncIterator[EmbeddedMongo]:
    """The MongoDB wire stand-in (also used by sqlite-pass tests that copy to MongoDB)."""
    db = EmbeddedMongo(sqlite_path=None)
    await db.start()
    yield db
    await db.stop()


@pytest.fixture
def db_uri(request: pytest.FixtureRequest) -> str | None:
    """The test's own database: a fresh MongoDB database, or None for SQLite (a file in the
    test's data dir, so servers restarted on the same data dir find the same database)."""
    if BACKEND == "sqlite":
        return None
    mongo: EmbeddedMongo = request.getfixturevalue("mongo")
    return mongo.uri_for("t" + uuid.uuid4().hex[:12])


# Tests drive users far faster than people type; the limits themselves are tested with the
# defaults in tests/realtime/test_limits.py.
RELAXED = Limits(
    send_per_s=1000,
    send_burst=1000,
    typing_per_s=1000,
    typing_burst=1000,
    reactions_per_s=1000,
    reactions_burst=1000,
    invites_per_min=10000,
    logins_per_min=10000,
    auth_per_ip_per_min=10000,
    auth_concurrent_per_ip=1000,
    registrations_per_min=10000,
    profile_updates_per_min=10000,
    receipts_per_s=1000,
    receipts_burst=1000,
    pings_per_s=1000,
    pings_burst=1000,
)


def make_settings(mongo_uri: str | None, data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": 0,
        "data_dir": data_dir,
        "mongo_uri": mongo_uri,
        "jwt_secret": JWT_SECRET,
        "limits": RELAXED,
    }
    return Settings(**(values | overrides))  # type: ignore[arg-type]


@pytest.fixture
async def server(db_uri: str | None, tmp_path: Path) -> AsyncIterator[Server]:
    srv = Server(make_settings(db_uri, tmp_path))
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def api(server: Server) -> Api:
    return Api(server.port)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server over real HTTP on loopback (fake credentials)."""
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    yield f"http://{host}:{port}"
    moto.stop()


@dataclass
class BlobWorld:
    """A server with one storage backend, and a way to list what that backend holds."""

    server: Server
    api: Api
    backend: str
    settings: Settings
    bucket: str | None = None
    endpoint: str | None = None

    def stored_keys(self) -> set[str]:
        if self.backend == "s3":
            import boto3

            s3 = boto3.client("s3", endpoint_url=self.endpoint)
            listing = s3.list_objects_v2(Bucket=self.bucket)
            return {o["Key"] for o in listing.get("Contents", [])}
        root = self.settings.uploads_path
        # Every file but the lock the server holds on the directory (LocalBlobs.check).
        return {p.name for p in root.rglob("*") if p.is_file() and p.name != LOCK_FILE}

    def spool_files(self) -> list[Path]:
        spool = self.settings.spool_path
        return list(spool.iterdir()) if spool.is_dir() else []


@pytest.fixture(params=["local", "s3"])
async def blob_world(
    request: pytest.FixtureRequest, db_uri: str | None, tmp_path: Path
) -> AsyncIterator[BlobWorld]:
    """Every upload/download test runs once per storage backend."""
    uri = db_uri
    extra: dict[str, object] = {}
    bucket = endpoint = None
    if request.param == "s3":
        import boto3

        endpoint = request.getfixturevalue("s3_endpoint")
        bucket = "fs-" + uuid.uuid4().hex[:12]
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
        extra = {"blob_backend": "s3", "s3_bucket": bucket, "s3_endpoint_url": endpoint}
    settings = make_settings(uri, tmp_path, **extra)
    server = Server(settings)
    await server.start()
    yield BlobWorld(server, Api(server.port), request.param, server.settings, bucket, endpoint)
    await server.stop()
