"""Domain rules. No tornado here: handlers and the WebSocket both call these."""

from __future__ import annotations

from dataclasses import dataclass

from fastsock.blobs import BlobStore
from fastsock.config import Settings
from fastsock.metrics import Metrics
from fastsock.services.accounts import Accounts
from fastsock.services.calls import Calls
from fastsock.services.events import EventSink
from fastsock.services.limits import Throttles
from fastsock.services.messages import Messages
from fastsock.services.moderation import Moderation
from fastsock.services.passwords import PasswordHasher
from fastsock.services.presence import Presence
from fastsock.services.reactions import Reactions
from fastsock.services.receipts import Receipts
from fastsock.services.rooms import Rooms
from fastsock.services.search import Search
from fastsock.services.tokens import TokenCodec
from fastsock.services.typing import Typing
from fastsock.services.uploads import Uploads
from fastsock.store import Store


@dataclass(frozen=True, slots=True)
class Services:
    accounts: Accounts
    rooms: Rooms
    messages: Messages
    presence: Presence
    receipts: Receipts
    reactions: Reactions
    typing: Typing
    search: Search
    uploads: Uploads
    calls: Calls
    moderation: Moderation

    @classmethod
    def build(
        cls,
        store: Store,
        sink: EventSink,
        blobs: BlobStore,
        settings: Settings,
        metrics: Metrics,
    ) -> Services:
        throttles = Throttles(settings.limits, lambda kind: metrics.rate_limited.labels(kind).inc())
        rooms = Rooms(store, sink, throttles, settings.unread_window_s)
        typing = Typing(rooms)
        uploads = Uploads(store, blobs, settings, throttles, metrics)
        messages = Messages(store, sink, rooms, typing, uploads, metrics)
        rooms.on_history_line.append(messages.post_system)
        accounts = Accounts(
            store,
            sink,
            TokenCodec(settings.jwt_secret),
            throttles,
            uploads,
            PasswordHasher(settings.limits),
        )
        return cls(
            accounts=accounts,
            rooms=rooms,
            messages=messages,
            presence=Presence(sink, rooms, typing),
            receipts=Receipts(store, sink, rooms, messages),
            reactions=Reactions(store, rooms, messages),
            typing=typing,
            search=Search(store, rooms),
            uploads=uploads,
            calls=Calls(store, sink, rooms, messages, settings, metrics),
            moderation=Moderation(store, rooms, accounts),
        )
