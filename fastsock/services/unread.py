"""The `unread {room_id, unread_count, mention_count}` event: a member's counts for a room,
computed by the server so clients never count. Sent to every member but the sender when a
countable message is created (not a history line), and to a reader whose read pointer moved.

One grouped store query answers for all the recipients; members with the same counts (most
of a busy room: one new message each) get one publish between them."""

from __future__ import annotations

from collections import defaultdict

from fastsock.services.events import EventSink
from fastsock.store import Store


async def announce(store: Store, sink: EventSink, room_id: str, user_ids: list[str]) -> None:
    """Tell each of these users (members of the room) their counts in it."""
    counts = await store.messages.unread_counts(room_id, user_ids)
    alike: dict[tuple[int, int], list[str]] = defaultdict(list)
    for user_id, pair in counts.items():
        alike[pair].append(user_id)
    for (unread, mentions), users in alike.items():
        event = {"room_id": room_id, "unread_count": unread, "mention_count": mentions}
        await sink.publish(users, "unread", event, room_id=room_id)
