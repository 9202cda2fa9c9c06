"""Structured logs: one JSON object per line with `ts, level, event, request_id, user_id?`.

Callers log an event name and safe fields (`log.info("db_down", extra={"fields": {...}})`).
Tokens, passwords and message text are never passed to a logger."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime

from fastsock.services.clock import iso

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
user_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("user_id", default=None)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": iso(datetime.fromtimestamp(record.created, UTC)),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            "logger": record.name,
        }
        if (rid := request_id.get()) is not None:
            entry["request_id"] = rid
        if (uid := user_id.get()) is not None:
            entry["user_id"] = uid
        entry.update({k: v for k, v in getattr(record, "fields", {}).items() if v is not None})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def setup(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Tornado's own access log is replaced by ours (which carries the request id).
    logging.getLogger("tornado.access").setLevel(logging.WARNING)
