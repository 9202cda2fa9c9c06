"""The worker: its HTTP endpoints, the calls it hosts, and its lifecycle (start, drain, stop).

One worker per process (one per core): it owns whole calls, so a call's media never crosses
processes. `/ws` is the participants' signaling (sfu/signaling.py), `/healthz` what FastSock
probes, `/metrics` Prometheus (behind SFU_METRICS_TOKEN when set)."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from tornado.httpserver import HTTPServer
from tornado.web import Application, RequestHandler

import sfu
from fastsock.store.ids import new_id
from sfu import metrics
from sfu.auth import (
    CLOSE_DRAINING,
    CLOSE_EVICTED,
    CLOSE_FORBIDDEN,
    CLOSE_FULL,
    CLOSE_REPLACED,
    JoinGate,
    JoinRefused,
)
from sfu.config import SfuSettings
from sfu.control import ControlClient
from sfu.peer import Channel, Kind, Peer
from sfu.room import Room
from sfu.signaling import WorkerSocket

log = logging.getLogger("sfu")

VERSION = getattr(sfu, "__version__", "1")
MAX_REPORTED_CALLS, MAX_REPORTED_USERS = 1000, 64  # FastSock's heartbeat limits
CLOSE_TIMEOUT_S = 5.0
CLOSE_GOING_AWAY, CLOSE_RESTART = 1001, 1012


class Worker:
    def __init__(self, settings: SfuSettings) -> None:
        self.settings = settings
        self.id = new_id()  # a restarted worker is a new worker: FastSock moves the old one's calls
        self.gate = JoinGate(settings.secret, self.id)
        self.rooms: dict[str, Room] = {}  # by call id
        self.unjoined = 0  # sockets open that have not joined (yet)
        self.draining = False
        self.stopping = False
        self.finished = asyncio.get_running_loop().create_future()
        self.control = ControlClient(
            settings,
            self.id,
            version=VERSION,
            status=self.status,
            on_commands=self.apply,
            on_lost=self.drop_all,
        )
        self.app = Application(
            [
                (r"/ws", WorkerSocket, {"worker": self}),
                (r"/healthz", HealthHandler, {"worker": self}),
                (r"/metrics", MetricsHandler, {"worker": self}),
            ],
            default_handler_class=NotFoundHandler,
        )
        self.server: HTTPServer | None = None
        self._emptied = asyncio.Event()
        self._closing: set[asyncio.Task[None]] = set()
        # (process time, monotonic) at the last heartbeat: CPU is reported per interval, and
        # the first heartbeat has none (its few milliseconds would show the start-up's work,
        # making a new worker look busy to FastSock's choice until the next one).
        self._cpu: tuple[float, float] | None = None
        metrics.PEERS.set_function(lambda: self.peers)
        metrics.ROOMS.set_function(lambda: len(self.rooms))
        metrics.TRACKS.set_function(lambda: sum(r.forwarded for r in self.rooms.values()))

    @property
    def max_unjoined(self) -> int:
        """Sockets that may wait to join at once: beyond, more are refused (close 1013)."""
        return 2 * self.settings.capacity

    @property
    def peers(self) -> int:
        return sum(len(room.peers) for room in self.rooms.values())

    async def start(self) -> None:
        self.server = self.app.listen(self.settings.port, self.settings.host, xheaders=False)
        self.control.start()

    # --- participants -----------------------------------------------------------------------

    def join(
        self, channel: Channel, token: object, publish: dict[str, bool], *, started: float
    ) -> Peer:
        """Admit a participant (JoinRefused says why not) and start its first offer."""
        claims = self.gate.admit(token)
        if self.draining or self.stopping:
            raise JoinRefused(CLOSE_DRAINING, "worker draining: ask FastSock for another")
        room = self.rooms.get(claims.call_id)
        if room is not None and room.room_id != claims.room_id:
            raise JoinRefused(CLOSE_FORBIDDEN, "token for another room")
        previous = room.peers.get(claims.user_id) if room is not None else None
        if previous is None and self.peers >= self.settings.capacity:
            raise JoinRefused(CLOSE_FULL, "worker at capacity")
        if previous is not None:
            self._remove(previous, "replaced")
            previous.channel.close(CLOSE_REPLACED, "joined again elsewhere")
            room = self.rooms.get(claims.call_id)  # gone if that peer was alone in it
        if room is None:
            room = self.rooms[claims.call_id] = Room(claims.call_id, claims.room_id)
        flags: dict[Kind, bool] = {"audio": publish["audio"], "video": publish["video"]}
        peer = Peer(
            user_id=claims.user_id, room=room, channel=channel, publish=flags, joined_at=started
        )
        channel.send(
            "joined",
            {
                "peer_id": secrets.token_hex(8),
                "call_id": room.call_id,
                "room_id": room.room_id,
                "user_id": peer.user_id,
                "peers": [p.view() for p in room.peers.values()],
            },
        )
        room.add(peer)
        self._emptied.clear()
        self.control.event("peer_joined", room.call_id, peer.user_id)
        fields = {"call_id": room.call_id, "user_id": peer.user_id}
        log.info("sfu_peer_joined", extra={"fields": fields})
        return peer

    def leave(self, peer: Peer, reason: str) -> None:
        """`reason`: leave, disconnected. Nothing if the peer is gone already."""
        if peer.room.peers.get(peer.user_id) is peer:
            self._remove(peer, reason)

    def _remove(self, peer: Peer, reason: str, *, report: bool = True) -> None:
        room = peer.room
        room.remove(peer)
        if report:
            self.control.event("peer_left", room.call_id, peer.user_id, reason)
        fields = {"call_id": room.call_id, "user_id": peer.user_id, "reason": reason}
        log.info("sfu_peer_left", extra={"fields": fields})
        if not room.peers and self.rooms.get(room.call_id) is room:
            del self.rooms[room.call_id]
        if not self.rooms:
            self._emptied.set()
        task = asyncio.ensure_future(peer.close())
        self._closing.add(task)
        task.add_done_callback(self._closed)

    def _closed(self, task: asyncio.Task[None]) -> None:
        self._closing.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("sfu_peer_close_failed", extra={"fields": {"error": repr(exc)}})

    def _close_all(self, code: int, reason: str) -> None:
        for room in list(self.rooms.values()):
            for peer in list(room.peers.values()):
                self._remove(peer, "ended", report=False)
                peer.channel.close(code, reason)

    # --- FastSock -----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The heartbeat: load, and who is in which call here."""
        cpu, wall = time.process_time(), time.monotonic()
        used = 0.0 if self._cpu is None else (cpu - self._cpu[0]) / max(wall - self._cpu[1], 1e-3)
        self._cpu = (cpu, wall)
        metrics.CPU.set(used)
        rooms = list(self.rooms.values())
        return {
            "peers": self.peers,
            "tracks": sum(room.forwarded for room in rooms),
            "rooms": len(rooms),
            "cpu": round(min(used, 64.0), 3),
            "capacity": self.settings.capacity,
            "draining": self.draining,
            "calls": [
                {
                    "call_id": room.call_id,
                    "room_id": room.room_id,
                    "user_ids": list(room.peers)[:MAX_REPORTED_USERS],
                }
                for room in rooms[:MAX_REPORTED_CALLS]
            ],
        }

    def apply(self, evict: list[dict[str, str]], end: list[str]) -> None:
        """FastSock's commands: remove a participant (close 4000), end a call (close 4403)."""
        for item in evict:
            room = self.rooms.get(item["call_id"])
            peer = room.peers.get(item["user_id"]) if room is not None else None
            if peer is not None:
                self._remove(peer, "evicted")
                peer.channel.close(CLOSE_EVICTED, "removed from the call")
        for call_id in end:
            self.gate.end_call(call_id, ttl_s=self.control.token_ttl_s)
            room = self.rooms.get(call_id)
            for peer in list(room.peers.values()) if room is not None else ():
                self._remove(peer, "ended", report=False)
                peer.channel.close(CLOSE_FORBIDDEN, "call ended")

    def drop_all(self) -> None:
        """FastSock forgot this worker and moved its calls: their participants are elsewhere."""
        self._close_all(CLOSE_RESTART, "worker re-registering")

    # --- lifecycle ----------------------------------------------------------------------------

    async def drain(self) -> None:
        """No new joins; tell FastSock at once (it moves the calls); wait until everyone has
        gone or SFU_DRAIN_TIMEOUT_S, then stop."""
        if self.draining or self.stopping:
            return
        self.draining = True
        log.info("sfu_draining", extra={"fields": {"peers": self.peers, "calls": len(self.rooms)}})
        self.control.beat_now()
        if self.rooms:
            try:
                await asyncio.wait_for(self._emptied.wait(), self.settings.drain_timeout_s)
            except TimeoutError:
                log.warning("sfu_drain_timeout", extra={"fields": {"peers": self.peers}})
        await self.stop()

    async def stop(self) -> None:
        """Close every peer, deregister (FastSock moves what is left), stop serving."""
        if self.stopping:
            return
        self.stopping = True
        self._close_all(CLOSE_GOING_AWAY, "worker shutting down")
        await self.control.stop()
        await self.control.deregister()
        if self._closing:
            await asyncio.wait(self._closing, timeout=CLOSE_TIMEOUT_S)
        if self.server is not None:
            self.server.stop()
        log.info("sfu_stopped", extra={"fields": {"worker_id": self.id}})
        if not self.finished.done():
            self.finished.set_result(None)


class _Handler(RequestHandler):
    def initialize(self, worker: Worker) -> None:
        self.worker = worker

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        code = {401: "unauthenticated", 404: "not_found", 405: "method_not_allowed"}.get(
            status_code, "internal_error" if status_code >= 500 else "invalid_request"
        )
        self.send_json({"error": {"code": code, "message": self._reason}})

    def send_json(self, body: dict[str, Any]) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(body))


class NotFoundHandler(_Handler):
    def initialize(self) -> None:  # type: ignore[override]
        pass

    def prepare(self) -> None:
        self.send_error(404, reason="no such endpoint")


class HealthHandler(_Handler):
    def get(self) -> None:
        worker = self.worker
        if worker.stopping:
            self.set_status(503)
        self.send_json(
            {
                "ok": not worker.stopping,
                "worker_id": worker.id,  # a restarted worker at the same URL is another worker
                "registered": worker.control.registered,
                "draining": worker.draining or worker.stopping,
                "peers": worker.peers,
            }
        )


class MetricsHandler(_Handler):
    def get(self) -> None:
        expected = self.worker.settings.metrics_token
        if expected:
            scheme, _, given = (self.request.headers.get("Authorization") or "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), expected.encode()
            ):
                self.set_header("WWW-Authenticate", "Bearer")
                self.send_error(401, reason="a metrics token is required")
                return
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest(metrics.REGISTRY))
