"""OpenTelemetry tracing: off unless the standard OTEL_* variables ask for it.

On with `OTEL_TRACES_EXPORTER=otlp` (or `console`), or with an OTLP endpoint set
(`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) and no exporter named;
`OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` keep it off whatever else is set. The
SDK reads the rest itself (service name, resource attributes, sampler, batch sizes, the OTLP
headers, compression, timeout and TLS files, the propagators); `load_config` checks the values
the SDK would only warn about and ignore (or raise on deep inside), so that a typo stops start-up
with one line naming the variable.

Off, every hook is one check of the module flag `ON` (hot paths test it before building
anything) and no span object is made. Spans go to this module's own provider, not the global
one, so that a test can install an in-memory exporter (`install`) and servers in one process
share it. FastSock and the SFU worker (sfu/__main__.py) both use it."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from importlib.metadata import entry_points
from urllib.parse import urlsplit

from opentelemetry import context, trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from fastsock.config_values import ConfigError, choice, flag, positive

ON = False  # read by the hooks on hot paths: one attribute check when tracing is off
_tracer: trace.Tracer = trace.NoOpTracer()
_provider: TracerProvider | None = None
_ROOT = context.Context()  # no parent: a WebSocket event starts its own trace
Extract = Callable[[Mapping[str, str]], context.Context]
_extract: Extract | None = None  # opentelemetry.propagate.extract, once tracing is on
_OFF: AbstractContextManager[None] = contextlib.nullcontext()

EXPORTERS = ("otlp", "console", "none")
PROTOCOLS = ("http/protobuf",)  # the one OTLP transport installed
SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
COMPRESSIONS = ("gzip", "deflate", "none")
PROPAGATOR_GROUP = "opentelemetry_propagator"  # the entry points OTEL_PROPAGATORS names
BATCH_SETTINGS = (
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_EXPORT_TIMEOUT",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
)
# Semantic conventions: methods outside this set are reported as _OTHER.
HTTP_METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}


@dataclass(frozen=True)
class TracingConfig:
    exporter: str | None  # "otlp" or "console"; None: tracing off


def load_config(environ: Mapping[str, str] | None = None) -> TracingConfig:
    """Which exporter the OTEL_* variables ask for; ConfigError for a value the SDK would
    ignore with a warning. Off (and nothing else checked) when the SDK is disabled."""
    env = os.environ if environ is None else environ

    def get(name: str) -> str | None:
        value = env.get(name, "").strip()
        return value or None

    if (v := get("OTEL_SDK_DISABLED")) is not None and flag("OTEL_SDK_DISABLED", v):
        return TracingConfig(None)
    exporter = get("OTEL_TRACES_EXPORTER")
    if exporter is not None:
        exporter = choice("OTEL_TRACES_EXPORTER", exporter.lower(), EXPORTERS)
    endpoints = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
    for name in endpoints:
        if (v := get(name)) is not None:
            _endpoint(name, v)
    if exporter is None and any(get(n) for n in endpoints):
        exporter = "otlp"
    if exporter in (None, "none"):
        return TracingConfig(None)
    for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        if (v := get(name)) is not None:
            choice(name, v, PROTOCOLS)
    sampler = get("OTEL_TRACES_SAMPLER")
    if sampler is not None:
        sampler = choice("OTEL_TRACES_SAMPLER", sampler.lower(), SAMPLERS)
    if sampler in ("traceidratio", "parentbased_traceidratio"):
        _ratio("OTEL_TRACES_SAMPLER_ARG", get("OTEL_TRACES_SAMPLER_ARG"))
    for name in BATCH_SETTINGS:
        if (v := get(name)) is not None:
            positive(name, v, int)
    if (v := get("OTEL_PROPAGATORS")) is not None:
        _propagators("OTEL_PROPAGATORS", v)
    if exporter == "otlp":
        for prefix in ("OTEL_EXPORTER_OTLP_TRACES_", "OTEL_EXPORTER_OTLP_"):
            _otlp_options(prefix, get)
    return TracingConfig(exporter)


def _propagators(name: str, raw: str) -> None:
    """A comma list of propagators, as opentelemetry.propagate reads it (it raises on an
    unknown one when first imported; `none` ends the list)."""
    for entry in raw.split(","):
        entry = entry.strip()
        if entry.lower() == "none":
            return
        if not entry or not entry_points(group=PROPAGATOR_GROUP, name=entry):
            known = sorted({e.name for e in entry_points(group=PROPAGATOR_GROUP)} | {"none"})
            raise ConfigError(f"{name} must list propagators of {', '.join(known)}, got {raw!r}")


def _otlp_options(prefix: str, get: Callable[[str], str | None]) -> None:
    """The OTLP exporter's compression, timeout (seconds) and TLS files, in their traces-only
    form (`prefix` OTEL_EXPORTER_OTLP_TRACES_) or for every signal (OTEL_EXPORTER_OTLP_)."""
    if (v := get(prefix + "COMPRESSION")) is not None:
        choice(prefix + "COMPRESSION", v.lower(), COMPRESSIONS)
    if (v := get(prefix + "TIMEOUT")) is not None:
        positive(prefix + "TIMEOUT", v, float)
    for suffix in ("CERTIFICATE", "CLIENT_CERTIFICATE", "CLIENT_KEY"):
        if (v := get(prefix + suffix)) is not None:
            try:
                with open(v, "rb"):
                    pass
            except OSError as exc:
                raise ConfigError(f"{prefix + suffix} {v}: {exc.strerror}") from None


def _endpoint(name: str, raw: str) -> None:
    url = urlsplit(raw)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ConfigError(f"{name} must be an http:// or https:// URL, got {raw!r}")


def _ratio(name: str, raw: str | None) -> None:
    if raw is None:
        return  # the SDK's default: 1.0
    try:
        ratio = float(raw)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        raise ConfigError(f"{name} must be a number from 0 to 1, got {raw!r}")


# --- life cycle -------------------------------------------------------------------------------


def setup(config: TracingConfig, service_name: str) -> bool:
    """Start tracing as configured; True if this call did (its caller then calls shutdown).
    A no-op when tracing is off or already on (another server in this process, a test)."""
    if ON or config.exporter is None:
        return False
    exporter: SpanExporter
    if config.exporter == "console":
        exporter = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()  # endpoint, headers, timeout, TLS: from OTEL_EXPORTER_*
    _start(BatchSpanProcessor(exporter), service_name)
    return True


def install(exporter: SpanExporter, service_name: str = "fastsock") -> None:
    """Turn tracing on with `exporter`, each span handed over as it ends (tests: an
    InMemorySpanExporter). Servers started afterwards trace into it; `shutdown` ends it."""
    shutdown()
    _start(SimpleSpanProcessor(exporter), service_name)


def _start(processor: SimpleSpanProcessor | BatchSpanProcessor, service_name: str) -> None:
    global ON, _tracer, _provider, _extract
    # Imported only now: on import it reads OTEL_PROPAGATORS, checked by load_config first.
    from opentelemetry import propagate

    _extract = propagate.extract
    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service_name}))
    _provider = TracerProvider(resource=resource)  # the sampler: OTEL_TRACES_SAMPLER
    _provider.add_span_processor(processor)
    _tracer = _provider.get_tracer("fastsock")
    ON = True


def shutdown() -> None:
    """Export what is buffered and turn tracing off."""
    global ON, _tracer, _provider
    ON = False
    _tracer = trace.NoOpTracer()
    if _provider is not None:
        provider, _provider = _provider, None
        provider.shutdown()


# --- spans ------------------------------------------------------------------------------------


def _ended(
    name: str, seconds: float, kind: SpanKind, attributes: Mapping[str, AttributeValue]
) -> None:
    """A span for work that just finished, `seconds` long, under the current span."""
    end = time.time_ns()
    begun = end - int(seconds * 1e9)
    _tracer.start_span(name, kind=kind, attributes=attributes, start_time=begun).end(end)


@contextlib.contextmanager
def _current(
    name: str,
    kind: SpanKind,
    attributes: Mapping[str, AttributeValue],
    parent: context.Context | None = None,
) -> Iterator[Span]:
    """A span made current while the block runs. An exception leaving the block fails it with
    the exception's type only: its message and stack (which may quote user data) go to the
    log, not into span events or the status description."""
    with _tracer.start_as_current_span(
        name,
        context=parent,
        kind=kind,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except Exception as exc:
            failed(current, type(exc).__qualname__)
            raise


def ws_span(event_type: str, user_id: str | None) -> AbstractContextManager[Span | None]:
    """A WebSocket event handled (`ws message.send`): the root of its own trace, so that one
    request's store calls and fan-out form one trace apart from the socket's other events.
    Yields None when tracing is off."""
    if not ON:
        return _OFF
    attributes: dict[str, AttributeValue] = {"fastsock.ws.event": event_type}
    if user_id:
        attributes["user.id"] = user_id
    return _current("ws " + event_type, SpanKind.SERVER, attributes, _ROOT)


def span(name: str, attributes: dict[str, AttributeValue]) -> AbstractContextManager[Span | None]:
    """An internal span under the current one (SFU admission, a worker's join, blobs);
    yields None when tracing is off."""
    if not ON:
        return _OFF
    return _current(name, SpanKind.INTERNAL, attributes)


def in_recording_span() -> bool:
    """Whether the code runs under a span that is recorded (sampled)."""
    return trace.get_current_span().is_recording()


def refused(span: Span | None, error_type: str) -> None:
    """A request refused (the client's error, like an HTTP 4xx): `error.type` is the API's
    error code, and the span's status stays unset, as the conventions want for servers."""
    if span is not None:
        span.set_attribute("error.type", error_type)


def failed(span: Span | None, error_type: str) -> None:
    """The server failed (an error code, like an HTTP 5xx): the span's status is ERROR."""
    if span is not None:
        span.set_attribute("error.type", error_type)
        span.set_status(Status(StatusCode.ERROR))


def start_http(
    method: str, route: str | None, headers: Mapping[str, str] | None, age_s: float
) -> Span:
    """The server span of an HTTP request, begun `age_s` ago (when it arrived), continuing
    the trace of an incoming `traceparent` in `headers` (None: a new trace, whatever the
    client sent); made current for the rest of the request. Named after the route template,
    never the path (ids in paths would explode its cardinality)."""
    known = method if method in HTTP_METHODS else "_OTHER"
    name = known if known != "_OTHER" else "HTTP"
    attributes: dict[str, AttributeValue] = {"http.request.method": known}
    if route is not None:
        name += " " + route
        attributes["http.route"] = route
    start = time.time_ns() - int(age_s * 1e9)
    parent = _ROOT if headers is None or _extract is None else _extract(headers)
    span = _tracer.start_span(
        name,
        context=parent,
        kind=SpanKind.SERVER,
        attributes=attributes,
        start_time=start,
    )
    # Never detached: each request runs in its own task, whose context ends with it.
    context.attach(trace.set_span_in_context(span))
    return span


def end_http(span: Span, status: int) -> None:
    span.set_attribute("http.response.status_code", status)
    if status >= 400:
        (failed if status >= 500 else refused)(span, str(status))
    span.end()


Observe = Callable[[str, float], None]


def observed_db(system: str, observe: Observe | None) -> Observe | None:
    """`observe(operation, seconds)` (the store's timing hook, fed once per database call by
    both backends) that also records a span of the call under the current one, when tracing
    is on as the store opens; `observe` itself otherwise. Calls outside any span (background
    upkeep, the probes' pings) make none: each would be a trace of its own."""
    if not ON:
        return observe

    def traced(operation: str, seconds: float) -> None:
        if ON and in_recording_span():
            attributes = {"db.system.name": system, "db.operation.name": operation}
            _ended(operation, seconds, SpanKind.CLIENT, attributes)
        if observe is not None:
            observe(operation, seconds)

    return traced


def fanout(type_: str, users: int, sockets: int, seconds: float) -> None:
    """The span of one event's delivery to this process's sessions (hub.deliver): `users` of
    the recipients have a session here, `sockets` sockets were written to."""
    _ended(
        "fanout " + type_,
        seconds,
        SpanKind.PRODUCER,
        {
            "messaging.operation.type": "send",
            "fastsock.event.type": type_,
            "fastsock.fanout.users": users,
            "messaging.batch.message_count": sockets,
        },
    )
