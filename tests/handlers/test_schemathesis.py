"""schemathesis against a live server: every operation of /openapi.json, generated inputs
(valid and invalid), and every answer checked against the document: no server error, only
documented statuses, content types, headers and bodies, and 401 without a token where one is
required (ignored_auth), 405 with Allow for other methods (unsupported_method); an error's
`code` must be one of its status's. Derandomized (--generation-deterministic): each run
generates the same inputs, whatever the clock. No `examples` phase: the document has none.

Left out: the SFU workers' internal API (/internal/...): it needs a worker's control tokens
and FASTSOCK_SFU_SECRET; tests/handlers/test_openapi.py checks its answers against the
document, tests/realtime drives it with fake workers. The WebSocket /ws is not in the document
(OpenAPI cannot describe it); tests/fuzz covers its frames."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from fastsock.app import Server
from tests.conftest import RELAXED, make_settings
from tests.support import Api

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
# Per operation and phase: the whole run takes about a minute on a loaded 2-core machine.
EXAMPLES = 80
TIMEOUT_S = 150  # a hung run fails with what it printed, rather than hanging the suite
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "ignored_auth",
    "unsupported_method",  # 405 with Allow
)
# Generated requests come far faster than people's: no limit may refuse them (a 429 would hide
# what the request would have got).
UNLIMITED = replace(
    RELAXED,
    invites_per_min=1_000_000,
    uploads_per_min=1_000_000,
    ice_servers_per_min=1_000_000,
    call_invites_per_min=1_000_000,
    call_joins_per_min=1_000_000,
)


async def test_live_server_matches_its_document(db_uri: str | None, tmp_path: Path) -> None:
    assert SCHEMATHESIS.is_file(), f"{SCHEMATHESIS} is missing: install the test extra"
    server = Server(make_settings(db_uri, tmp_path, limits=UNLIMITED))
    await server.start()
    try:
        api = Api(server.port)
        user = await api.register("fuzzer")
        await api.group(user)  # a room, so the room list is not empty
        output = await run_bounded(
            TIMEOUT_S,
            str(SCHEMATHESIS),
            "run",
            f"http://127.0.0.1:{server.port}/openapi.json",
            "--checks",
            ",".join(CHECKS),
            "--header",
            f"Authorization: Bearer {user.access_token}",
            "--exclude-path-regex",
            "^/internal/",
            "--phases",
            "coverage,fuzzing,stateful",  # stateful: links inferred from the shapes
            "--max-examples",
            str(EXAMPLES),
            "--generation-deterministic",  # derandomized; implies no example database
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--no-color",
            cwd=tmp_path,
        )
    finally:
        await server.stop()
    assert output.endswith("rc 0"), output


async def run_bounded(timeout: float, *command: str, cwd: Path) -> str:
    """The command's output (stdout and stderr) and `rc N`; if it runs longer than `timeout`
    seconds, it is killed and the test fails with what it printed so far."""
    proc = await asyncio.create_subprocess_exec(
        *command, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    assert proc.stdout is not None
    chunks: list[bytes] = []

    async def read() -> None:
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(65536):
            chunks.append(chunk)

    try:
        await asyncio.wait_for(asyncio.gather(read(), proc.wait()), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        partial = b"".join(chunks).decode(errors="replace")
        pytest.fail(f"{command[0]} ran over {timeout:g} s and was killed; its output:\n{partial}")
    return b"".join(chunks).decode(errors="replace") + f"rc {proc.returncode}"


async def test_a_hung_command_is_killed_and_fails_with_its_output(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match=r"killed; its output:\npartial"):
        await run_bounded(3, "sh", "-c", "echo partial; exec sleep 600", cwd=tmp_path)
