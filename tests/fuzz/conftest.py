"""The fuzz suite's hypothesis profiles, and one server per test module with a small world in
it (kept across examples: starting a server per example would leave no time for examples).

Profiles: `ci` (the default) is derandomized, so every run tries the same examples, and
sized so that tests/fuzz takes about a minute per store backend; `fuzz` (`make fuzz`, which
passes `--hypothesis-profile=fuzz`) tries many more, new ones each run, and keeps failing
examples in .hypothesis/ to try first next time."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, settings

from fastsock.app import Server
from tests.conftest import BACKEND, RELAXED, SFU_SECRET, make_settings
from tests.fuzz.world import LogWatch, World, populate

# Examples generate quickly but each one is a round trip to a server: no deadline, and no
# complaint about slow generation (oversize strings are slow to build by design).
COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("ci", max_examples=40, derandomize=True, database=None, **COMMON)
settings.register_profile("fuzz", max_examples=1000, **COMMON)
if settings.get_current_profile_name() == "default":  # no --hypothesis-profile given
    settings.load_profile("ci")

# Fuzzing sends thousands of refused requests from one socket and one user: no limit may
# close the socket or refuse a request for its rate (the limits are tested on their own).
FUZZ_LIMITS = replace(
    RELAXED,
    abuse_refusals=10**9,
    uploads_per_min=10**6,
    call_invites_per_min=10**6,
    ice_servers_per_min=10**6,
    call_joins_per_min=10**6,
)


@pytest.fixture(scope="module")
def module_db_uri(request: pytest.FixtureRequest) -> str | None:
    """The module's own database, like tests/conftest.py's `db_uri` (not from inside an
    async fixture: the MongoDB stand-in starts on the event loop)."""
    if BACKEND == "sqlite":
        return None
    return request.getfixturevalue("mongo").uri_for("fuzz" + uuid.uuid4().hex[:12])


@pytest.fixture(scope="module")
async def world(
    module_db_uri: str | None, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    uri = module_db_uri
    watch = LogWatch()
    root = logging.getLogger()
    root.addHandler(watch)
    data_dir = tmp_path_factory.mktemp("fuzz")
    # With the SFU secret: group calls and the workers' internal API are fuzzed too.
    server = Server(make_settings(uri, data_dir, limits=FUZZ_LIMITS, sfu_secret=SFU_SECRET))
    await server.start()
    try:
        world = await populate(server, watch)
        world.assert_quiet_log("setting up the world")
        yield world
        world.assert_quiet_log("the last example (afterwards)")
    finally:
        await server.stop()
        root.removeHandler(watch)
