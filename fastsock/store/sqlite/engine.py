"""The database file, its one writer thread and its pool of readers.

Concurrency. The file is in WAL mode: readers see a snapshot and never wait for the writer, the
writer never waits for readers. All writes go through ONE connection on ONE thread, so writes
never contend for the lock and "database is locked" cannot happen between them; readers use
their own connections on a small thread pool (plus a busy_timeout for the rare moments WAL
needs a lock, such as recovery after a crash). The event loop only hands work over and picks up
results: no SQLite call ever runs on it.

Group commit. The writer takes every write job that is queued, runs them in one transaction,
each inside its own SAVEPOINT (a job that fails, a UNIQUE violation say, rolls back only its
own changes and gets its own exception), commits once, and only then resolves the jobs'
futures. An acknowledged write is therefore committed, and under load one fsync is shared by
every write that arrived while the previous one was running.

Durability (`synchronous`):
- "full" (default): the WAL is fsynced at every commit. An acknowledged write survives a
  process crash, a kernel panic and a power loss.
- "normal": the WAL is fsynced only at checkpoints. An acknowledged write survives a crash of
  the process (the data is in the OS page cache), but a power loss or kernel panic may lose the
  last commits (never corrupt the file). Cheaper per commit; group commit already amortises the
  fsync of "full", so prefer "full" unless the disk is slow at fsync.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future as ThreadFuture
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastsock.store.sqlite.errors import Closed

Observe = Callable[[str, float], None]
Work = Callable[..., Any]  # called as work(connection, *args) on a database thread

SYNCHRONOUS = ("full", "normal")
READERS = 4  # reader threads (and connections); reads are short, SQLite releases the GIL
BUSY_TIMEOUT_S = 10.0
MAX_BATCH = 1000  # write jobs per transaction: bounds the latency of the first one
FILE_MODE = 0o600
DIR_MODE = 0o700
WAL_SIZE_LIMIT = 64 * 1024 * 1024  # truncate the WAL back to this after a checkpoint


@dataclass(slots=True)
class _Job:
    work: Work
    args: tuple[Any, ...]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


_STOP = object()  # queued by close(): the writer finishes what came before it, then exits
_Outcome = tuple[Any, BaseException | None]


class InUse(RuntimeError):
    """Another process has the database open: the file has one writer, one server."""


def open_private(path: Path) -> int:
    """Create or open the database file private to this user (SQLite creates -wal and -shm with
    the database file's mode, so they follow) and lock it for this process; the returned
    descriptor holds the lock until it is closed (or the process dies).

    The lock is flock(2) on the database file itself, so another path to the same file (a
    symlink, a hard link) finds it too; SQLite's own locks are POSIX record locks, which flock
    does not touch. A second writer process would not corrupt the file, but its writes would
    wait on the first one's and reach users as 503s: refusing it at start-up says what is
    wrong."""
    if not path.parent.exists():
        path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.fchmod(fd, FILE_MODE)  # an existing file keeps its mode on open; fix it
    except BlockingIOError:
        os.close(fd)
        raise InUse(
            f"{path} is in use by another process: stop it first (an embedded database serves "
            "one FastSock process; several servers need MongoDB)"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    for suffix in ("-wal", "-shm"):  # left by an earlier run, perhaps with a wider mode
        with contextlib.suppress(FileNotFoundError):
            os.chmod(f"{path}{suffix}", FILE_MODE)
    return fd


class Database:
    def __init__(
        self,
        path: Path,
        *,
        synchronous: str = "full",
        observe: Observe | None = None,
        readers: int = READERS,
    ) -> None:
        if synchronous not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS}, not {synchronous!r}")
        self.path = path
        self.synchronous = synchronous
        self._observe = observe
        self._reader_count = readers
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()  # each reader thread's connection
        self._reader_conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._state = "new"  # new -> open -> closed
        self._lock_fd: int | None = None
        self._opening = asyncio.Lock()

    # --- life cycle ------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._state == "open"

    async def open(self) -> None:
        """Create or open the file and start the writer; idempotent."""
        async with self._opening:
            if self._state == "open":
                return
            if self._state == "closed":
                raise Closed("the database was closed")
            self._lock_fd = await asyncio.to_thread(open_private, self.path)
            started: ThreadFuture[None] = ThreadFuture()
            writer = threading.Thread(
                target=self._write_loop, args=(started,), name="sqlite-writer", daemon=True
            )
            writer.start()
            try:
                await asyncio.wrap_future(started)
            except BaseException:  # the writer could not open the file: let it go again
                os.close(self._lock_fd)
                self._lock_fd = None
                raise
            self._writer = writer
            self._pool = ThreadPoolExecutor(self._reader_count, thread_name_prefix="sqlite-reader")
            self._state = "open"

    async def close(self) -> None:
        """Let the writer finish every queued job, then close all connections."""
        if self._state != "open":
            self._state = "closed"
            return
        self._state = "closed"
        self._queue.put(_STOP)
        if self._writer is not None:
            await asyncio.to_thread(self._writer.join)
        if self._pool is not None:
            await asyncio.to_thread(self._pool.shutdown, True)
        with self._conns_lock:
            conns, self._reader_conns = self._reader_conns, []
        # In a thread: the last connection to close checkpoints the WAL into the file.
        await asyncio.to_thread(_close_all, conns)
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock, after SQLite's own descriptors
            self._lock_fd = None

    def _check_open(self) -> None:
        if self._state != "open":
            raise Closed("the database is not open" if self._state == "new" else "closed")
        if self._writer is None or not self._writer.is_alive():
            raise Closed("the database writer stopped")

    # --- calls from the event loop ---------------------------------------------------------

    async def read[T, *Ts](
        self, name: str, work: Callable[[sqlite3.Connection, *Ts], T], *args: *Ts
    ) -> T:
        """Run `work(conn, *args)` on a reader thread, in one read transaction (a consistent
        snapshot for all its queries)."""
        self._check_open()
        assert self._pool is not None
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            try:
                future: asyncio.Future[T] = loop.run_in_executor(self._pool, self._read, work, args)
            except RuntimeError as exc:  # the pool shut down under us
                raise Closed("the database is closing") from exc
            return await future
        finally:
            if self._observe is not None:
                self._observe(name, time.perf_counter() - started)

    async def write[T, *Ts](
        self, name: str, work: Callable[[sqlite3.Connection, *Ts], T], *args: *Ts
    ) -> T:
        """Run `work(conn, *args)` on the writer thread; returns once it is committed."""
        self._check_open()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        started = time.perf_counter()
        self._queue.put(_Job(work, args, loop, future))
        try:
            return await future
        finally:
            if self._observe is not None:
                self._observe(name, time.perf_counter() - started)

    # --- connections -----------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: the module never opens transactions behind our back; every
        # BEGIN/SAVEPOINT/COMMIT here is explicit. timeout= is SQLite's busy_timeout.
        return sqlite3.connect(
            self.path,
            timeout=BUSY_TIMEOUT_S,
            isolation_level=None,
            check_same_thread=False,  # readers are closed by close(), on another thread
            cached_statements=256,
        )

    def _connect_writer(self) -> sqlite3.Connection:
        conn = self._connect()
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":  # e.g. a file system without shared memory: readers would block
                raise sqlite3.OperationalError(f"cannot use WAL mode here (got {mode!r})")
            conn.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
            # Cross-collection references are not enforced: documents arrive from a copy of
            # another backend in any order; child rows are kept by triggers and the repos.
            conn.execute("PRAGMA foreign_keys = OFF")
            conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
            conn.execute("PRAGMA temp_store = MEMORY")
            conn.execute("PRAGMA cache_size = -32000")  # KiB
        except BaseException:
            conn.close()
            raise
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only = 1")  # a reader that tried to write is a bug
            conn.execute("PRAGMA temp_store = MEMORY")
            # Small: WAL readers drop their page cache whenever the file changed since their
            # last read, so under steady writes it mostly serves one read transaction.
            conn.execute("PRAGMA cache_size = -8000")
            with self._conns_lock:
                self._reader_conns.append(conn)
            self._local.conn = conn
        return conn

    # --- reader threads --------------------------------------------------------------------

    def _read(self, work: Work, args: tuple[Any, ...]) -> Any:
        conn = self._reader()
        conn.execute("BEGIN")
        try:
            return work(conn, *args)
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")  # nothing to keep; ends the snapshot

    # --- the writer thread -----------------------------------------------------------------

    def _write_loop(self, started: ThreadFuture[None]) -> None:
        try:
            conn = self._connect_writer()
        except BaseException as exc:
            started.set_exception(exc)
            return
        started.set_result(None)
        try:
            stopping = False
            while not stopping:
                batch, stopping = self._next_batch()
                if batch:
                    self._run_batch(conn, batch)
        finally:
            conn.close()

    def _next_batch(self) -> tuple[list[_Job], bool]:
        """Wait for one job, then take whatever else is queued already (no added delay: the
        jobs that arrive while a commit is running make up the next batch)."""
        first = self._queue.get()
        if first is _STOP:
            return [], True
        batch: list[_Job] = [first]
        while len(batch) < MAX_BATCH:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is _STOP:
                return batch, True
            batch.append(job)
        return batch, False

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        try:
            outcomes = self._transaction(conn, batch)
        except BaseException as exc:  # BEGIN or COMMIT failed, or SQLite dropped the whole
            if conn.in_transaction:  # transaction: none of it is durable, every job fails
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            outcomes = [(None, exc)] * len(batch)
        self._settle(batch, outcomes)

    @staticmethod
    def _transaction(conn: sqlite3.Connection, batch: list[_Job]) -> list[_Outcome]:
        conn.execute("BEGIN IMMEDIATE")
        outcomes: list[_Outcome] = []
        for job in batch:
            conn.execute("SAVEPOINT job")
            try:
                result = job.work(conn, *job.args)
            except Exception as exc:
                if not conn.in_transaction:
                    # I/O error, disk full...: SQLite rolled back everything, including the
                    # jobs before this one, so the whole batch fails.
                    raise
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                outcomes.append((None, exc))
            else:
                conn.execute("RELEASE job")
                outcomes.append((result, None))
        conn.execute("COMMIT")
        return outcomes

    @staticmethod
    def _settle(batch: list[_Job], outcomes: list[_Outcome]) -> None:
        """Hand results back, after the commit: one wake-up per event loop, not per job."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], _Outcome]]] = {}
        for job, outcome in zip(batch, outcomes, strict=True):
            by_loop.setdefault(job.loop, []).append((job.future, outcome))
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(_resolve, items)


def _close_all(conns: list[sqlite3.Connection]) -> None:
    for conn in conns:
        conn.close()


def _resolve(items: list[tuple[asyncio.Future[Any], _Outcome]]) -> None:
    for future, (result, error) in items:
        if future.done():  # the caller was cancelled; the write happened regardless
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)
