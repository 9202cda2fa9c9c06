"""GET /openapi.json: the REST API's OpenAPI 3.1 document (fastsock/openapi.py)."""

from __future__ import annotations

from fastsock.handlers.base import BaseHandler

# The same for every user and every request until the server is upgraded; the ETag (tornado
# adds one) lets a client revalidate cheaply.
CACHE_CONTROL = "public, max-age=300"


class OpenApiHandler(BaseHandler):
    route, auth_required = "/openapi.json", False

    def get(self) -> None:
        self.set_header("Cache-Control", CACHE_CONTROL)
        self.finish(self.application.settings["openapi"])  # rendered once, by app.make_app
