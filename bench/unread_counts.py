"""The grouped unread query (`messages.unread_counts`, run after every countable message for
all its recipients) on the embedded SQLite store: milliseconds per query for a room of
--members members and --messages messages (a tenth of them naming someone, one in fifty
`@room`), with every member's read pointer on the newest message ("equal", an idle room) and
spread over the whole history ("spread", members who read at different points: the costly
case). Seeds a temporary database straight through the store, no server. Prints `key: value`
lines and a final `RESULT {json}` line.

    .venv/bin/python bench/unread_counts.py                   # 200 and 1000 members
    .venv/bin/python bench/unread_counts.py --members 1000 --repeat 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastsock.store.sqlite import SqliteStore

AT = datetime(2024, 5, 1, tzinfo=UTC)


async def _seed(
    store: SqliteStore, tag: str, members: int, messages: int
) -> tuple[str, list[str], list[str]]:
    users = [
        (await store.users.insert({"username": f"{tag}{i}", "created_at": AT}))["_id"]
        for i in range(members)
    ]
    room_doc = {
        "kind": "group",
        "name": "bench",
        "private": False,
        "created_by": users[0],
        "created_at": AT,
        "last_activity_at": AT,
        "version": 0,
    }
    roles = [(users[0], "admin"), *((u, "member") for u in users[1:])]
    room = (await store.rooms.create(room_doc, roles, AT))["_id"]
    rng = random.Random(14)
    ids = []
    for i in range(messages):
        named = rng.sample(users, 2) if i % 10 == 0 else []
        doc = {
            "room_id": room,
            "sender_id": rng.choice(users),
            "type": "text",
            "text": f"message {i}",
            "attachments": [],
            "mentions": named,
            "mention_room": i % 50 == 0,
            "client_msg_id": f"{tag}{i}",
            "created_at": AT,
            "version": i + 1,
        }
        ids.append((await store.messages.insert(doc))["_id"])
    return room, users, ids


async def _time(store: SqliteStore, room: str, users: list[str], repeat: int) -> float:
    """The median milliseconds of one unread_counts for all members but the first."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        await store.messages.unread_counts(room, users[1:])
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


async def _run(members: int, messages: int, repeat: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "bench.db")
        await store.prepare(30)
        try:
            room, users, ids = await _seed(store, "e", members, messages)
            for user in users:
                await store.memberships.advance_read(room, user, ids[-1], AT)
            equal = await _time(store, room, users, repeat)
            # Pointers only move forward: a fresh room for the spread case.
            room, users, ids = await _seed(store, "s", members, messages)
            rng = random.Random(15)
            for user in users:
                await store.memberships.advance_read(room, user, rng.choice(ids), AT)
            spread = await _time(store, room, users, repeat)
        finally:
            await store.close()
    return {"equal_ms": round(equal, 2), "spread_ms": round(spread, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--messages", type=int, default=600)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    result: dict[str, Any] = {}
    for members in args.members:
        result[str(members)] = times = asyncio.run(_run(members, args.messages, args.repeat))
        print(f"members {members}: equal {times['equal_ms']} ms, spread {times['spread_ms']} ms")
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
