"""/healthz, /readyz and /metrics."""

from __future__ import annotations

import hmac

from fastsock.errors import Unauthenticated, Unavailable
from fastsock.handlers.base import BaseHandler, bearer_token


class HealthHandler(BaseHandler):
    route, auth_required = "/healthz", False

    def get(self) -> None:
        self.send_json({"status": "ok"})


class ReadyHandler(BaseHandler):
    route, auth_required = "/readyz", False

    async def get(self) -> None:
        if not await self.ctx.store.ping():
            raise Unavailable("the database is unreachable")
        if not await self.ctx.hub.ready():
            raise Unavailable("Redis is unreachable (cluster mode)")
        self.send_json({"status": "ready", "database": "ok"})


class MetricsHandler(BaseHandler):
    route, auth_required = "/metrics", False

    def get(self) -> None:
        expected = self.ctx.settings.metrics_token
        if expected:
            given = bearer_token(self.request.headers.get("Authorization")) or ""
            if not hmac.compare_digest(given.encode(), expected.encode()):
                raise Unauthenticated("a metrics token is required")
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(self.ctx.metrics.render())
