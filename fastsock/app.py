"""The tornado Application (the one routes table) and the Server that runs it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.web import Application, RequestHandler

from fastsock import openapi, tracing
from fastsock.blobs import make_blob_store
from fastsock.cluster import check_redis, join_calls, join_cluster, start_cluster_hub
from fastsock.cluster.hub import ClusterHub
from fastsock.config import Settings, check_cluster, check_metrics_access, ensure_jwt_secret
from fastsock.connections import Endpoint, connection_bound
from fastsock.context import AppContext
from fastsock.handlers import (
    accounts,
    calls,
    client_config,
    moderation,
    ops,
    rooms,
    sfu,
    uploads,
    web,
)
from fastsock.handlers.base import BaseHandler, NotFoundHandler
from fastsock.handlers.openapi import OpenApiHandler
from fastsock.metrics import Metrics
from fastsock.open_files import raise_open_files_limit
from fastsock.paths import private_dir
from fastsock.realtime.hub import Hub
from fastsock.realtime.socket import HARD_FRAME_BYTES, ChatSocket
from fastsock.services import Services
from fastsock.store import Store, open_store

log = logging.getLogger("fastsock")

ID = r"([^/]+)"
MAX_BODY = 1024 * 1024
DB_START_TIMEOUT_S = 60.0
GC_INTERVAL_S = 3600.0
METRICS_HOST = "127.0.0.1"  # FASTSOCK_METRICS_PORT listens on loopback only
METRICS_MAX_CONNECTIONS = 16
# Metric labels come from this fixed set: any client can send any method token.
KNOWN_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

HANDLERS: list[type[BaseHandler]] = [
    accounts.RegisterHandler,
    accounts.LoginHandler,
    accounts.RefreshHandler,
    accounts.LogoutHandler,
    accounts.MeHandler,
    accounts.UsersHandler,
    accounts.UserHandler,
    client_config.ConfigHandler,
    rooms.RoomsHandler,
    rooms.DirectRoomHandler,
    rooms.PublicRoomsHandler,
    rooms.RoomHandler,
    rooms.JoinRoomHandler,
    rooms.MembersHandler,
    rooms.MemberHandler,
    rooms.ReadHandler,
    rooms.RoomMessagesHandler,
    rooms.HistoryHandler,
    rooms.MessageHandler,
    rooms.ReceiptsHandler,
    rooms.ReactionHandler,
    rooms.SearchHandler,
    moderation.BansHandler,
    moderation.BanHandler,
    moderation.DeactivateHandler,
    moderation.ReactivateHandler,
    uploads.UploadHandler,
    uploads.DownloadHandler,
    uploads.ThumbnailHandler,
    calls.IceServersHandler,
    calls.RoomCallsHandler,
    ops.HealthHandler,
    ops.ReadyHandler,
    ops.MetricsHandler,
    OpenApiHandler,
    # The SFU workers' internal API: mounted only with FASTSOCK_SFU_SECRET (make_app).
    sfu.RegisterHandler,
    sfu.HeartbeatHandler,
    sfu.EventsHandler,
    sfu.DeregisterHandler,
]


def _pattern(route: str) -> str:
    """`/rooms/{id}/members/{user_id}` -> `/rooms/([^/]+)/members/([^/]+)`."""
    parts = [ID if p.startswith("{") else p for p in route.split("/")]
    return "/".join(parts)


def _log_request(handler: RequestHandler) -> None:
    status = handler.get_status()
    route = getattr(handler, "route", "/ws" if isinstance(handler, ChatSocket) else "unknown")
    duration = handler.request.request_time()
    ctx: AppContext = handler.application.settings["ctx"]
    method = handler.request.method if handler.request.method in KNOWN_METHODS else "other"
    ctx.metrics.http_requests.labels(method, route, str(status)).observe(duration)
    level = logging.ERROR if status >= 500 else logging.INFO
    log.log(
        level,
        "http_request",
        extra={
            "fields": {
                "request_id": getattr(handler, "request_id", None),
                "user_id": getattr(handler, "user_id", None),
                "method": handler.request.method,
                "route": route,
                "path": handler.request.path,  # never the query string
                "status": status,
                "duration_ms": round(duration * 1000, 2),
            }
        },
    )


def make_app(ctx: AppContext) -> Application:
    # With a metrics port, /metrics is served there only (make_metrics_app).
    separate = ctx.settings.metrics_port is not None
    handlers = [
        h
        for h in HANDLERS
        if not (separate and h is ops.MetricsHandler)
        and (ctx.settings.sfu_secret or not getattr(h, "internal", False))
    ]
    routes: list[Any] = [(_pattern(h.route), h, {"ctx": ctx}) for h in handlers]
    routes += [
        (r"/ws", ChatSocket, {"ctx": ctx}),
        (r"/", web.AppShellHandler),
        (web.AssetHandler.route, web.AssetHandler, {"path": str(web.WEB_ROOT)}),
    ]
    return Application(
        routes,
        ctx=ctx,
        openapi=openapi.render(HANDLERS),  # every route, whichever are mounted here
        default_handler_class=NotFoundHandler,
        default_handler_args={"ctx": ctx},
        log_function=_log_request,
        websocket_max_message_size=HARD_FRAME_BYTES,
        websocket_ping_interval=25,
        websocket_ping_timeout=20,
    )


def make_metrics_app(ctx: AppContext) -> Application:
    """The FASTSOCK_METRICS_PORT application: /metrics and nothing else."""
    return Application(
        [(ops.MetricsHandler.route, ops.MetricsHandler, {"ctx": ctx})],
        ctx=ctx,
        default_handler_class=NotFoundHandler,
        default_handler_args={"ctx": ctx},
        log_function=_log_request,
    )


class Server:
    """Runs FastSock: the store (embedded SQLite unless a MongoDB URI is set), the HTTP server."""

    def __init__(self, settings: Settings) -> None:
        check_cluster(settings)
        check_metrics_access(settings)
        self.tracing = tracing.load_config()  # the OTEL_* variables; ConfigError if bad
        self._traces = False  # whether this server started tracing (and so ends it)
        self.settings = ensure_jwt_secret(settings)
        self.store: Store | None = None
        self.http: HTTPServer | None = None  # the main port's
        self._endpoints: list[Endpoint] = []  # the main port, then the metrics port if any
        self.ctx: AppContext | None = None
        self.port = self.settings.port
        self.metrics_port = self.settings.metrics_port
        self._gc: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        s = self.settings
        self._traces = tracing.setup(self.tracing, "fastsock")  # before the store: its spans
        private_dir(s.data_dir)
        blobs = make_blob_store(s)
        await blobs.check()  # an unusable upload directory stops start-up here
        metrics = Metrics()
        started = time.monotonic()
        if s.redis_url is not None:
            await check_redis(s.redis_url)  # fail fast, before waiting for the database
        self.store = store = open_store(s, observe=metrics.observe_db)
        await store.prepare(DB_START_TIMEOUT_S)
        # Only now: a second server refused by the embedded database's lock (the same data dir)
        # must not delete the running one's partial uploads.
        _clear_spool(s.spool_path)
        hub = Hub(metrics) if s.redis_url is None else await start_cluster_hub(metrics, s.redis_url)
        services = Services.build(store, hub, blobs, s, metrics)
        if isinstance(hub, ClusterHub):
            join_cluster(hub, services)
            # The call leader, once elected, reconciles the group calls and sweeps the workers.
            await join_calls(hub, services)
        elif s.sfu_secret:
            # Before the first request: group calls whose worker died meanwhile end.
            await services.calls.group.workers.start()
        self.ctx = AppContext(s, store, services, hub, metrics)
        open_files = raise_open_files_limit()
        max_connections = connection_bound(s.max_connections, open_files)
        # No tornado xheaders: it prefers X-Real-Ip, which proxies pass on from the client.
        # Handlers read the client address with handlers.base.client_address.
        main = self._endpoint(
            make_app(self.ctx), s.host, s.port, max_connections, s.peer_connection_cap
        )
        self.http, self.port = main.http, main.port
        if s.metrics_port is not None:
            metrics_only = self._endpoint(
                make_metrics_app(self.ctx), METRICS_HOST, s.metrics_port, METRICS_MAX_CONNECTIONS
            )
            self.metrics_port = metrics_only.port
        self._gc = asyncio.create_task(self._collect_garbage(services))
        if s.sfu_secret and not isinstance(hub, ClusterHub):
            self._sweeper = asyncio.create_task(services.calls.group.workers.keep_up())
        log.info(
            "server_started",
            extra={
                "fields": {
                    "host": s.host,
                    "port": self.port,
                    "metrics_port": self.metrics_port,
                    "max_connections": max_connections,
                    "open_files_limit": open_files,
                    "max_connections_per_ip": s.peer_connection_cap,
                    "database": store.description,
                    "startup_ms": round((time.monotonic() - started) * 1000),
                }
            },
        )

    @property
    def open_connections(self) -> int:
        """HTTP and WebSocket connections open on the main port."""
        return self._endpoints[0].listener.open if self._endpoints else 0

    def _endpoint(
        self,
        app: Application,
        host: str,
        port: int,
        max_connections: int,
        max_connections_per_ip: int | None = None,
    ) -> Endpoint:
        s = self.settings
        endpoint = Endpoint(
            app,
            host,
            port,
            header_timeout_s=s.header_timeout_s,
            body_timeout_s=s.body_timeout_s,
            max_body=MAX_BODY,
            max_connections=max_connections,
            max_connections_per_ip=max_connections_per_ip,
        )
        self._endpoints.append(endpoint)
        return endpoint

    async def _collect_garbage(self, services: Services) -> None:
        while True:
            try:
                removed = await services.uploads.collect_garbage()
                if removed:
                    log.info("uploads_collected", extra={"fields": {"removed": removed}})
            except Exception:
                log.exception("upload_gc_failed")
            await asyncio.sleep(GC_INTERVAL_S)

    async def stop(self) -> None:
        for task in (self._gc, self._sweeper):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._endpoints:
            for endpoint in self._endpoints:
                endpoint.stop_accepting()
            if self.ctx is not None:
                await self.ctx.services.calls.close()
                self.ctx.hub.close_all(1001, "server shutting down")
                await self.ctx.hub.wait_tasks(timeout=5)
            for endpoint in self._endpoints:
                await endpoint.close_all_connections()
        if self.ctx is not None:
            await self.ctx.services.rooms.unread.close()  # still on the bus, with the store
            self.ctx.services.typing.close()
            await self.ctx.services.accounts.hasher.close()
        if self.ctx is not None and isinstance(self.ctx.hub, ClusterHub):
            await self.ctx.hub.stop()
        if self.store is not None:
            await self.store.close()
        if self.ctx is not None:
            self.ctx.services.uploads.blobs.close()  # the upload dir's lock, for a restore
        if self._traces:
            await asyncio.to_thread(tracing.shutdown)  # exports what is buffered
        log.info("server_stopped")


def _clear_spool(spool: Path) -> None:
    """Partial uploads left by a crash are never resumed: remove them."""
    if spool.is_dir():
        for leftover in spool.iterdir():
            leftover.unlink(missing_ok=True)
