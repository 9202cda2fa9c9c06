"""Which SFU worker takes a group call: pure decisions over the registry's worker entries.

A worker is *healthy* while it is up, not draining, and heard from within the stale window; it
*has room* while its peers plus the admissions reserved since its last heartbeat stay below its
capacity. A new call goes to the least-loaded healthy worker with room, where load is the
larger of its occupancy and its CPU (in cores: one worker process uses one core), ties broken by
id so that every FastSock node picks the same one."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

UP = "up"


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    id: str
    url: str
    health_url: str | None
    capacity: int
    peers: int
    pending: int  # admissions reserved since its last heartbeat
    cpu: float
    draining: bool
    state: str
    heartbeat_at: datetime

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> WorkerInfo:
        return cls(
            id=str(doc["_id"]),
            url=doc["url"],
            health_url=doc.get("health_url"),
            capacity=int(doc["capacity"]),
            peers=int(doc.get("peers", 0)),
            pending=int(doc.get("pending", 0)),
            cpu=float(doc.get("cpu", 0.0)),
            draining=bool(doc.get("draining", False)),
            state=doc.get("state", UP),
            heartbeat_at=doc["heartbeat_at"],
        )


def fresh(w: WorkerInfo, now: datetime, stale_after_s: float) -> bool:
    """Up and heard from recently (draining or not)."""
    return w.state == UP and (now - w.heartbeat_at).total_seconds() <= stale_after_s


def healthy(w: WorkerInfo, now: datetime, stale_after_s: float) -> bool:
    """May take new participants: fresh and not draining."""
    return fresh(w, now, stale_after_s) and not w.draining


def has_room(w: WorkerInfo) -> bool:
    return w.peers + w.pending < w.capacity


def load(w: WorkerInfo) -> float:
    return max((w.peers + w.pending) / w.capacity, w.cpu)


def choose_worker(
    workers: Iterable[WorkerInfo],
    *,
    now: datetime,
    stale_after_s: float,
    exclude: frozenset[str] = frozenset(),
) -> WorkerInfo | None:
    """The least-loaded healthy worker with room, or None."""
    candidates = [
        w for w in workers if w.id not in exclude and healthy(w, now, stale_after_s) and has_room(w)
    ]
    return min(candidates, key=lambda w: (load(w), w.id), default=None)


def unavailable_reason(
    workers: Iterable[WorkerInfo],
    *,
    now: datetime,
    stale_after_s: float,
    exclude: frozenset[str] = frozenset(),
) -> str:
    """Why `choose_worker` found none: every healthy worker is full, or there is none."""
    if any(w.id not in exclude and healthy(w, now, stale_after_s) for w in workers):
        return "worker_full"
    return "no_worker"
