"""/healthz, /readyz and /metrics: probes and scrapes, polled every few seconds, so never
traced (a span each, and the database ping's, would drown the requests worth tracing)."""

from __future__ import annotations

import asyncio
import hmac

from fastsock.context import AppContext
from fastsock.errors import Unauthenticated, Unavailable
from fastsock.handlers.base import BaseHandler, bearer_token


async def check_ready(ctx: AppContext) -> tuple[bool, bool]:
    """Whether the database and (cluster mode) Redis answer, recorded in the metrics
    `fastsock_database_up` / `fastsock_redis_up` for the alert rules."""
    database, redis = await asyncio.gather(ctx.store.ping(), ctx.hub.ready())
    ctx.metrics.health(database, redis if ctx.settings.redis_url is not None else None)
    return database, redis


class HealthHandler(BaseHandler):
    route, auth_required, traced = "/healthz", False, False

    def get(self) -> None:
        self.send_json({"status": "ok"})


class ReadyHandler(BaseHandler):
    route, auth_required, traced = "/readyz", False, False

    async def get(self) -> None:
        database, redis = await check_ready(self.ctx)
        if not database:
            raise Unavailable("the database is unreachable")
        if not redis:
            raise Unavailable("Redis is unreachable (cluster mode)")
        self.send_json({"status": "ready", "database": "ok"})


class MetricsHandler(BaseHandler):
    route, auth_required, traced = "/metrics", False, False

    async def get(self) -> None:
        expected = self.ctx.settings.metrics_token
        if expected:
            given = bearer_token(self.request.headers.get("Authorization")) or ""
            if not hmac.compare_digest(given.encode(), expected.encode()):
                raise Unauthenticated("a metrics token is required")
        await check_ready(self.ctx)  # up to the store's 2 s ping while the database is away
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(self.ctx.metrics.render())
