"""Group calls through FastSock's admission with real processes: a FastSock server with group
calls on (its internal API is what the `python -m sfu` workers register with), and `Member`s,
room members who ask FastSock to join (`call.join` -> `call.sfu`) and take the token to the
worker it names in an aiortc `GroupPeer` (tests/sfu/client.py), as the browser does. Workers
are started with tests.conftest.SFU_SECRET, the server's.

    async with group_server(tmp_path, sfu_heartbeat_s=0.5) as (srv, api):
        async with SfuWorker(control_url(srv), SFU_SECRET) as worker:
            alice = await Member.sign_up(api)
            room = await api.group(alice.user, ...)
            await alice.join(room)             # alice.peer is connected to the worker
            await alice.follow_move(call_id)   # on call.sfu_moved: a new peer at the new worker
            await receiving([alice, bob])      # everyone decodes everyone else
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastsock.app import Server
from tests.realtime.fake_workers import GroupServers
from tests.sfu.client import GroupPeer
from tests.sfu.media import in_order
from tests.support import Api, Socket, User

WAIT_S = 20.0  # bound on waits for media, moves and sweeps (a failure detector, not a timer)
FRAMES = 8  # "receives video": this many frames decoded (about half a second at 15 fps)


@contextlib.asynccontextmanager
async def group_server(tmp_path: Path, **overrides: Any) -> AsyncIterator[tuple[Server, Api]]:
    """FastSock (SQLite in `tmp_path`) with group calls on (tests/realtime/fake_workers.py:
    heartbeats every 5 s unless overridden); `overrides` are Settings fields."""
    servers = GroupServers(None, tmp_path)
    try:
        srv = await servers.start(**overrides)
        yield srv, Api(srv.port)
    finally:
        await servers.stop_all()


def control_url(srv: Server) -> str:
    """What workers are given as SFU_CONTROL_URL."""
    return f"http://127.0.0.1:{srv.port}"


@dataclass
class Member:
    """A room member with a FastSock WebSocket, and (once in the call) a peer at its worker."""

    api: Api
    user: User
    ws: Socket
    peer: GroupPeer | None = None
    sfu: dict[str, Any] = field(default_factory=dict)  # the last call.sfu / call.sfu_moved
    asked_at: float = 0.0  # time.monotonic() of the last call.join
    peers: list[GroupPeer] = field(default_factory=list)  # every one made (closed at the end)

    @classmethod
    async def sign_up(cls, api: Api) -> Member:
        user = await api.register()
        return cls(api, user, await api.ws(user))

    @property
    def id(self) -> str:
        return self.user.id

    async def ask(self, room_id: str) -> dict[str, Any]:
        """`call.join`: the whole reply frame (call.sfu, call.unavailable or error)."""
        self.asked_at = time.monotonic()
        return await self.ws.request("call.join", {"room_id": room_id}, timeout=WAIT_S)

    async def join(self, room_id: str) -> GroupPeer:
        """Admitted by FastSock, then joined at the worker it named."""
        reply = await self.ask(room_id)
        assert reply["type"] == "call.sfu", reply
        return await self.connect(reply["data"])

    async def connect(self, sfu: dict[str, Any]) -> GroupPeer:
        """A new peer at `sfu["worker_url"]` with `sfu["token"]` (call.sfu or call.sfu_moved)."""
        self.sfu = sfu
        self.peer = GroupPeer(self.user.username)
        self.peers.append(self.peer)
        await self.peer.join(sfu["worker_url"], sfu["token"])
        return self.peer

    async def follow_move(self, call_id: str, timeout: float = WAIT_S) -> dict[str, Any]:
        """Wait for `call.sfu_moved` of the call, leave the old worker's peer behind and join
        the new one; the call.sfu_moved data."""
        moved = await self.ws.expect(
            "call.sfu_moved", lambda f: f["data"]["call_id"] == call_id, timeout=timeout
        )
        if self.peer is not None:
            await self.peer.close()
        await self.connect(moved)
        return moved

    async def close(self) -> None:
        for peer in self.peers:
            with contextlib.suppress(Exception):  # teardown: a peer of a dead worker, say
                await peer.close()
        self.ws.close()


async def receiving(members: list[Member], frames: int = FRAMES) -> None:
    """Each member's current peer decodes every other member's video (`frames` more frames
    than it had) and receives their audio; no decode error, and the frame ids of each video
    track it decoded are in order."""
    before = {(m.id, o.id): len(m.peer.video_ids(o.id)) for m in members for o in members if m.peer}
    for member in members:
        peer = member.peer
        assert peer is not None
        for other in members:
            if other is member:
                continue
            try:
                await peer.wait_video(other.id, frames=before[member.id, other.id] + frames)
                await peer.wait_audio(other.id, frames=frames)
            except TimeoutError:
                raise AssertionError(
                    f"{member.user.username} got no media from {other.user.username} "
                    f"within {WAIT_S}s: {peer.describe()}"
                ) from None
    for member in members:
        peer = member.peer
        assert peer is not None and peer.recorder.decode_errors == 0, peer.describe()
        for other in members:
            if other is not member:
                for ids in tracks(peer.video_ids(other.id)):
                    assert in_order(ids), (ids, peer.describe())


def tracks(ids: list[int | None]) -> list[list[int | None]]:
    """A user's decoded frame ids split by track: each of their tracks (a rejoin) starts at 0.
    (aiortc's receiver hands over a frame when the next one begins: the last frame of a track
    that ended is decoded when the next track's first frame arrives, still before it.)"""
    starts = [i for i, frame_id in enumerate(ids) if frame_id == 0 and i > 0]
    return [ids[a:b] for a, b in zip([0, *starts], [*starts, len(ids)], strict=True)]
