"""Ordered per-room versions across nodes (docs/architecture.md, "Change versions and sync"):
two nodes hammer one room while a client syncs with `changed_after`, and the client misses no
change.

The window between reserving a version and writing it is widened on one node by a pause
before each of its message writes (the nodes run in this process, so a store can be
wrapped): without the lock across nodes, the other node writes versions above V while the
slow one still holds V unwritten, the client syncs past them, and V is never seen."""

from __future__ import annotations

import asyncio
import functools
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from fastsock.app import Server
from tests.cluster.conftest import Nodes
from tests.support import Api, User

SENDERS_PER_NODE = 3
MESSAGES_PER_SENDER = 12
PAUSE_S = 0.01  # on node 0, between reserving a version and writing it
EMOJI = urllib.parse.quote("👍")


def slow_writes(server: Server) -> None:
    """Pause before every write of a message (new, edit, reaction)."""
    messages = server.ctx.store.messages

    def paused(write: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(write)
        async def run(*args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(PAUSE_S)
            return await write(*args, **kwargs)

        return run

    for name in ("insert", "update", "add_reaction", "remove_reaction"):
        setattr(messages, name, paused(getattr(messages, name)))


async def write(api: Api, user: User, room: str) -> None:
    """Sends, with an edit of every third message and a reaction on every fourth."""
    for i in range(MESSAGES_PER_SENDER):
        message = await api.send(user, room, f"{user.username} {i}")
        if i % 3 == 0:
            r = await api.patch(f"/messages/{message['id']}", {"text": f"edited {i}"}, user)
            assert r.status == 200, r.body
        if i % 4 == 0:
            r = await api.request(
                "PUT", f"/messages/{message['id']}/reactions/{EMOJI}", token=user.access_token
            )
            assert r.status == 200, r.body


class Syncer:
    """A client that syncs with `changed_after`, advancing to the highest version it saw."""

    def __init__(self, api: Api, user: User, room: str) -> None:
        self.api, self.user, self.room = api, user, room
        self.after = 0
        self.seen: dict[str, int] = {}  # message id -> highest version seen
        self.owner: dict[int, str] = {}  # version -> the one message seen with it

    async def sync(self) -> None:
        while True:
            r = await self.api.get(
                f"/history/room/{self.room}?changed_after={self.after}&limit=100", self.user
            )
            assert r.status == 200, r.body
            for message in r.body["messages"]:
                version = message["version"]
                assert self.owner.setdefault(version, message["id"]) == message["id"], version
                self.seen[message["id"]] = max(self.seen.get(message["id"], 0), version)
                self.after = max(self.after, version)
            if not r.body["has_more"]:
                return


async def test_a_syncing_client_misses_no_change_from_two_nodes(
    cluster_db: str, redis_url: str, tmp_path: Path
) -> None:
    cluster = Nodes(cluster_db, redis_url, tmp_path)
    try:
        slow_writes(await cluster.start())
        await cluster.start()
        apis = [cluster.api(0), cluster.api(1)]
        owner = await apis[0].register()
        senders = [(api, await api.register()) for api in apis for _ in range(SENDERS_PER_NODE)]
        room = await apis[0].group(owner, *(user for _, user in senders))

        syncer = Syncer(apis[1], owner, room)
        writers = asyncio.gather(*(write(api, user, room) for api, user in senders))
        while not writers.done():
            await syncer.sync()
        await writers  # a writer's failure shows here
        await syncer.sync()  # every change is in by now

        everything = Syncer(apis[0], owner, room)
        await everything.sync()
        assert len(everything.seen) == 2 * SENDERS_PER_NODE * MESSAGES_PER_SENDER
        assert syncer.seen == everything.seen  # every message, each at its last version
    finally:
        await cluster.stop()


async def test_a_change_that_cannot_have_the_room_lock_changes_nothing(
    cluster_db: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis failing while a node asks for a room's lock: 503 `unavailable`, nothing stored,
    no version taken."""
    cluster = Nodes(cluster_db, redis_url, tmp_path)
    try:
        server = await cluster.start()
        api = cluster.api(0)
        alice = await api.register()
        room = await api.group(alice)
        message = await api.send(alice, room, "before")

        async def broken(*_args: object) -> object:
            raise RedisConnectionError("Redis went away")

        monkeypatch.setattr(server.ctx.services.rooms.change_lock, "_acquire", broken)
        r = await api.post(
            f"/rooms/{room}/messages", {"client_msg_id": uuid.uuid4().hex, "text": "x"}, alice
        )
        assert r.status == 503 and r.error_code == "unavailable", r.body
        assert r.headers["Retry-After"] == "1"
        r = await api.patch(f"/messages/{message['id']}", {"text": "edited"}, alice)
        assert r.status == 503 and r.error_code == "unavailable", r.body
        sock = await api.ws(alice)
        for type_, data in [
            ("message.send", {"room_id": room, "client_msg_id": uuid.uuid4().hex, "text": "y"}),
            ("reaction.add", {"message_id": message["id"], "emoji": "👍"}),
        ]:
            reply = await sock.request(type_, data)
            assert reply["type"] == "error" and reply["data"]["code"] == "unavailable", reply
        assert (await sock.request("ping"))["type"] == "pong"  # the socket stays open
        history = await api.get(f"/history/room/{room}?changed_after=0", alice)
        assert [(m["text"], m["version"]) for m in history.body["messages"]] == [("before", 1)]
        assert (await api.get(f"/rooms/{room}", alice)).body["version"] == 1
    finally:
        await cluster.stop()
