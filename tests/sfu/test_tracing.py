"""The SFU worker's tracing: `python -m sfu` sets it up from the same OTEL_* variables as
FastSock (fastsock/tracing.py) and makes a span of each join, exported over OTLP."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from tornado.websocket import websocket_connect

from tests.sfu.conftest import SFU_SECRET, StubControl
from tests.sfu.media import wait_until
from tests.sfu.workers import SfuWorker
from tests.test_tracing import Collector
from tests.test_tracing_config import clean_env

pytestmark = pytest.mark.once


async def test_a_worker_traces_its_joins_to_the_otlp_endpoint(
    control: StubControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector = Collector()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")  # milliseconds
    try:
        async with SfuWorker(control.url, SFU_SECRET) as worker:
            token = control.token(worker.id, "alice", f"{1:024x}")
            for join_token in (token, "not a token"):
                conn = await websocket_connect(worker.url)
                data = {"token": join_token, "publish": {"audio": False, "video": False}}
                await conn.write_message(json.dumps({"type": "join", "data": data}))
                reply = await conn.read_message()  # `joined`, or None: closed as refused
                assert (reply is not None) == (join_token == token)
                conn.close()

            def joins() -> list[dict[str, object]]:
                return [
                    {a.key: a.value.string_value for a in span.attributes}
                    for service, span in collector.spans
                    if service == "fastsock-sfu" and span.name == "ws join"
                ]

            await wait_until(lambda: len(joins()) == 2)  # both joins exported
            admitted, refused = sorted(joins(), key=lambda a: "error.type" in a)
            assert admitted["user.id"] == "alice"
            assert admitted["fastsock.call.id"] == f"{1:024x}"
            assert refused["error.type"] and "user.id" not in refused
            assert token not in json.dumps(joins())
    finally:
        collector.stop()


def test_a_bad_otel_value_stops_a_worker_with_one_line() -> None:
    """As FastSock's (tests/test_tracing_config.py): an unknown propagator, on which the SDK
    raised with a traceback as the worker imported it."""
    settings = SfuWorker("http://127.0.0.1:9", SFU_SECRET).env
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_PROPAGATORS": "b3"}
    env = {k: v for k, v in clean_env(**otel).items() if not k.startswith("SFU_")}
    done = subprocess.run(
        [sys.executable, "-m", "sfu"],
        env=env | settings,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "sfu: configuration error: OTEL_PROPAGATORS must list propagators of baggage, none, "
        "tracecontext, got 'b3'"
    ]
