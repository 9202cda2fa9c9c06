"""The transcoding baseline for bench/sfu.py: aiortc's MediaRelay in a process of its own.

What an SFU built on aiortc's public API does: each publisher's tracks are decoded once, and
every subscriber's sender re-encodes them (VP8 and Opus, one encoder per subscriber track).
Otherwise the same as a worker: one process and event loop, ICE on the given addresses and
ports (sfu.ice), no STUN. Subscribers get `relay.subscribe(track, buffered=False)`: the latest
frame only, so a subscriber that falls behind skips frames instead of queueing them without
bound (MediaRelay's default).

    python bench/sfu_relay.py --port 8899 [--rtc-ports 34000-34999]

HTTP on 127.0.0.1, JSON bodies:
    GET  /healthz                              -> {"ok": true, "publishers": n, "subscribers": n}
    POST /publish   {room, sdp: {type, sdp}}   -> {type, sdp}  (the room's one publisher)
    POST /subscribe {room, sdp: {type, sdp}}   -> {type, sdp}  (offer recvonly audio + video)
SIGTERM closes every peer connection and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from tornado.web import Application, HTTPError, RequestHandler

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # sfu.ice

from sfu.ice import configure_ice, rtc_configuration

TRACK_WAIT_S = 10.0  # a subscriber waits this long for the room's publisher tracks


class Relay:
    def __init__(self) -> None:
        self.relay = MediaRelay()
        self.pcs: list[RTCPeerConnection] = []
        self.sources: dict[str, dict[str, MediaStreamTrack]] = {}  # room -> kind -> track
        self.subscribers = 0
        self.changed = asyncio.Event()

    async def publish(self, room: str, offer: RTCSessionDescription) -> RTCSessionDescription:
        pc = self._pc()
        tracks = self.sources.setdefault(room, {})

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            tracks[track.kind] = track
            self.changed.set()

        await pc.setRemoteDescription(offer)
        await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription

    async def subscribe(self, room: str, offer: RTCSessionDescription) -> RTCSessionDescription:
        tracks = await self._tracks(room)
        pc = self._pc()
        await pc.setRemoteDescription(offer)
        for transceiver in pc.getTransceivers():
            source = tracks[transceiver.kind]
            transceiver.sender.replaceTrack(self.relay.subscribe(source, buffered=False))
            transceiver.direction = "sendonly"
        await pc.setLocalDescription(await pc.createAnswer())
        self.subscribers += 1
        return pc.localDescription

    async def _tracks(self, room: str) -> dict[str, MediaStreamTrack]:
        async def both() -> dict[str, MediaStreamTrack]:
            while len(self.sources.get(room, {})) < 2:
                self.changed.clear()
                await self.changed.wait()
            return self.sources[room]

        try:
            return await asyncio.wait_for(both(), TRACK_WAIT_S)
        except TimeoutError:
            raise HTTPError(409, reason="no publisher with audio and video in this room") from None

    def _pc(self) -> RTCPeerConnection:
        pc = RTCPeerConnection(rtc_configuration())
        self.pcs.append(pc)
        return pc

    async def close(self) -> None:
        await asyncio.gather(*(pc.close() for pc in self.pcs), return_exceptions=True)


class _Handler(RequestHandler):
    def initialize(self, relay: Relay) -> None:
        self.relay = relay

    def offer(self) -> tuple[str, RTCSessionDescription]:
        try:
            body = json.loads(self.request.body)
            return str(body["room"]), RTCSessionDescription(**body["sdp"])
        except (ValueError, KeyError, TypeError):
            raise HTTPError(400, reason="expected {room, sdp: {type, sdp}}") from None

    def answer(self, description: RTCSessionDescription) -> None:
        self.finish({"type": description.type, "sdp": description.sdp})


class Health(_Handler):
    def get(self) -> None:
        publishers = sum(len(t) == 2 for t in self.relay.sources.values())
        self.finish({"ok": True, "publishers": publishers, "subscribers": self.relay.subscribers})


class Publish(_Handler):
    async def post(self) -> None:
        self.answer(await self.relay.publish(*self.offer()))


class Subscribe(_Handler):
    async def post(self) -> None:
        self.answer(await self.relay.subscribe(*self.offer()))


def port_range(raw: str) -> tuple[int, int]:
    low, _, high = raw.partition("-")
    return int(low), int(high or low)


async def serve(args: argparse.Namespace) -> None:
    low, high = args.rtc_ports
    configure_ice(ips=("127.0.0.1",), public_ip=None, min_port=low, max_port=high)
    relay = Relay()
    routes: list[Any] = [
        (r"/healthz", Health, {"relay": relay}),
        (r"/publish", Publish, {"relay": relay}),
        (r"/subscribe", Subscribe, {"relay": relay}),
    ]
    server = Application(routes).listen(args.port, "127.0.0.1")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.stop()
    await asyncio.wait_for(relay.close(), 10)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--rtc-ports", type=port_range, default=(34000, 34999), help="LOW-HIGH")
    asyncio.run(serve(p.parse_args()))


if __name__ == "__main__":
    main()
