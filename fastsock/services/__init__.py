"""Domain rules. No tornado here: handlers and the WebSocket both call these."""

from __future__ import annotations

from dataclasses import dataclass

from fastsock.metrics import Metrics
from fastsock.services.accounts import Accounts
from fastsock.services.events import EventSink
from fastsock.services.messages import Messages
from fastsock.services.presence import Presence
from fastsock.services.rooms import Rooms
from fastsock.services.tokens import TokenCodec
from fastsock.store import Store


@dataclass(frozen=True, slots=True)
class Services:
    accounts: Accounts
    rooms: Rooms
    messages: Messages
    presence: Presence

    @classmethod
    def build(cls, store: Store, sink: EventSink, tokens: TokenCodec, metrics: Metrics) -> Services:
        rooms = Rooms(store, sink)
        return cls(
            accounts=Accounts(store, sink, tokens),
            rooms=rooms,
            messages=Messages(store, sink, rooms, metrics),
            presence=Presence(sink, rooms),
        )
