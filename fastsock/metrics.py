"""Prometheus metrics (design.md section 7). Each app gets its own registry, so several
servers can run in one process (tests) without clashing. The dashboard
(config/grafana/dashboards/) and the alert rules (config/deploy/prometheus/alerts.yml) query
these names: tests/deploy/test_metrics.py checks that each one they use is exported."""

from __future__ import annotations

from prometheus_client import (
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# Label values of the counters the alert rules watch with increase(), exported at 0 from the
# start: a series first scraped at 1 has no increase, and its first event would never alert.
SFU_ADMISSION_OUTCOMES = ("admitted", "no_worker", "worker_full", "call_full", "not_configured")
SFU_MOVE_REASONS = ("drain", "worker_lost")  # services/group_call.py MOVE_DRAIN, MOVE_LOST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # process_cpu_seconds_total, process_resident_memory_bytes, ...: the default registry's
        # collectors read /proc at scrape time and hold no state, so registries can share them.
        r.register(PROCESS_COLLECTOR)
        r.register(PLATFORM_COLLECTOR)
        self.database_up = Gauge(
            "fastsock_database_up",
            "1 when the database answered the last ping (each /readyz and /metrics request pings)",
            registry=r,
        )
        # Cluster mode only (health()): on a single node an idle 0 would look like an outage.
        self.redis_up: Gauge | None = None
        self.ws_connections = Gauge(
            "fastsock_ws_connections", "Open authenticated WebSocket connections", registry=r
        )
        self.messages = Counter(
            "fastsock_messages_total", "Messages accepted (new, not retried)", registry=r
        )
        self.events_delivered = Counter(
            "fastsock_events_delivered_total", "Events written to sockets", ["type"], registry=r
        )
        self.event_delivery = Histogram(
            "fastsock_event_delivery_seconds",
            "From publishing an event to handing it to the last recipient socket",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.http_requests = Histogram(
            "fastsock_http_request_seconds",
            "HTTP request duration by route",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.db_operations = Histogram(
            "fastsock_db_operation_seconds",
            "Database operation duration (MongoDB command, or embedded store operation)",
            ["command"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ws_dropped = Counter(
            "fastsock_ws_slow_consumer_closed_total",
            "Sockets closed because they fell too far behind",
            registry=r,
        )

        self.rate_limited = Counter(
            "fastsock_rate_limited_total", "Requests refused by a rate limit", ["kind"], registry=r
        )
        self.replay_buffer_bytes = Gauge(
            "fastsock_replay_buffer_bytes",
            "Bytes of frames kept for WebSocket resumes, all sessions together",
            registry=r,
        )
        self.resume = Counter(
            "fastsock_resume_total",
            "WebSocket resume attempts by outcome (ok, or why a resync was needed)",
            ["outcome"],
            registry=r,
        )

        self.uploads = Counter("fastsock_uploads_total", "Files stored", registry=r)
        self.upload_bytes = Counter(
            "fastsock_upload_bytes_total", "Bytes of files stored", registry=r
        )
        self.upload_refusals = Counter(
            "fastsock_upload_refusals_total", "Uploads refused, by reason", ["reason"], registry=r
        )

        self.calls_active = Gauge(
            "fastsock_calls_active", "Calls ringing or in progress on this node", registry=r
        )
        self.calls = Counter(
            "fastsock_calls_total", "Calls finished, by outcome", ["outcome"], registry=r
        )
        self.call_setup = Histogram(
            "fastsock_call_setup_seconds",
            "From accepting a call to relaying the callee's SDP answer (signaling done)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

        self.sfu_workers = Gauge(
            "fastsock_sfu_workers",
            "Registered SFU workers: up (taking calls), draining, stale (heartbeats missed); "
            "0 on a node that is not the call leader",
            ["state"],
            registry=r,
        )
        self.sfu_admissions = Counter(
            "fastsock_sfu_admissions_total",
            "Group call joins: admitted, or why not (no_worker, worker_full, call_full, "
            "not_configured)",
            ["outcome"],
            registry=r,
        )
        self.sfu_moves = Counter(
            "fastsock_sfu_moves_total",
            "Group calls moved to another worker, by why (drain, worker_lost)",
            ["reason"],
            registry=r,
        )
        self.group_calls_active = Gauge(
            "fastsock_group_calls_active",
            "Group calls in progress (all nodes; 0 on a node that is not the call leader)",
            registry=r,
        )
        for outcome in SFU_ADMISSION_OUTCOMES:
            self.sfu_admissions.labels(outcome)
        for reason in SFU_MOVE_REASONS:
            self.sfu_moves.labels(reason)

        # Labelled children by label value, looked up once each: `labels()` takes a lock and
        # builds a key, which adds up on paths taken per event.
        self._delivered: dict[str, Counter] = {}
        self._db: dict[str, Histogram] = {}

    def delivered(self, type_: str, count: int = 1) -> None:
        """Count events of a type written to sockets."""
        child = self._delivered.get(type_)
        if child is None:
            child = self._delivered[type_] = self.events_delivered.labels(type_)
        child.inc(count)

    def observe_db(self, command: str, seconds: float) -> None:
        child = self._db.get(command)
        if child is None:
            child = self._db[command] = self.db_operations.labels(command)
        child.observe(seconds)

    def health(self, database: bool, redis: bool | None) -> None:
        """Record what a readiness check found; `redis` is None outside cluster mode."""
        self.database_up.set(database)
        if redis is not None:
            if self.redis_up is None:
                self.redis_up = Gauge(
                    "fastsock_redis_up",
                    "1 when Redis answered the last ping and this node is on the bus "
                    "(cluster mode; each /readyz and /metrics request checks)",
                    registry=self.registry,
                )
            self.redis_up.set(redis)

    def render(self) -> bytes:
        return generate_latest(self.registry)
