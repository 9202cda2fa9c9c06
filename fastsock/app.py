"""The tornado Application (the one routes table) and the Server that runs it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application, RequestHandler

from fastsock.blobs import make_blob_store
from fastsock.config import Settings, ensure_jwt_secret
from fastsock.context import AppContext
from fastsock.handlers import accounts, calls, ops, rooms, uploads, web
from fastsock.handlers.base import BaseHandler, NotFoundHandler
from fastsock.metrics import Metrics
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
    uploads.UploadHandler,
    uploads.DownloadHandler,
    uploads.ThumbnailHandler,
    calls.IceServersHandler,
    calls.RoomCallsHandler,
    ops.HealthHandler,
    ops.ReadyHandler,
    ops.MetricsHandler,
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
    routes: list[Any] = [(_pattern(h.route), h, {"ctx": ctx}) for h in HANDLERS]
    routes += [
        (r"/ws", ChatSocket, {"ctx": ctx}),
        (r"/", web.AppShellHandler),
        (web.AssetHandler.route, web.AssetHandler, {"path": str(web.WEB_ROOT)}),
    ]
    return Application(
        routes,
        ctx=ctx,
        default_handler_class=NotFoundHandler,
        default_handler_args={"ctx": ctx},
        log_function=_log_request,
        websocket_max_message_size=HARD_FRAME_BYTES,
        websocket_ping_interval=25,
        websocket_ping_timeout=20,
    )


class Server:
    """Runs FastSock: the store (embedded SQLite unless a MongoDB URI is set), the HTTP server."""

    def __init__(self, settings: Settings) -> None:
        self.settings = ensure_jwt_secret(settings)
        self.store: Store | None = None
        self.http: HTTPServer | None = None
        self.ctx: AppContext | None = None
        self.port = self.settings.port
        self._gc: asyncio.Task[None] | None = None

    async def start(self) -> None:
        s = self.settings
        private_dir(s.data_dir)
        blobs = make_blob_store(s)
        await blobs.check()  # an unusable upload directory stops start-up here
        metrics = Metrics()
        started = time.monotonic()
        self.store = store = open_store(s, observe=metrics.observe_db)
        await store.prepare(DB_START_TIMEOUT_S)
        # Only now: a second server refused by the embedded database's lock must not delete
        # the running one's partial uploads.
        _clear_spool(s.uploads_path / ".spool")
        hub = Hub(metrics)
        services = Services.build(store, hub, blobs, s, metrics)
        self.ctx = AppContext(s, store, services, hub, metrics)
        # Behind a trusted proxy, take the client address from X-Forwarded-For / X-Real-Ip
        # (login throttling and logs need the real client, not the proxy).
        self.http = HTTPServer(make_app(self.ctx), max_body_size=MAX_BODY, xheaders=s.trust_proxy)
        sockets = bind_sockets(s.port, s.host)
        self.port = sockets[0].getsockname()[1]
        self.http.add_sockets(sockets)
        self._gc = asyncio.create_task(self._collect_garbage(services))
        log.info(
            "server_started",
            extra={
                "fields": {
                    "host": s.host,
                    "port": self.port,
                    "database": store.description,
                    "startup_ms": round((time.monotonic() - started) * 1000),
                }
            },
        )

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
        if self._gc is not None:
            self._gc.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._gc
        if self.http is not None:
            self.http.stop()
            if self.ctx is not None:
                await self.ctx.services.calls.close()
                self.ctx.hub.close_all(1001, "server shutting down")
                await self.ctx.hub.wait_tasks(timeout=5)
            await self.http.close_all_connections()
        if self.ctx is not None:
            self.ctx.services.typing.close()
        if self.store is not None:
            await self.store.close()
        log.info("server_stopped")


def _clear_spool(spool: Path) -> None:
    """Partial uploads left by a crash are never resumed: remove them."""
    if spool.is_dir():
        for leftover in spool.iterdir():
            leftover.unlink(missing_ok=True)
