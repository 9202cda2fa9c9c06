"""`fastsock migrate`: copy everything from one store to another (SQLite -> MongoDB, or back).

Both stores must be prepared (`Store.prepare`) and used by no server while this runs: the copy
reads the source in key order and writes the target in batches, so a change on either side
meanwhile is either missed or mixed into what the target already holds.

- Resumable: each collection starts after the target's last key, so an interrupted run picks
  up where it stopped. That is only right while the target holds nothing but what earlier runs
  of this copy wrote, from a source that did not change since; otherwise empty the target and
  start again.
- Idempotent: importing is an upsert by key, so copying a batch twice changes nothing.
- Checked: at the end each collection's count on both sides must agree; `CountMismatch` when
  they do not.

Refresh tokens that have expired are not copied (both backends purge them at moments of their
choosing: MongoDB's TTL monitor, SQLite at start-up and as tokens are issued), so the check
counts the tokens still valid a margin after it starts, on both sides.

Files (uploads' contents) are not in the store: the target's server must use the same upload
directory or bucket."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TextIO

from fastsock.config import load_settings
from fastsock.store import is_unavailable, locations
from fastsock.store.base import COLLECTIONS, Store, key_of
from fastsock.store.locations import SQLITE_FILE, UsageError

TOKENS = "refresh_tokens"
# A token valid this long after the check starts cannot expire while the check counts it.
TOKEN_MARGIN = timedelta(minutes=10)
BAR_WIDTH = 30
REDRAW_S = 0.1  # at most this often on a terminal


@dataclass(frozen=True)
class Count:
    collection: str
    source: int
    target: int

    @property
    def ok(self) -> bool:
        return self.source == self.target


class CountMismatch(Exception):
    """The copy ended but the target does not hold what the source does."""

    def __init__(self, counts: list[Count]) -> None:
        self.counts = counts
        bad = ", ".join(f"{c.collection} {c.source:,} vs {c.target:,}" for c in counts if not c.ok)
        super().__init__(f"counts differ (source vs target): {bad}")


class Progress:
    """`messages       [#######.....]  48,000/100,000` on a stream: redrawn in place on a
    terminal, one line per finished collection otherwise (logs, pipes)."""

    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream
        try:
            self.tty = stream is not None and stream.isatty()
        except (AttributeError, ValueError):
            self.tty = False
        self._drawn = 0.0
        self._width = max(len(c) for c in COLLECTIONS)

    def line(self, collection: str, done: int, total: int) -> str:
        shown = min(done, total)
        filled = BAR_WIDTH if total == 0 else BAR_WIDTH * shown // total
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        return f"{collection:<{self._width}}  [{bar}]  {shown:,}/{total:,}"

    def update(self, collection: str, done: int, total: int) -> None:
        if self.stream is None or not self.tty:
            return
        now = time.monotonic()
        if now - self._drawn >= REDRAW_S:
            self._drawn = now
            self.stream.write("\r" + self.line(collection, done, total))
            self.stream.flush()

    def finish(self, collection: str, done: int, total: int) -> None:
        if self.stream is None:
            return
        self.stream.write(("\r" if self.tty else "") + self.line(collection, done, total) + "\n")
        self.stream.flush()
        self._drawn = 0.0


def count_table(counts: list[Count]) -> str:
    width = max(len(c) for c in COLLECTIONS) + 1  # room for the tokens' asterisk
    rows = [f"{'collection':<{width}}  {'source':>12}  {'target':>12}"]
    for c in counts:
        name = c.collection + ("*" if c.collection == TOKENS else "")
        verdict = "ok" if c.ok else "DIFFERENT"
        rows.append(f"{name:<{width}}  {c.source:>12,}  {c.target:>12,}  {verdict}")
    rows.append(f"* {TOKENS}: only tokens still valid (expired ones are not copied)")
    return "\n".join(rows) + "\n"


def _stream(choice: TextIO | bool, default: TextIO) -> TextIO | None:
    if choice is True:
        return default
    if choice is False:
        return None
    return choice


async def _copy(source: Store, target: Store, collection: str, batch: int, bar: Progress) -> None:
    total = await source.transfer.count(collection)
    after = await target.transfer.last_key(collection)
    # Resuming: what the target holds stands for the source documents up to its last key.
    done = await target.transfer.count(collection) if after is not None else 0
    bar.update(collection, done, total)
    while docs := await source.transfer.export(collection, after, batch):
        keep = docs
        if collection == TOKENS:
            at = datetime.now(UTC)
            keep = [d for d in docs if d["expires_at"] > at]
        if keep:
            await target.transfer.import_many(collection, keep)
        after = key_of(collection, docs[-1])
        done += len(docs)
        bar.update(collection, done, total)
    bar.finish(collection, done, total)


async def _live_tokens(store: Store, cutoff: datetime, batch: int) -> int:
    live, after = 0, None
    while docs := await store.transfer.export(TOKENS, after, batch):
        live += sum(1 for d in docs if d["expires_at"] > cutoff)
        after = key_of(TOKENS, docs[-1])
    return live


async def check_counts(source: Store, target: Store, *, batch: int = 1000) -> list[Count]:
    cutoff = datetime.now(UTC) + TOKEN_MARGIN
    counts = []
    for collection in COLLECTIONS:
        if collection == TOKENS:
            sides = [await _live_tokens(s, cutoff, batch) for s in (source, target)]
        else:
            sides = [await s.transfer.count(collection) for s in (source, target)]
        counts.append(Count(collection, *sides))
    return counts


async def migrate(
    source: Store,
    target: Store,
    *,
    batch: int = 1000,
    progress: TextIO | bool = True,
    report: TextIO | bool = True,
) -> list[Count]:
    """Copy every collection of COLLECTIONS, in that order, from `source` to `target` (both
    prepared, neither used by a server meanwhile), then compare the counts.

    `progress`: a bar per collection on stderr (True), on the given stream, or none (False).
    `report`: the count table on stdout (True), on the given stream, or none (False).
    Returns the counts; raises CountMismatch (after printing the table) when they differ."""
    if batch < 1:
        raise ValueError("batch must be at least 1")
    bar = Progress(_stream(progress, sys.stderr))
    for collection in COLLECTIONS:
        await _copy(source, target, collection, batch, bar)
    await target.transfer.finish()
    counts = await check_counts(source, target, batch=batch)
    if (out := _stream(report, sys.stdout)) is not None:
        out.write(count_table(counts))
        out.flush()
    if not all(c.ok for c in counts):
        raise CountMismatch(counts)
    return counts


MIGRATE_DB_TIMEOUT_S = 30.0


async def run(src: str | None, dst: str | None, batch: int, config_file: str | None) -> int:
    """`fastsock migrate`: the exit code; UsageError for arguments that name no store."""
    if src is None or dst is None:
        settings = load_settings(config_file=config_file)
        if src is None:
            src = str(settings.data_dir / SQLITE_FILE)
        if dst is None:
            dst = settings.mongo_uri
            if dst is None:
                raise UsageError("--to is required (or set FASTSOCK_MONGO_URI)")
    source_spec = locations.parse("--from", src, must_exist=True)
    target_spec = locations.parse("--to", dst, must_exist=False)
    if locations.identity(source_spec) == locations.identity(target_spec):
        raise UsageError("--from and --to are the same database; refusing to copy it onto itself")
    source = target = None
    try:
        source = locations.open_at(source_spec)
        await source.prepare(MIGRATE_DB_TIMEOUT_S)
        target = locations.open_at(target_spec)  # only now: a new target file waits for the source
        await target.prepare(MIGRATE_DB_TIMEOUT_S)
        print(f"copying {source.description} -> {target.description}", file=sys.stderr)
        await migrate(source, target, batch=batch)
    except CountMismatch as exc:
        print(f"fastsock migrate: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        detail = (str(exc).splitlines() or [""])[0][:300]  # pymongo's can run to pages
        if is_unavailable(exc):
            print(f"fastsock migrate: database unreachable: {detail}", file=sys.stderr)
        else:
            print(f"fastsock migrate: failed: {type(exc).__name__}: {detail}", file=sys.stderr)
        return 1
    finally:
        for store in (source, target):
            if store is not None:
                await store.close()
    print("fastsock migrate: done; the counts match", file=sys.stderr)
    return 0
