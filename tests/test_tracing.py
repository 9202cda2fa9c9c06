"""OpenTelemetry tracing (fastsock/tracing.py): off unless OTEL_* asks for it; one trace per
WebSocket request from the socket through the store to the fan-out; HTTP server spans named by
route that continue a proxy's `traceparent`; trace ids in the JSON log lines; bad OTEL_* values
stop start-up; the OTLP exporter's spans reach a collector, flushed as the server stops."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from pymongo.errors import ConnectionFailure
from tornado.httpserver import HTTPServer
from tornado.httputil import HTTPHeaders, HTTPOutputError, HTTPServerRequest, RequestStartLine
from tornado.netutil import bind_sockets
from tornado.web import Application, RequestHandler

from fastsock import logs, tracing
from fastsock.app import Server
from fastsock.blobs.traced import TracedBlobs
from fastsock.handlers import accounts
from fastsock.realtime.hub import Hub
from fastsock.realtime.routes import ROUTES
from tests.conftest import BACKEND, BlobWorld, make_settings
from tests.handlers.test_uploads import fetch, upload_ok
from tests.realtime.fake_workers import FakeWorker, GroupServers, join
from tests.support import PASSWORD, Api

WAIT_S = 10.0
DB_SYSTEM = "sqlite" if BACKEND == "sqlite" else "mongodb"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


@pytest.fixture(autouse=True)
def no_otel_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test says which OTEL_* variables it sets; tracing is off again afterwards."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    yield
    tracing.shutdown()


@pytest.fixture
def spans() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    tracing.install(exporter)
    return exporter


@pytest.fixture
async def traced_server(
    spans: InMemorySpanExporter, db_uri: str | None, tmp_path: Path
) -> AsyncIterator[Server]:
    srv = Server(make_settings(db_uri, tmp_path))
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
def traced_api(traced_server: Server) -> Api:
    return Api(traced_server.port)


@pytest.fixture
async def proxied_api(
    spans: InMemorySpanExporter, db_uri: str | None, tmp_path: Path
) -> AsyncIterator[Api]:
    """A server behind a trusted proxy (FASTSOCK_TRUST_PROXY): it continues `traceparent`."""
    srv = Server(make_settings(db_uri, tmp_path, trust_proxy=True))
    await srv.start()
    yield Api(srv.port)
    await srv.stop()


async def until(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"not within {WAIT_S}s: {what}"
        await asyncio.sleep(0.01)


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def trace_of(exporter: InMemorySpanExporter, root: ReadableSpan) -> list[ReadableSpan]:
    assert root.context is not None
    return [
        s
        for s in exporter.get_finished_spans()
        if s.context is not None and s.context.trace_id == root.context.trace_id
    ]


def children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    assert parent.context is not None
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def all_attribute_values(exporter: InMemorySpanExporter) -> str:
    return json.dumps([dict(s.attributes or {}) for s in exporter.get_finished_spans()])


# --- one trace per WebSocket request ------------------------------------------------------


async def test_one_send_is_one_trace_from_socket_to_store_to_fanout(
    traced_api: Api, spans: InMemorySpanExporter
) -> None:
    api = traced_api
    alice, bob, carol = await api.register(), await api.register(), await api.register()
    room = await api.group(alice, bob, carol)  # carol has no socket: no recipient here
    ws_a, ws_b = await api.ws(alice), await api.ws(bob)
    spans.clear()
    text = "secret text " + uuid.uuid4().hex
    reply = await ws_a.request(
        "message.send", {"room_id": room, "client_msg_id": uuid.uuid4().hex, "text": text}
    )
    assert reply["type"] == "message.ack", reply
    await ws_b.expect("message.new")
    await until(lambda: named(spans, "ws message.send"), "the send span ends")

    [send] = named(spans, "ws message.send")
    assert send.parent is None and send.kind is SpanKind.SERVER
    assert send.attributes is not None and send.attributes["user.id"] == alice.id
    trace = trace_of(spans, send)
    under_send = children(trace, send)
    db = [s for s in under_send if s.attributes and "db.system.name" in s.attributes]
    assert db, [s.name for s in trace]
    for span in db:
        assert span.kind is SpanKind.CLIENT
        assert span.attributes is not None
        assert span.attributes["db.system.name"] == DB_SYSTEM
        assert span.attributes["db.operation.name"] == span.name
    [fanout] = [s for s in under_send if s.name == "fanout message.new"]
    assert fanout.attributes is not None
    assert fanout.attributes["fastsock.fanout.users"] == 2  # of 3 members, 2 connected here
    assert fanout.attributes["messaging.batch.message_count"] == 2  # alice's and bob's sockets
    # Nothing of the send outside its trace, and never the text or a token in an attribute.
    assert all(s.parent is not None for s in trace if s is not send)
    values = all_attribute_values(spans)
    assert text not in values and alice.access_token not in values
    ws_a.close()
    ws_b.close()


async def test_concurrent_sends_make_separate_traces(
    traced_api: Api, spans: InMemorySpanExporter
) -> None:
    api = traced_api
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    ws_a, ws_b = await api.ws(alice), await api.ws(bob)
    spans.clear()

    async def send(ws: Any) -> None:
        data = {"room_id": room, "client_msg_id": uuid.uuid4().hex, "text": "hi"}
        assert (await ws.request("message.send", data))["type"] == "message.ack"

    await asyncio.gather(send(ws_a), send(ws_b))
    await until(lambda: len(named(spans, "ws message.send")) == 2, "both send spans end")

    sends = named(spans, "ws message.send")
    traces = {s.context.trace_id for s in sends if s.context is not None}
    assert len(traces) == 2
    for send_span in sends:
        trace = trace_of(spans, send_span)
        assert [s.name for s in trace].count("fanout message.new") == 1
        assert [s.name for s in trace].count("ws message.send") == 1
    ws_a.close()
    ws_b.close()


async def test_authentication_is_a_span_without_the_token(
    traced_api: Api, spans: InMemorySpanExporter
) -> None:
    alice = await traced_api.register()
    spans.clear()
    ws = await traced_api.ws(alice)
    await until(lambda: named(spans, "ws auth"), "the auth span ends")
    [auth] = named(spans, "ws auth")
    assert auth.parent is None
    assert auth.attributes is not None
    assert auth.attributes["fastsock.ws.authenticated"] is True
    assert auth.attributes["user.id"] == alice.id
    assert alice.access_token not in all_attribute_values(spans)
    ws.close()


# --- HTTP ---------------------------------------------------------------------------------


@pytest.mark.once
async def test_a_request_is_a_server_span_named_by_its_route(
    traced_api: Api, spans: InMemorySpanExporter
) -> None:
    alice = await traced_api.register()
    room = await traced_api.group(alice)
    spans.clear()
    r = await traced_api.get(f"/rooms/{room}", alice)
    assert r.status == 200
    await until(lambda: named(spans, "GET /rooms/{id}"), "the request span")
    [span] = named(spans, "GET /rooms/{id}")
    assert span.kind is SpanKind.SERVER and span.parent is None
    assert span.attributes is not None
    assert span.attributes["http.route"] == "/rooms/{id}"
    assert span.attributes["http.request.method"] == "GET"
    assert span.attributes["http.response.status_code"] == 200
    assert room not in span.name
    assert children(trace_of(spans, span), span)  # its database calls

    r = await traced_api.get("/no/such/path")
    assert r.status == 404
    await until(lambda: named(spans, "GET"), "the 404's span")
    [missing] = named(spans, "GET")
    assert missing.attributes is not None and "http.route" not in missing.attributes
    assert missing.attributes["error.type"] == "404"
    assert missing.status.status_code is StatusCode.UNSET  # a client's error, not the server's


@pytest.mark.once
async def test_an_incoming_traceparent_is_continued_behind_a_trusted_proxy(
    proxied_api: Api, spans: InMemorySpanExporter
) -> None:
    alice = await proxied_api.register()
    spans.clear()
    traceparent = f"00-{TRACE_ID}-{PARENT_ID}-01"
    r = await proxied_api.get("/users/me", alice, headers={"traceparent": traceparent})
    assert r.status == 200
    await until(lambda: named(spans, "GET /users/me"), "the request span")
    [span] = named(spans, "GET /users/me")
    assert span.context is not None and span.parent is not None
    assert f"{span.context.trace_id:032x}" == TRACE_ID
    assert f"{span.parent.span_id:016x}" == PARENT_ID


@pytest.mark.once
async def test_a_clients_own_traceparent_is_ignored(
    traced_api: Api, spans: InMemorySpanExporter
) -> None:
    """Without FASTSOCK_TRUST_PROXY the header is the client's: it would pick the trace id
    (and with its sampled flag, bypass the sampling ratio)."""
    alice = await traced_api.register()
    spans.clear()
    traceparent = f"00-{TRACE_ID}-{PARENT_ID}-01"
    r = await traced_api.get("/users/me", alice, headers={"traceparent": traceparent})
    assert r.status == 200
    await until(lambda: named(spans, "GET /users/me"), "the request span")
    [span] = named(spans, "GET /users/me")
    assert span.context is not None and span.parent is None
    assert f"{span.context.trace_id:032x}" != TRACE_ID


@pytest.mark.once
async def test_the_span_ends_when_the_response_cannot_be_sent(
    spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tornado's finish raises when the response cannot go out (fewer bytes than its
    Content-Length, say); the request's span ends all the same."""

    def cut_off(self: RequestHandler, chunk: object = None) -> None:
        raise HTTPOutputError("Tried to write 98 bytes less than Content-Length")

    line = RequestStartLine("GET", "/users/me", "HTTP/1.1")
    host = HTTPHeaders({"Host": "127.0.0.1"})
    request = HTTPServerRequest(start_line=line, headers=host, connection=mock.Mock())
    handler = accounts.MeHandler(Application(), request, ctx=mock.Mock())
    handler._span = tracing.start_http("GET", handler.route, None, 0.0)
    monkeypatch.setattr(RequestHandler, "finish", cut_off)
    with pytest.raises(HTTPOutputError):
        handler.finish()
    assert named(spans, "GET /users/me")


@pytest.mark.once
async def test_a_5xx_response_fails_its_span(
    traced_api: Api, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: accounts.MeHandler) -> None:
        raise RuntimeError("a bug")

    alice = await traced_api.register()
    monkeypatch.setattr(accounts.MeHandler, "get", broken)
    spans.clear()
    assert (await traced_api.get("/users/me", alice)).status == 500
    await until(lambda: named(spans, "GET /users/me"), "the request span")
    [span] = named(spans, "GET /users/me")
    assert span.attributes is not None and span.attributes["error.type"] == "500"
    assert span.status.status_code is StatusCode.ERROR


@pytest.mark.once
async def test_probes_and_scrapes_make_no_spans(
    traced_api: Api, spans: InMemorySpanExporter
) -> None:
    alice = await traced_api.register()
    spans.clear()
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await traced_api.get(path)).status == 200, path
    assert (await traced_api.get("/users/me", alice)).status == 200
    await until(lambda: named(spans, "GET /users/me"), "the request span")
    [me] = named(spans, "GET /users/me")
    # Neither the probes' server spans nor their database pings (spans of their own).
    assert spans.get_finished_spans() == tuple(trace_of(spans, me))


# --- failures and refusals ----------------------------------------------------------------


@pytest.mark.once
async def test_a_refused_event_has_its_error_type_and_no_error_status(
    traced_api: Api, spans: InMemorySpanExporter
) -> None:
    alice, bob = await traced_api.register(), await traced_api.register()
    room = await traced_api.group(bob)  # alice is no member
    ws = await traced_api.ws(alice)
    spans.clear()
    data = {"room_id": room, "client_msg_id": uuid.uuid4().hex, "text": "hi"}
    reply = await ws.request("message.send", data)
    assert reply["type"] == "error", reply
    await until(lambda: named(spans, "ws message.send"), "the send span")
    [span] = named(spans, "ws message.send")
    assert span.attributes is not None
    assert span.attributes["error.type"] == reply["data"]["code"]
    assert span.status.status_code is StatusCode.UNSET  # the client's error
    ws.close()


@pytest.mark.once
@pytest.mark.parametrize(
    ("raised", "code"),
    [(RuntimeError("a bug"), "internal_error"), (ConnectionFailure("gone"), "unavailable")],
)
async def test_a_failed_event_fails_its_span(
    traced_api: Api,
    spans: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
    raised: Exception,
    code: str,
) -> None:
    async def fail(*_args: object) -> None:
        raise raised

    alice = await traced_api.register()
    ws = await traced_api.ws(alice)
    monkeypatch.setitem(ROUTES, "message.send", fail)
    spans.clear()
    reply = await ws.request("message.send", {})
    assert (reply["type"], reply["data"]["code"]) == ("error", code)
    await until(lambda: named(spans, "ws message.send"), "the send span")
    [span] = named(spans, "ws message.send")
    assert span.attributes is not None and span.attributes["error.type"] == code
    assert span.status.status_code is StatusCode.ERROR
    ws.close()


@pytest.mark.once
@pytest.mark.parametrize(
    ("open_span", "name"),
    [
        (lambda: tracing.span("work", {}), "work"),
        (lambda: tracing.ws_span("work", None), "ws work"),
    ],
)
def test_an_exception_leaving_a_span_records_its_type_only(
    spans: InMemorySpanExporter,
    open_span: Callable[[], contextlib.AbstractContextManager[object]],
    name: str,
) -> None:
    """The message and stack may quote user data: they go to the log, not to the collector."""
    with pytest.raises(ValueError), open_span():
        raise ValueError("secret text")
    [span] = named(spans, name)
    assert span.events == ()  # no `exception` event
    assert span.status.status_code is StatusCode.ERROR and not span.status.description
    assert span.attributes is not None and span.attributes["error.type"] == "ValueError"


@pytest.mark.once
async def test_an_event_for_no_socket_here_makes_no_span_outside_a_request(
    traced_server: Server, spans: InMemorySpanExporter
) -> None:
    """In cluster mode every node hears every event: one that reaches none of a node's
    sockets is no fan-out there (unless a traced request of its own published it)."""
    assert traced_server.ctx is not None and isinstance(traced_server.ctx.hub, Hub)
    hub = traced_server.ctx.hub
    spans.clear()
    hub.deliver(["nobody"], b"{}", "room.updated", None)
    with tracing.span("request", {}):
        hub.deliver(["nobody"], b"{}", "room.updated", None)
    [fanout] = named(spans, "fanout room.updated")
    [request] = named(spans, "request")
    assert fanout.parent is not None and request.context is not None
    assert fanout.parent.span_id == request.context.span_id
    assert fanout.attributes is not None and fanout.attributes["fastsock.fanout.users"] == 0


# --- blobs and SFU admission -----------------------------------------------------------


@pytest.mark.once
async def test_blob_puts_and_reads_are_spans_under_their_request(
    spans: InMemorySpanExporter, blob_world: BlobWorld
) -> None:
    api = blob_world.api
    alice = await api.register()
    spans.clear()
    upload = await upload_ok(api, alice, "text")
    assert (await fetch(api, f"/uploads/{upload['id']}", alice)).code == 200
    await until(lambda: named(spans, "GET /uploads/{id}"), "the download's span")
    for request, operation in (("POST /uploads", "put"), ("GET /uploads/{id}", "get")):
        [http] = named(spans, request)
        under = children(trace_of(spans, http), http)
        [blob] = [s for s in under if s.name == f"blob {operation}"]
        assert blob.attributes is not None
        assert blob.attributes["fastsock.blob.store"] == blob_world.backend
        assert blob.attributes["fastsock.blob.operation"] == operation


class EndlessBlob:
    """A blob store whose reader never ends, and says when it is closed."""

    name = "endless"

    def __init__(self) -> None:
        self.closed = False

    async def check(self) -> None:
        pass

    async def put(self, key: str, path: Path, content_type: str) -> None:
        pass

    async def read(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"x"
        finally:
            self.closed = True

    async def delete(self, key: str) -> None:
        pass


@pytest.mark.once
async def test_a_download_stopped_early_closes_the_backends_reader_at_once(
    spans: InMemorySpanExporter,
) -> None:
    inner = EndlessBlob()
    async with contextlib.aclosing(TracedBlobs(inner).read("k", 0, 9)) as chunks:
        async for _ in chunks:
            break  # the client went away (handlers/uploads.py closes the reader at once)
    assert inner.closed
    assert named(spans, "blob get")  # ended with the reader


@pytest.mark.once
async def test_an_sfu_admission_is_a_span_under_the_join(
    spans: InMemorySpanExporter, db_uri: str | None, tmp_path: Path
) -> None:
    servers = GroupServers(db_uri, tmp_path)
    try:
        srv = await servers.start()
        api = Api(srv.port)
        worker = await FakeWorker(api).start()
        alice = await api.register()
        room = await api.group(alice)
        ws = await api.ws(alice)
        spans.clear()
        reply = await join(ws, room)
        assert reply["type"] == "call.sfu", reply
        await until(lambda: named(spans, "ws call.join"), "the join's span")
        [request] = named(spans, "ws call.join")
        [admission] = [
            s for s in children(trace_of(spans, request), request) if s.name == "sfu admission"
        ]
        assert admission.attributes is not None
        assert admission.attributes["fastsock.sfu.worker.id"] == worker.id
        assert admission.attributes["fastsock.call.id"] == reply["data"]["call_id"]
        assert reply["data"]["token"] not in all_attribute_values(spans)
        ws.close()
        await worker.die()
    finally:
        await servers.stop_all()


# --- logs ---------------------------------------------------------------------------------


@pytest.fixture
def log_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("fastsock")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)
    logger.setLevel(level)


def request_lines(lines: list[dict[str, Any]], route: str) -> list[dict[str, Any]]:
    return [e for e in lines if e["event"] == "http_request" and e.get("route") == route]


@pytest.mark.once
async def test_a_log_line_inside_a_span_carries_its_trace_id(
    proxied_api: Api,
    spans: InMemorySpanExporter,
    log_lines: Callable[[], list[dict[str, Any]]],
) -> None:
    alice = await proxied_api.register()
    headers = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}
    assert (await proxied_api.get("/users/me", alice, headers=headers)).status == 200
    await until(lambda: named(spans, "GET /users/me"), "the request span")
    [span] = named(spans, "GET /users/me")
    assert span.context is not None
    [line] = request_lines(log_lines(), "/users/me")
    assert line["trace_id"] == TRACE_ID
    assert line["span_id"] == f"{span.context.span_id:016x}"
    logging.getLogger("fastsock").info("outside_any_span")
    [outside] = [e for e in log_lines() if e["event"] == "outside_any_span"]
    assert "trace_id" not in outside and "span_id" not in outside


# --- off by default -----------------------------------------------------------------------


@pytest.mark.once
async def test_off_without_otel_settings(
    db_uri: str | None, tmp_path: Path, log_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    srv = Server(make_settings(db_uri, tmp_path))
    await srv.start()
    try:
        assert not tracing.ON
        api = Api(srv.port)
        alice = await api.register()
        headers = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}  # a proxy's: still off
        assert (await api.get("/users/me", alice, headers=headers)).status == 200
        [line] = request_lines(log_lines(), "/users/me")
        assert "trace_id" not in line
    finally:
        await srv.stop()


# --- the OTLP exporter --------------------------------------------------------------------


class Collector:
    """An OTLP/HTTP trace receiver on loopback: keeps every span it is sent, with its
    resource's service.name."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, Any]] = []  # (service.name, span)
        sockets = bind_sockets(0, "127.0.0.1")
        self.endpoint = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
        self._http = HTTPServer(Application([("/v1/traces", _Traces, {"collector": self})]))
        self._http.add_sockets(sockets)

    def names(self, service: str) -> list[str]:
        return [span.name for name, span in self.spans if name == service]

    def stop(self) -> None:
        self._http.stop()


class _Traces(RequestHandler):
    def initialize(self, collector: Collector) -> None:
        self.collector = collector

    def post(self) -> None:
        request = ExportTraceServiceRequest.FromString(self.request.body)
        for resource_spans in request.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    self.collector.spans.append((attributes.get("service.name", ""), span))
        self.set_header("Content-Type", "application/x-protobuf")
        self.finish(b"")


@pytest.mark.once
async def test_otlp_export_reaches_a_collector_and_is_flushed_on_stop(
    monkeypatch: pytest.MonkeyPatch, db_uri: str | None, tmp_path: Path
) -> None:
    collector = Collector()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")  # only the stop's flush sends them
    srv = Server(make_settings(db_uri, tmp_path))
    await srv.start()
    try:
        assert tracing.ON
        api = Api(srv.port)
        r = await api.post(
            "/auth/register", {"username": "u" + uuid.uuid4().hex[:8], "password": PASSWORD}
        )
        assert r.status == 201
        assert collector.spans == []
    finally:
        await srv.stop()
        collector.stop()
    assert not tracing.ON
    assert "POST /auth/register" in collector.names("fastsock")
