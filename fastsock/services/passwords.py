"""Password hashing with scrypt (memory-hard, in the standard library).

Stored as `scrypt$n$r$p$salt$hash` (base64), so parameters can be raised later without
invalidating existing hashes. Hashing takes tens of milliseconds of CPU: callers go through a
PasswordHasher, which runs it on a few threads of its own and bounds how many wait."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from fastsock.config import Limits
from fastsock.errors import Unavailable


@dataclass(frozen=True, slots=True)
class ScryptParams:
    n: int = 2**14
    r: int = 8
    p: int = 1


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _derive(password: str, salt: bytes, params: ScryptParams) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=params.n,
        r=params.r,
        p=params.p,
        maxmem=256 * 1024 * 1024,
        dklen=32,
    )


def hash_password(password: str, params: ScryptParams = ScryptParams()) -> str:
    salt = secrets.token_bytes(16)
    digest = _derive(password, salt, params)
    return f"scrypt${params.n}${params.r}${params.p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        params = ScryptParams(int(n), int(r), int(p))
        expected = base64.b64decode(digest)
        salt_bytes = base64.b64decode(salt)
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    try:
        derived = _derive(password, salt_bytes, params)
    except ValueError:  # parameters scrypt refuses (corrupt record)
        return False
    return hmac.compare_digest(derived, expected)


# Checked against when the username does not exist, so a wrong username costs the same time
# as a wrong password and does not reveal which accounts exist.
DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


BUSY = "too many sign-ins at once; try again shortly"


class PasswordHasher:
    """Hashing and checking passwords, bounded: on `hash_workers` threads of its own (so a
    flood of logins never holds up the default thread pool that uploads use, and never takes
    more than that many cores), with at most `hash_queue` callers waiting for a thread, each at
    most `hash_wait_s`. A caller beyond the queue or past the wait gets 503 `unavailable`."""

    def __init__(self, limits: Limits) -> None:
        self._executor = ThreadPoolExecutor(limits.hash_workers, "fastsock-hash")
        # Held from submitting to the executor until the job is done: the executor's own
        # (unbounded) queue stays empty, and waiting happens here, bounded.
        self._slots = asyncio.Semaphore(limits.hash_workers)
        self._queue = limits.hash_queue
        self._wait_s = limits.hash_wait_s
        self._waiting = 0

    async def hash(self, password: str) -> str:
        return await self._run(hash_password, password)

    async def verify(self, password: str, stored: str) -> bool:
        return await self._run(verify_password, password, stored)

    async def close(self) -> None:
        await asyncio.to_thread(self._executor.shutdown, cancel_futures=True)

    async def _run[T](self, fn: Callable[..., T], *args: str) -> T:
        if self._slots.locked() and self._waiting >= self._queue:
            raise Unavailable(BUSY)
        self._waiting += 1
        try:
            async with asyncio.timeout(self._wait_s):
                await self._slots.acquire()
        except TimeoutError:
            raise Unavailable(BUSY) from None
        finally:
            self._waiting -= 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        finally:
            self._slots.release()
