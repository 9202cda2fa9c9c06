"""`GroupPeer`: a group-call participant in aiortc, speaking the worker's protocol as a browser
does (docs/calls.md, "Client <-> worker").

    peer = GroupPeer()                          # sends tests/sfu/media's IdVideoTrack, ToneTrack
    await peer.join(worker_url, token)          # `joined` received (or WorkerClosed with the code)
    await peer.wait_video(user_id, frames=10)   # decoded frames of that user's video
    peer.video_ids(user_id), peer.audio_frames(user_id)
    await peer.wait_event("peer.left", user_id=...)
    await peer.leave(); await peer.close()

It answers every offer the worker sends (attaching its own tracks to the m-lines marked
`send`), keeps the offer's `streams` map (mid -> user), and records each decoded frame under the
user whose track the m-line carries at that moment. The worker URL and token come from
anywhere: a test's own `issue_join`, or FastSock's `call.sfu` (`worker_url`, `token`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.exceptions import InvalidStateError
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import SessionDescription
from tornado.websocket import WebSocketClientConnection, WebSocketClosedError, websocket_connect

from sfu.ice import rtc_configuration
from tests.sfu.media import Decoded, IdVideoTrack, Recorder, ToneTrack, read_id

WAIT_S = 20.0


class WorkerClosed(Exception):
    def __init__(self, code: int | None, reason: str | None) -> None:
        super().__init__(f"worker closed the socket: {code} {reason}")
        self.code = code
        self.reason = reason


class _ByUser(Recorder):
    """tests/sfu/media.Recorder (decode errors, all frames), each frame also filed under the user
    whose track its m-line carries."""

    def __init__(self, peer: GroupPeer) -> None:
        super().__init__(peer.pc)
        self.peer = peer
        self.video_by_user: dict[str, list[Decoded]] = {}
        self.audio_by_user: Counter[str] = Counter()
        self.pts_by_mid: dict[str, list[int]] = {}  # timestamps of what each m-line decoded

    async def _consume(self, track: MediaStreamTrack) -> None:
        transceiver = next(t for t in self.pc.getTransceivers() if t.receiver.track is track)
        try:
            while True:
                frame = await track.recv()
                mid = transceiver.mid or ""
                user = self.peer.streams.get(mid, {}).get("user_id", "?")
                self.pts_by_mid.setdefault(mid, []).append(frame.pts)
                if track.kind == "video":
                    decoded = Decoded(read_id(frame), time.monotonic())
                    self.video.append(decoded)
                    self.video_by_user.setdefault(user, []).append(decoded)
                else:
                    self.audio_frames += 1
                    self.audio_by_user[user] += 1
                self._changed.set()
        except MediaStreamError:
            pass


class GroupPeer:
    def __init__(self, name: str = "", *, audio: bool = True, video: bool = True) -> None:
        self.name = name
        self.pc = RTCPeerConnection(rtc_configuration())
        self.audio = ToneTrack() if audio else None
        self.video = IdVideoTrack() if video else None
        self.recorder = _ByUser(self)
        self.user_id = ""
        self.joined: dict[str, Any] = {}
        self.streams: dict[str, dict[str, Any]] = {}  # of the last offer answered
        self.offers: list[dict[str, Any]] = []
        self.events: list[tuple[str, dict[str, Any], Any]] = []  # (type, data, ref), not offers
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._ws: WebSocketClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._answering = asyncio.Event()
        self._answering.set()

    # --- signaling ----------------------------------------------------------------------------

    async def connect(self, url: str) -> None:
        self._ws = await websocket_connect(url)
        self._reader = asyncio.ensure_future(self._read())

    async def join(self, url: str, token: str, *, publish: dict[str, bool] | None = None) -> None:
        """Connect and join; WorkerClosed if the worker refuses (with its close code)."""
        await self.connect(url)
        publish = publish or {"audio": self.audio is not None, "video": self.video is not None}
        self.send("join", {"token": token, "publish": publish})
        await self.wait_for(lambda: self.joined or self.close_code is not None)
        if not self.joined:
            raise WorkerClosed(self.close_code, self.close_reason)
        self.user_id = self.joined["user_id"]

    def send(self, type_: str, data: dict[str, Any], ref: Any = None) -> None:
        frame: dict[str, Any] = {"type": type_, "data": data}
        if ref is not None:
            frame["ref"] = ref
        self.send_raw(json.dumps(frame))

    def send_raw(self, message: str) -> None:
        assert self._ws is not None
        self._ws.write_message(message)

    async def _read(self) -> None:
        assert self._ws is not None
        while True:
            message = await self._ws.read_message()
            if message is None:
                self.close_code, self.close_reason = self._ws.close_code, self._ws.close_reason
                self._changed.set()
                return
            frame = json.loads(message)
            type_, data = frame["type"], frame.get("data", {})
            if type_ == "offer":
                # The worker may close the socket (a leave) or the media meanwhile: its close
                # frame is read next, so the reader must outlive a refused answer.
                with contextlib.suppress(WebSocketClosedError, InvalidStateError):
                    await self._answer(data)
            else:
                if type_ == "joined":
                    self.joined = data
                self.events.append((type_, data, frame.get("ref")))
            self._changed.set()

    def hold_offers(self) -> None:
        """Leave the worker's offers unanswered (and unapplied) until `answer_offers()`."""
        self._answering.clear()

    def answer_offers(self) -> None:
        self._answering.set()

    async def _answer(self, offer: dict[str, Any]) -> None:
        self.offers.append(offer)
        await self._answering.wait()
        await self.pc.setRemoteDescription(RTCSessionDescription(**offer["sdp"]))
        self._route_retransmissions(offer["sdp"]["sdp"])
        self.streams = offer["streams"]
        for transceiver in self.pc.getTransceivers():
            stream = self.streams.get(transceiver.mid or "")
            if stream is None or not stream.get("send"):
                continue
            track = self.video if stream["kind"] == "video" else self.audio
            if track is not None and transceiver.sender.track is not track:
                transceiver.sender.replaceTrack(track)
                if isinstance(track, IdVideoTrack):
                    track.bind(transceiver.sender)
            transceiver.direction = "sendonly" if track is not None else "inactive"
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        answer = {"type": "answer", "sdp": self.pc.localDescription.sdp}
        self.send("answer", {"revision": offer["revision"], "sdp": answer})

    def _route_retransmissions(self, sdp: str) -> None:
        """aiortc routes a retransmission (RTX) by its payload type only while one receiver has
        that type: with two remote videos or more it drops them all, and a lost packet stalls
        that video for good (its jitter buffer waits for it; a reused m-line can lose the
        packets in flight while it was inactive). Route each m-line's RTX SSRC (the offer's
        `ssrc-group:FID`) to its receiver, as browsers do."""
        rtx_by_mid = {
            media.rtp.muxId: group.items[1]
            for media in SessionDescription.parse(sdp).media
            for group in media.ssrc_group
            if group.semantic == "FID" and len(group.items) == 2
        }
        for transceiver in self.pc.getTransceivers():
            rtx = rtx_by_mid.get(transceiver.mid or "")
            if rtx is not None:
                receiver = transceiver.receiver
                receiver.transport._rtp_router.ssrc_table[rtx] = receiver

    async def leave(self) -> None:
        self.send("leave", {})
        await self.wait_closed()

    async def close(self) -> None:
        if self._ws is not None:
            self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
        await self.recorder.close()
        await asyncio.wait_for(self.pc.close(), WAIT_S)

    # --- what it received ---------------------------------------------------------------------

    def video_ids(self, user_id: str) -> list[int | None]:
        return [d.frame_id for d in self.recorder.video_by_user.get(user_id, [])]

    def audio_frames(self, user_id: str) -> int:
        return self.recorder.audio_by_user[user_id]

    def describe(self) -> str:
        """What this peer saw (for failure messages)."""
        offers = [(o["revision"], o["streams"]) for o in self.offers]
        video = {u: len(v) for u, v in self.recorder.video_by_user.items()}
        return (
            f"{self.name} ({self.user_id}): pc {self.pc.connectionState}, offers {offers}, "
            f"events {[e[:2] for e in self.events]}, video {video}, "
            f"audio {dict(self.recorder.audio_by_user)}, closed {self.close_code}"
        )

    def sent_users(self) -> set[str]:
        """Whose tracks the last offer sends to this peer."""
        return {s["user_id"] for s in self.streams.values() if not s.get("send")}

    def event(self, type_: str, **match: Any) -> dict[str, Any] | None:
        for seen, data, _ in self.events:
            if seen == type_ and all(data.get(k) == v for k, v in match.items()):
                return data
        return None

    # --- bounded waits (failure detectors, not timers) -----------------------------------------

    async def wait_for(self, condition: Callable[[], object], timeout: float = WAIT_S) -> None:
        async def until() -> None:
            while not condition():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(until(), timeout)

    async def wait_event(self, type_: str, timeout: float = WAIT_S, **match: Any) -> dict[str, Any]:
        await self.wait_for(lambda: self.event(type_, **match) is not None, timeout)
        found = self.event(type_, **match)
        assert found is not None
        return found

    async def wait_closed(self, timeout: float = WAIT_S) -> int | None:
        await self.wait_for(lambda: self.close_code is not None, timeout)
        return self.close_code

    async def wait_video(self, user_id: str, frames: int = 10, timeout: float = WAIT_S) -> None:
        await self.recorder.wait_for(lambda: len(self.video_ids(user_id)) >= frames, timeout)

    async def wait_audio(self, user_id: str, frames: int = 10, timeout: float = WAIT_S) -> None:
        await self.recorder.wait_for(lambda: self.audio_frames(user_id) >= frames, timeout)
