"""Structured logs: one JSON object per line with `ts, level, event, request_id, user_id?`.

Callers log an event name and safe fields (`log.info("db_down", extra={"fields": {...}})`).
Tokens, passwords and message text are never passed to a logger. Inside a recording span
(fastsock/tracing.py) a line also carries its `trace_id` and `span_id` (hex, as trace viewers
show them). The SFU worker (sfu/) logs through this module too, so it imports nothing beyond
the standard library and the OpenTelemetry API."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time

from opentelemetry import trace

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
user_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("user_id", default=None)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            "logger": record.name,
        }
        if (rid := request_id.get()) is not None:
            entry["request_id"] = rid
        if (uid := user_id.get()) is not None:
            entry["user_id"] = uid
        span = trace.get_current_span()
        if span.is_recording():
            ids = span.get_span_context()
            entry["trace_id"] = trace.format_trace_id(ids.trace_id)
            entry["span_id"] = trace.format_span_id(ids.span_id)
        entry.update({k: v for k, v in getattr(record, "fields", {}).items() if v is not None})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def _timestamp(record: logging.LogRecord) -> str:
    """UTC with milliseconds, as the API shows times (services/clock.iso)."""
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


def setup(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Tornado's own access log is replaced by ours (which carries the request id).
    logging.getLogger("tornado.access").setLevel(logging.WARNING)
