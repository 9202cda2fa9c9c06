"""One participant's peer connection: what it publishes, what it is sent, and its negotiation.

The worker is the only offerer, so there is no glare: a change (a participant publishes or
leaves) marks the peer `dirty`, and one offer at a time goes out with a `revision`; changes
made while it waits for its answer are offered again once the answer is in.

aiortc cannot remove a transceiver, so each m-line is a reusable slot: when the track it
forwards goes, the slot stops sending and is offered `inactive`; once the client has agreed
(its current direction is inactive), the next track of that kind reuses it. The SDP stays
as long as the largest set of tracks this peer was sent at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol

import av
from aiortc import (
    MediaStreamTrack,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import candidate_from_sdp

from fastsock.errors import Conflict, InvalidRequest, TooLarge
from sfu import metrics
from sfu.frames import Packet
from sfu.ice import rtc_configuration
from sfu.publisher import Publisher
from sfu.taps import tap_receiver

if TYPE_CHECKING:
    from sfu.forward import ForwardTrack
    from sfu.room import Room

log = logging.getLogger("sfu.peer")

Kind = Literal["audio", "video"]
KINDS: tuple[Kind, ...] = ("audio", "video")
# Offered codecs: VP8 (with RTX for retransmissions) and Opus, nothing the worker cannot forward.
CODECS = {"video": ("video/vp8", "video/rtx"), "audio": ("audio/opus",)}
# A frame's duration in each clock (30 fps video, 20 ms Opus): the gap put between the last
# timestamp a slot sent and the first one of the next track it forwards.
FRAME_TICKS = {"video": 3000, "audio": 960}
MAX_PENDING_CANDIDATES = 64


class Channel(Protocol):
    """The participant's worker socket, as the peer uses it."""

    def send(self, type_: str, data: dict[str, Any]) -> None: ...

    def close(self, code: int, reason: str) -> None: ...


def prefer_codecs(transceiver: RTCRtpTransceiver) -> None:
    kind = transceiver.kind
    wanted = CODECS[kind]
    codecs = RTCRtpSender.getCapabilities(kind).codecs
    transceiver.setCodecPreferences([c for c in codecs if c.mimeType.lower() in wanted])


class SlotTrack(MediaStreamTrack):
    """What a slot's sender reads, for the slot's whole life: the packets of the track the
    slot forwards now, if any. A sender whose own track ends stops for good, so the tracks
    being forwarded come and go behind this one instead. The timestamps of a new track
    continue where the previous one stopped, so the receiver sees one steady stream (a
    browser's audio jitter buffer discards packets older than what it played)."""

    def __init__(self, kind: Kind) -> None:
        super().__init__()
        self.kind = kind
        self.source: ForwardTrack | None = None
        self._changed = asyncio.Event()
        self._offset = 0
        self._last_pts: int | None = None
        self._rebase = False

    def set_source(self, source: ForwardTrack | None) -> None:
        """The previous source must have been ended (so that a pending recv returns)."""
        self.source = source
        self._rebase = True
        self._changed.set()

    async def recv(self) -> Packet:
        while True:
            source = self.source
            if source is None:
                self._changed.clear()
                await self._changed.wait()
                continue
            try:
                packet = await source.recv()
            except MediaStreamError:  # that track ended: wait for the next one
                if self.source is source:
                    self.source = None
                continue
            if self.source is not source:  # replaced while we waited
                continue
            pts = packet.pts
            assert pts is not None  # every frame is stamped (frames.encoded_frame)
            if self._rebase:
                self._rebase = False
                if self._last_pts is not None:
                    self._offset = self._last_pts + FRAME_TICKS[self.kind] - pts
            if self._offset:
                pts += self._offset
                packet = _shifted(packet, pts)
            self._last_pts = pts
            return packet


def _shifted(packet: Packet, pts: int) -> Packet:
    # A copy: the packet may be shared with the publisher's other subscribers.
    moved = av.Packet(bytes(packet))
    moved.pts = pts
    moved.time_base = packet.time_base
    return moved


class Slot:
    """A sendonly m-line of this peer: forwards one publisher's track, or nothing (inactive)."""

    def __init__(self, transceiver: RTCRtpTransceiver, track: SlotTrack) -> None:
        self.transceiver = transceiver
        self.track = track
        self.publisher: Publisher | None = None
        self.forward: ForwardTrack | None = None
        self.live = False  # the client has answered the offer that assigned it

    @property
    def free(self) -> bool:
        return self.publisher is None and self.transceiver.currentDirection == "inactive"

    def assign(self, publisher: Publisher, on_first_packet: Callable[[], None]) -> None:
        self.publisher = publisher
        # Subscribed now, so that the keyframe it asks for is on its way during the answer.
        self.forward = publisher.subscribe()
        self.forward.on_first_packet = on_first_packet
        self.live = False
        self.transceiver.direction = "sendonly"

    def go_live(self) -> None:
        """After the answer: a sender that was inactive drops what it reads until then."""
        if self.forward is not None and not self.live:
            self.live = True
            self.forward.bind_sender(self.transceiver.sender)
            self.track.set_source(self.forward)

    def release(self) -> None:
        publisher, forward = self.publisher, self.forward
        self.publisher = self.forward = None
        self.live = False
        if publisher is not None and forward is not None:
            publisher.unsubscribe(forward)  # ends it
        self.track.set_source(None)
        self.transceiver.direction = "inactive"


class Peer:
    def __init__(
        self,
        *,
        user_id: str,
        room: Room,
        channel: Channel,
        publish: dict[Kind, bool],
        joined_at: float,
    ) -> None:
        self.user_id = user_id
        self.room = room
        self.channel = channel
        self.publish = dict(publish)
        self.muted = {"audio_muted": False, "video_muted": False}
        self.joined_at = joined_at  # monotonic, for sfu_join_seconds
        self.first_media = False
        self.pc = RTCPeerConnection(rtc_configuration())
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_connection_state)
        self.inbound: dict[Kind, RTCRtpTransceiver] = {}  # the client's publish slots
        self.publishers: dict[Kind, Publisher] = {}
        self.slots: list[Slot] = []
        self.wanted: dict[Publisher, Slot | None] = {}  # forwarded to this peer, by slot
        self.revision = 0
        self.awaiting: int | None = None  # revision of the offer waiting for its answer
        self.dirty = False
        self.closed = False
        self._offering: asyncio.Task[None] | None = None
        self._candidates: list[Any] = []  # until the first answer is in

    # --- what is published and forwarded ---------------------------------------------------

    def published(self) -> list[Publisher]:
        return [p for kind, p in self.publishers.items() if self.publish[kind]]

    @property
    def forwarded(self) -> int:
        return len(self.wanted)

    def subscribe(self, publisher: Publisher) -> None:
        if publisher not in self.wanted and not self.closed:
            self.wanted[publisher] = None
            self.negotiate()

    def unsubscribe(self, publisher: Publisher) -> None:
        if publisher not in self.wanted:
            return
        slot = self.wanted.pop(publisher)
        if slot is not None:
            slot.release()
        self.negotiate()

    def set_publish(self, publish: dict[Kind, bool]) -> None:
        for kind in KINDS:
            if publish[kind] == self.publish[kind]:
                continue
            self.publish[kind] = publish[kind]
            publisher = self.publishers.get(kind)
            if publisher is not None:
                if publish[kind]:
                    self.room.publish(self, publisher)
                else:
                    self.room.unpublish(self, publisher)
        self.negotiate()

    def _on_track(self, track: MediaStreamTrack) -> None:
        # Synchronous on purpose: the receiver must be tapped before aiortc starts it.
        transceiver = next(t for t in self.pc.getTransceivers() if t.receiver.track is track)
        kind: Kind = transceiver.kind  # type: ignore[assignment]  # a str to aiortc; ours: 2 kinds
        if self.inbound.get(kind) is not transceiver or kind in self.publishers:
            return  # not a publish slot (never: forwarding slots are sendonly)
        speaker = self.room.speaker if kind == "audio" else None
        publisher = Publisher(self.user_id, kind, speaker=speaker)
        tap_receiver(transceiver.receiver, publisher)
        publisher.on_ended = lambda: self._publisher_ended(kind, publisher)
        self.publishers[kind] = publisher
        if self.publish[kind]:
            self.room.publish(self, publisher)

    def _publisher_ended(self, kind: Kind, publisher: Publisher) -> None:
        if self.publishers.get(kind) is publisher:
            del self.publishers[kind]
            self.room.unpublish(self, publisher)
            publisher.close()

    def _on_media(self) -> None:
        if not self.first_media:
            self.first_media = True
            metrics.JOIN_SECONDS.observe(time.monotonic() - self.joined_at)

    # --- negotiation -----------------------------------------------------------------------

    def negotiate(self) -> None:
        """Offer the current state once the previous offer (if any) has its answer."""
        if self.closed:
            return
        self.dirty = True
        if self._offering is None and self.awaiting is None:
            self._offering = asyncio.ensure_future(self._offer())

    async def _offer(self) -> None:
        try:
            while self.dirty and self.awaiting is None and not self.closed:
                self.dirty = False
                self._lay_out()
                if not self.pc.getTransceivers():
                    return  # nothing to send or receive yet
                await self.pc.setLocalDescription(await self.pc.createOffer())
                if self.closed:
                    return
                self.revision += 1
                self.awaiting = self.revision
                offer = {"type": "offer", "sdp": self.pc.localDescription.sdp}
                self.channel.send(
                    "offer", {"revision": self.revision, "sdp": offer, "streams": self.streams()}
                )
        except Exception:
            if self.closed:  # the connection was closed under us: nothing to offer any more
                return
            log.exception("sfu_offer_failed")
            self.channel.close(1011, "negotiation failed")
        finally:
            self._offering = None

    def _lay_out(self) -> None:
        """Give the next offer its m-lines: publish slots first (the first offer puts them at
        the top), then a slot for every track to forward that has none."""
        for kind in KINDS:
            transceiver = self.inbound.get(kind)
            if transceiver is None and self.publish[kind]:
                transceiver = self.pc.addTransceiver(kind, direction="recvonly")
                prefer_codecs(transceiver)
                self.inbound[kind] = transceiver
            if transceiver is not None:
                transceiver.direction = "recvonly" if self.publish[kind] else "inactive"
        for publisher, slot in self.wanted.items():
            if slot is None:
                slot = next(
                    (s for s in self.slots if s.free and s.track.kind == publisher.kind), None
                )
                if slot is None:
                    slot = self._new_slot(publisher.kind)
                slot.assign(publisher, self._on_media)
                self.wanted[publisher] = slot

    def _new_slot(self, kind: Kind) -> Slot:
        track = SlotTrack(kind)
        transceiver = self.pc.addTransceiver(track, direction="sendonly")
        prefer_codecs(transceiver)
        slot = Slot(transceiver, track)
        self.slots.append(slot)
        return slot

    def streams(self) -> dict[str, dict[str, Any]]:
        """mid -> whose track it carries, for every m-line in use (`send`: the client's own)."""
        streams: dict[str, dict[str, Any]] = {}
        for kind, transceiver in self.inbound.items():
            if self.publish[kind] and transceiver.mid is not None:
                streams[transceiver.mid] = {"user_id": self.user_id, "kind": kind, "send": True}
        for slot in self.slots:
            if slot.publisher is not None and slot.transceiver.mid is not None:
                streams[slot.transceiver.mid] = {
                    "user_id": slot.publisher.user_id,
                    "kind": slot.publisher.kind,
                }
        return streams

    async def answer(self, revision: int, sdp: str) -> None:
        if self.awaiting is None or revision != self.awaiting:
            expected = "none" if self.awaiting is None else str(self.awaiting)
            raise Conflict(
                f"no offer with revision {revision} waits for an answer (waiting: {expected})",
                field="revision",
            )
        paused = {kind for kind, t in self.inbound.items() if t.currentDirection == "inactive"}
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        except Exception as exc:  # aiortc checks the SDP before it changes anything
            if self.closed:
                return
            raise InvalidRequest(f"the answer was refused: {str(exc)[:200]}", field="sdp") from None
        self.awaiting = None
        for kind in paused:
            publisher = self.publishers.get(kind)
            if publisher is not None and self.inbound[kind].currentDirection == "recvonly":
                # Sending again (camera back on): the keyframe its new subscribers asked for
                # while it was paused never came.
                publisher.request_keyframe("join")
        for slot in self.slots:
            slot.go_live()
        candidates, self._candidates = self._candidates, []
        for candidate in candidates:
            await self._add_candidate(candidate)
        if self.dirty:
            self.negotiate()

    async def add_candidate(self, data: dict[str, Any] | None) -> None:
        if data is None:
            candidate = None
        else:
            text = data["candidate"]
            if not text:  # an empty candidate string also means "no more candidates"
                candidate = None
            else:
                try:
                    candidate = candidate_from_sdp(text.removeprefix("candidate:"))
                except (AssertionError, ValueError, IndexError):
                    raise InvalidRequest("not an ICE candidate", field="candidate") from None
                candidate.sdpMid = data.get("sdpMid")
                candidate.sdpMLineIndex = data.get("sdpMLineIndex")
                if candidate.sdpMid is None and candidate.sdpMLineIndex is None:
                    candidate.sdpMLineIndex = 0  # bundled: every m-line shares one transport
        if self.pc.remoteDescription is None:
            if len(self._candidates) >= MAX_PENDING_CANDIDATES:
                raise TooLarge(f"at most {MAX_PENDING_CANDIDATES} candidates before the answer")
            self._candidates.append(candidate)
            return
        await self._add_candidate(candidate)

    async def _add_candidate(self, candidate: Any) -> None:
        with contextlib.suppress(Exception):  # one bad candidate must not end the peer
            await self.pc.addIceCandidate(candidate)

    # --- state and closing -----------------------------------------------------------------

    def set_muted(self, audio_muted: bool, video_muted: bool) -> bool:
        """True if that changed what the others were told."""
        muted = {"audio_muted": audio_muted, "video_muted": video_muted}
        changed, self.muted = muted != self.muted, muted
        return changed

    def view(self) -> dict[str, Any]:
        return {"user_id": self.user_id, **self.muted}

    def _on_connection_state(self) -> None:
        if self.pc.connectionState == "failed" and not self.closed:
            self.channel.close(1011, "media connection failed")

    def close_publishers(self) -> list[Publisher]:
        """End what this peer publishes; returns them so the room can unsubscribe the others."""
        publishers = list(self.publishers.values())
        self.publishers.clear()
        for publisher in publishers:
            publisher.close()
        return publishers

    async def close(self) -> None:
        """Stop forwarding to this peer and close its connection (after the room let go)."""
        if self.closed:
            return
        self.closed = True
        for slot in self.slots:
            slot.release()
        self.wanted.clear()
        self.close_publishers()
        await self.pc.close()
