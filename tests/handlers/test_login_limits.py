"""Login floods: a per-address budget across usernames (logins and registrations), the client
address behind a trusted proxy, and the bounded password-hashing pool that answers 503 instead
of starving other requests."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from tornado.httpclient import AsyncHTTPClient
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine

from fastsock.app import Server
from fastsock.handlers.base import client_address
from fastsock.services import passwords
from tests.conftest import RELAXED, make_settings
from tests.handlers.test_uploads import upload
from tests.support import PASSWORD, Api, Response

pytestmark = pytest.mark.once  # throttling and hashing do not depend on the store

WAIT_S = 30.0  # bound on every wait for a condition
# The servers here trust the proxy: the last X-Forwarded-For entry is the client.
FLOOD_ADDRESS = {"X-Forwarded-For": "203.0.113.7"}
OTHER_ADDRESS = {"X-Forwarded-For": "198.51.100.2"}


async def _start(db_uri: str | None, tmp_path: Path, **limits: object) -> Server:
    settings = make_settings(db_uri, tmp_path, limits=replace(RELAXED, **limits), trust_proxy=True)
    server = Server(settings)
    await server.start()
    return server


@pytest.fixture
async def own_client() -> AsyncIterator[AsyncHTTPClient]:
    """A client of its own with room for many requests in flight (the shared one queues
    beyond 10, which would hold back the requests that must get through)."""
    client = AsyncHTTPClient(force_instance=True, max_clients=64)
    yield client
    client.close()


async def _login(
    api: Api, username: str, password: str = "not the password", **kw: object
) -> Response:
    return await api.post("/auth/login", {"username": username, "password": password}, **kw)


async def _until_done[T](
    tasks: list[asyncio.Task[T]], count: int
) -> tuple[set[asyncio.Task[T]], set[asyncio.Task[T]]]:
    """Wait until `count` of `tasks` are done: (done, pending)."""
    done: set[asyncio.Task[T]] = set()
    pending = set(tasks)
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while len(done) < count:
        remaining = deadline - asyncio.get_running_loop().time()
        assert remaining > 0, f"only {len(done)} of {count} answered"
        finished, pending = await asyncio.wait(
            pending, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
        )
        done |= finished
    return done, pending


async def test_one_address_gets_429_after_its_budget_across_usernames(
    db_uri: str | None, tmp_path: Path
) -> None:
    server = await _start(db_uri, tmp_path, auth_per_ip_per_min=5)
    try:
        api = Api(server.port)
        alice = await api.register()  # from 127.0.0.1: another address
        # Five different usernames from one address: each a plain wrong login...
        for i in range(5):
            r = await _login(api, f"nobody{i}", headers=FLOOD_ADDRESS)
            assert r.status == 401, (i, r.body)
        # ...then the address is out of budget, whatever username it tries next.
        r = await _login(api, alice.username, PASSWORD, headers=FLOOD_ADDRESS)
        assert r.status == 429 and r.error_code == "rate_limited", r.body
        assert "access_token" not in r.body and r.body["error"]["retry_after"] > 0
        assert int(r.headers["Retry-After"]) >= 1
        # Registrations from that address draw on the same budget, and create nothing.
        body = {"username": "sprayer", "password": "p" * 10}
        r = await api.post("/auth/register", body, headers=FLOOD_ADDRESS)
        assert r.status == 429 and r.error_code == "rate_limited", r.body
        assert (await _login(api, "sprayer", "p" * 10)).status == 401
        # Another address is not affected.
        r = await _login(api, alice.username, PASSWORD, headers=OTHER_ADDRESS)
        assert r.status == 200, r.body
        metrics = (await api.get("/metrics")).body
        assert re.search(r'fastsock_rate_limited_total\{kind="auth"\} [1-9]', metrics), metrics
    finally:
        await server.stop()


async def test_what_the_client_sends_before_the_proxy_does_not_change_its_address(
    db_uri: str | None, tmp_path: Path
) -> None:
    server = await _start(db_uri, tmp_path, auth_per_ip_per_min=3)
    try:
        api = Api(server.port)
        # The proxy appends the address it sees; a client forges X-Real-Ip (which proxies pass
        # on) and earlier X-Forwarded-For entries, new ones for each attempt...
        for i in range(4):
            forged = {
                "X-Real-Ip": f"192.0.2.{i}",
                "X-Forwarded-For": f"192.0.2.{i}, 203.0.113.7",
            }
            r = await _login(api, f"nobody{i}", headers=forged)
            expected = 401 if i < 3 else 429
            assert r.status == expected, (i, r.body)
        # ...and still draws on the one budget of the address the proxy saw.
        assert (await _login(api, "nobody", headers=FLOOD_ADDRESS)).status == 429
        assert (await _login(api, "nobody", headers=OTHER_ADDRESS)).status == 401
    finally:
        await server.stop()


async def test_ipv6_addresses_of_one_64_share_one_budget(
    db_uri: str | None, tmp_path: Path
) -> None:
    server = await _start(db_uri, tmp_path, auth_per_ip_per_min=3)
    try:
        api = Api(server.port)
        # One subscriber's /64: a fresh address for every attempt does not get a fresh budget.
        for i in range(3):
            r = await _login(api, f"nobody{i}", headers={"X-Forwarded-For": f"2001:db8:1:2::{i}"})
            assert r.status == 401, (i, r.body)
        r = await _login(api, "nobody", headers={"X-Forwarded-For": "2001:db8:1:2:ffff::9"})
        assert r.status == 429 and r.error_code == "rate_limited", r.body
        # The next /64 is someone else.
        r = await _login(api, "nobody", headers={"X-Forwarded-For": "2001:db8:1:3::1"})
        assert r.status == 401, r.body
    finally:
        await server.stop()


def _request(peer: str, *headers: tuple[str, str]) -> HTTPServerRequest:
    start = RequestStartLine("POST", "/auth/login", "HTTP/1.1")
    request = HTTPServerRequest(headers=HTTPHeaders(Host="chat.example"), start_line=start)
    for name, value in headers:
        request.headers.add(name, value)
    request.remote_ip = peer
    return request


@pytest.mark.parametrize(
    ("trust_proxy", "headers", "expected"),
    [
        (False, [("X-Forwarded-For", "203.0.113.7")], "10.0.0.1"),  # no proxy: the peer
        (True, [("X-Forwarded-For", "192.0.2.1, 203.0.113.7")], "203.0.113.7"),
        (
            True,
            [("X-Forwarded-For", "192.0.2.1"), ("X-Forwarded-For", "203.0.113.7")],
            "203.0.113.7",
        ),
        (True, [("X-Real-Ip", "192.0.2.1"), ("X-Forwarded-For", "203.0.113.7")], "203.0.113.7"),
        (True, [("X-Forwarded-For", "192.0.2.1,2001:DB8::1")], "2001:db8::1"),
        (True, [("X-Forwarded-For", "203.0.113.7, unknown")], "10.0.0.1"),  # no address: peer
        (True, [("X-Real-Ip", "192.0.2.1")], "10.0.0.1"),
        (True, [], "10.0.0.1"),
    ],
)
def test_client_address(trust_proxy: bool, headers: list[tuple[str, str]], expected: str) -> None:
    assert client_address(_request("10.0.0.1", *headers), trust_proxy) == expected


async def test_one_address_has_at_most_its_share_of_password_checks_at_once(
    db_uri: str | None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    own_client: AsyncHTTPClient,
) -> None:
    server = await _start(
        db_uri, tmp_path, auth_concurrent_per_ip=2, hash_workers=2, hash_wait_s=WAIT_S
    )
    hashing = HeldHashing(monkeypatch)
    try:
        api = Api(server.port)
        api.http = own_client
        alice = await api.register()
        # Two checks from one address are hashing (held)...
        first = asyncio.create_task(_login(api, alice.username, PASSWORD, headers=FLOOD_ADDRESS))
        second = asyncio.create_task(_login(api, "nobody", headers=FLOOD_ADDRESS))
        await hashing.wait_entered()
        await hashing.wait_entered()
        # ...so its next login or registration is refused at once, and creates nothing...
        r = await _login(api, "nobody2", headers=FLOOD_ADDRESS)
        assert r.status == 429 and r.error_code == "rate_limited", r.body
        assert int(r.headers["Retry-After"]) >= 1
        body = {"username": "queuejumper", "password": "p" * 10}
        r = await api.post("/auth/register", body, headers=FLOOD_ADDRESS)
        assert r.status == 429 and r.error_code == "rate_limited", r.body
        # ...while another address still gets in line for the hashing threads.
        other = asyncio.create_task(_login(api, alice.username, PASSWORD))
        assert not first.done() and not second.done()

        hashing.release.set()
        assert [(await t).status for t in (first, second, other)] == [200, 401, 200]
        assert (await _login(api, "queuejumper", "p" * 10)).status == 401
        # With its checks done, the address may log in again.
        r = await _login(api, alice.username, PASSWORD, headers=FLOOD_ADDRESS)
        assert r.status == 200, r.body
    finally:
        hashing.release.set()
        await server.stop()


class HeldHashing:
    """Password checks that wait for `release` (in the hashing threads), counting entries."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()
        real = passwords.verify_password

        def held(password: str, stored: str) -> bool:
            self.entered.release()
            self.release.wait(2 * WAIT_S)  # longer than any wait of the test
            return real(password, stored)

        monkeypatch.setattr(passwords, "verify_password", held)

    async def wait_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.acquire, timeout=WAIT_S)


async def test_a_saturated_hashing_pool_answers_503_at_once_and_starves_nothing(
    db_uri: str | None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    own_client: AsyncHTTPClient,
) -> None:
    server = await _start(db_uri, tmp_path, hash_workers=1, hash_queue=1, hash_wait_s=WAIT_S)
    hashing = HeldHashing(monkeypatch)
    try:
        api = Api(server.port)
        api.http = own_client
        alice = await api.register()  # hashing a new password is not held

        # One login takes the only hashing thread...
        first = asyncio.create_task(_login(api, alice.username, PASSWORD))
        await hashing.wait_entered()
        # ...one more may wait for it, and every other login is refused at once, from any
        # address, while the thread is held.
        flood = [
            asyncio.create_task(
                _login(api, f"user{i}", headers={"X-Forwarded-For": f"192.0.2.{i}"})
            )
            for i in range(12)
        ]
        answered, queued = await _until_done(flood, len(flood) - 1)
        assert len(queued) == 1
        for task in answered:
            r = task.result()
            assert r.status == 503 and r.error_code == "unavailable", r.body
            assert int(r.headers["Retry-After"]) >= 1
        # Everything else still answers: no thread pool or queue is shared with hashing.
        assert (await api.get("/healthz")).status == 200
        assert (await api.get("/rooms", alice)).status == 200
        r = await upload(api, alice, b"uploaded while logins wait\n", "text/plain", "note.txt")
        assert r.status == 201, r.body
        assert not first.done() and not queued.pop().done()

        hashing.release.set()
        assert (await first).status == 200
        assert {(await task).status for task in flood} == {401, 503}
    finally:
        hashing.release.set()
        await server.stop()


async def test_a_login_queued_past_the_deadline_gets_503(
    db_uri: str | None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    own_client: AsyncHTTPClient,
) -> None:
    server = await _start(db_uri, tmp_path, hash_workers=1, hash_queue=8, hash_wait_s=0.2)
    hashing = HeldHashing(monkeypatch)
    try:
        api = Api(server.port)
        api.http = own_client
        alice = await api.register()
        first = asyncio.create_task(_login(api, alice.username, PASSWORD))
        await hashing.wait_entered()
        # The queue has room, but the thread stays busy past the deadline.
        r = await _login(api, alice.username, PASSWORD)
        assert r.status == 503 and r.error_code == "unavailable", r.body
        assert r.headers["Retry-After"] and not first.done()
        hashing.release.set()
        assert (await first).status == 200
        # Once the thread is free again, logins go through.
        assert (await _login(api, alice.username, PASSWORD)).status == 200
    finally:
        hashing.release.set()
        await server.stop()
