"""The base of every JSON handler: request ids, bearer auth, JSON in and out, error rendering."""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import re
import secrets
from asyncio import Future
from types import TracebackType
from typing import Any

from opentelemetry.trace import Span
from tornado.httputil import HTTPServerRequest
from tornado.web import HTTPError, RequestHandler

from fastsock import logs, tracing
from fastsock.context import AppContext
from fastsock.errors import ApiError, InvalidRequest, RateLimited, TooLarge, Unauthenticated
from fastsock.services import Services, fields
from fastsock.services.accounts import Login
from fastsock.services.schemas import SCHEMAS
from fastsock.store import is_unavailable

log = logging.getLogger("fastsock.http")

# JSON bodies are small (a message is at most 4,000 characters); bigger ones get 413 here.
# The HTTP server's own cap (app.MAX_BODY) cuts off anything far larger before it is read.
MAX_JSON_BODY = 64 * 1024
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
HTTP_METHODS = ("GET", "PUT", "POST", "PATCH", "DELETE")
HTTP_CODES = {
    400: "invalid_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_type",
    426: "upgrade_required",
    503: "unavailable",
}


def error_code(status: int) -> str:
    """The error code of a status tornado set without an ApiError (a 405, a bad upgrade)."""
    return HTTP_CODES.get(status) or ("internal_error" if status >= 500 else "invalid_request")


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def client_address(request: HTTPServerRequest, trust_proxy: bool) -> str:
    """The client's address (per-address limits). Behind a trusted proxy: the last
    X-Forwarded-For entry, the one the proxy appended; the entries before it, and X-Real-Ip,
    are whatever the client sent. If that entry is no address, the peer's (the proxy's):
    such requests share the proxy's limits rather than escape them."""
    peer = request.remote_ip or ""
    if not trust_proxy:
        return peer
    last = request.headers.get("X-Forwarded-For", "").rpartition(",")[2].strip()
    try:
        return str(ipaddress.ip_address(last))
    except ValueError:
        return peer


class BaseHandler(RequestHandler):
    route = "unknown"
    auth_required = True
    traced = True  # a server span per request when tracing is on (not for probes)
    max_json_body = MAX_JSON_BODY
    query_schema: str | None = None  # the schema table entry of its query arguments, if any

    def initialize(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.user_id: str | None = None
        self.login: Login | None = None  # the login the access token stands for
        self._span: Span | None = None  # the request's server span, when tracing is on

    @property
    def services(self) -> Services:
        return self.ctx.services

    async def prepare(self) -> None:
        incoming = self.request.headers.get("X-Request-Id", "")
        rid = incoming if REQUEST_ID_RE.fullmatch(incoming) else secrets.token_hex(8)
        self.request_id = rid
        logs.request_id.set(rid)
        logs.user_id.set(None)
        self.set_header("X-Request-Id", rid)
        if tracing.ON and self.traced:
            route = self.route if self.route.startswith("/") else None  # None: no such route
            request = self.request
            # A `traceparent` is continued only from a trusted proxy: a client's own would
            # pick the trace id and its sampled flag would bypass the sampling ratio.
            headers = request.headers if self.ctx.settings.trust_proxy else None
            self._span = tracing.start_http(
                request.method or "", route, headers, request.request_time()
            )
        # Ids in paths in their one form (ids are compared as strings in the store).
        self.path_args = [fields.canonical_id(a) or a for a in self.path_args]
        if self.auth_required:
            token = bearer_token(self.request.headers.get("Authorization"))
            if token is None:
                raise Unauthenticated("an access token is required")
            self.login = await self.services.accounts.authenticate(token)
            self.user_id = self.login.user_id
            logs.user_id.set(self.user_id)

    def finish(self, chunk: str | bytes | dict[str, Any] | None = None) -> Future[None]:
        # Here rather than in on_finish, which handlers override.
        try:
            return super().finish(chunk)  # logs the request: inside the span, with its trace id
        finally:  # also when the response could not be sent
            if self._span is not None:
                tracing.end_http(self._span, self.get_status())
                self._span = None

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")

    @property
    def client_ip(self) -> str:
        return client_address(self.request, self.ctx.settings.trust_proxy)

    @property
    def me(self) -> str:
        assert self.user_id is not None
        return self.user_id

    def json_body(self) -> dict[str, Any]:
        if not self.request.body:
            return {}
        if len(self.request.body) > self.max_json_body:
            raise TooLarge(f"JSON bodies are limited to {self.max_json_body} bytes")
        body = fields.parse_json(self.request.body, "the body")
        if not isinstance(body, dict):
            raise InvalidRequest("the body must be a JSON object")
        fields.check_document(body, "the body")
        return body

    def decode_argument(self, value: bytes, name: str | None = None) -> str:
        """Path segments and query arguments: UTF-8 text, or 400 naming the argument (UTF-8
        cannot encode a lone surrogate, so none gets in this way either)."""
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            what = name if name is not None else "the path"
            raise InvalidRequest(f"{what} must be UTF-8 text", field=name) from None

    def query(self, *names: str) -> dict[str, str]:
        """The named query arguments (by default the fields of `query_schema`) that are
        present (others are ignored), the last of each as sent: tornado's getters would turn
        control characters into spaces and strip them, passing them by the checks that refuse
        them."""
        if not names and self.query_schema is not None:
            names = tuple(SCHEMAS[self.query_schema])
        args = self.request.query_arguments
        return {n: self.decode_argument(args[n][-1], n) for n in names if args.get(n)}

    @classmethod
    def methods(cls) -> list[str]:
        """The HTTP methods this handler implements (tornado answers the others with 405)."""
        unimplemented = RequestHandler.get  # tornado's stand-in for every method
        return [m for m in HTTP_METHODS if getattr(cls, m.lower()) is not unimplemented]

    def send_json(self, body: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(body, separators=(",", ":"), ensure_ascii=False))

    def no_content(self) -> None:
        self.set_status(204)
        self.clear_header("Content-Type")
        self.finish()

    def log_exception(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if value is None or isinstance(value, ApiError | HTTPError) or is_unavailable(value):
            return  # nothing raised, or expected outcomes, rendered as JSON errors
        log.error("unhandled_error", exc_info=(type(value), value, tb))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ApiError):
            status, body = exc.status, exc.to_dict()
        elif exc is not None and is_unavailable(exc):
            status, body = 503, {"code": "unavailable", "message": "the database is unavailable"}
        else:
            status = status_code
            body = {"code": error_code(status), "message": self._reason}
        self.set_status(status)
        if status == 405:
            self.set_header("Allow", ", ".join(self.methods()))  # RFC 9110 15.5.6
        if status == 503:
            self.set_header("Retry-After", "1")
        if isinstance(exc, RateLimited):
            self.set_header("Retry-After", str(math.ceil(exc.retry_after)))
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps({"error": body}))


class NotFoundHandler(BaseHandler):
    auth_required = False
    route = "not_found"

    async def prepare(self) -> None:
        await super().prepare()
        raise HTTPError(404, reason="no such endpoint")
