"""What every handler needs, built once per server."""

from __future__ import annotations

from dataclasses import dataclass

from fastsock.config import Settings
from fastsock.metrics import Metrics
from fastsock.realtime.hub import Hub
from fastsock.services import Services
from fastsock.store import Store


@dataclass(frozen=True, slots=True)
class AppContext:
    settings: Settings
    store: Store
    services: Services
    hub: Hub
    metrics: Metrics
