"""Prometheus metrics of an SFU worker (served on its `/metrics`). One registry per process: a
worker process owns exactly one worker, so module-level metrics are enough.

"Packets" here are the units the SFU forwards: one encoded VP8 frame or one Opus packet (an
`av.Packet` handed to a subscriber's sender), whatever number of RTP packets carry it."""

from __future__ import annotations

from prometheus_client import (
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)

REGISTRY = CollectorRegistry()
# process_cpu_seconds_total, process_resident_memory_bytes, ... of the worker process.
REGISTRY.register(PROCESS_COLLECTOR)
REGISTRY.register(PLATFORM_COLLECTOR)

# Frame arrival at the worker -> handed to the subscriber's sender: mostly queueing time.
FORWARD_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1)
JOIN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

PEERS = Gauge("sfu_peers", "Connected participants", registry=REGISTRY)
TRACKS = Gauge(
    "sfu_tracks_forwarded", "Forwarded tracks (one per subscriber and publisher)", registry=REGISTRY
)
ROOMS = Gauge("sfu_rooms", "Calls hosted by this worker", registry=REGISTRY)
CPU = Gauge(
    "sfu_cpu_ratio",
    "CPU the worker process used over the last heartbeat interval, in cores (1 = one core busy): "
    "the figure FastSock weighs when it picks a worker",
    registry=REGISTRY,
)
FORWARD_SECONDS = Histogram(
    "sfu_forward_seconds",
    "From a complete frame arriving from its publisher to its hand-over to a subscriber's sender",
    buckets=FORWARD_BUCKETS,
    registry=REGISTRY,
)
JOIN_SECONDS = Histogram(
    "sfu_join_seconds",
    "From a participant's join to the first media forwarded to it",
    buckets=JOIN_BUCKETS,
    registry=REGISTRY,
)
PACKETS = Counter(
    "sfu_packets",
    "Encoded media packets (VP8 frames, Opus packets) received from publishers (in) "
    "and handed to subscribers (out)",
    ["direction"],
    registry=REGISTRY,
)
BYTES = Counter(
    "sfu_bytes",
    "Encoded media payload bytes received from publishers (in) and handed to subscribers (out)",
    ["direction"],
    registry=REGISTRY,
)
KEYFRAME_REQUESTS = Counter(
    "sfu_keyframe_requests",
    "Keyframe requests by reason (join, pli, drop, loss), before coalescing",
    ["reason"],
    registry=REGISTRY,
)
PLIS_SENT = Counter(
    "sfu_keyframe_plis",
    "PLIs sent to publishers (keyframe requests after coalescing: at most 2 per second each)",
    registry=REGISTRY,
)
QUEUE_DROPS = Counter(
    "sfu_subscriber_drops",
    "Packets dropped because a subscriber's queue was full (it then waits for a keyframe)",
    registry=REGISTRY,
)
