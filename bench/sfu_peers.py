"""Processes and peers of bench/sfu.py.

- `Child`: a helper process of the run (the SFU worker, the MediaRelay baseline) pinned to one
  core, its output kept in a file, stopped with SIGTERM (then SIGKILL) at the end; what a
  process lost because it read its UDP sockets too slowly (`udp_drops`), and how much of a
  core other work took (`others_s`).
- `SfuPeer`: a group-call participant as a client is one: `call.join` on its FastSock socket,
  then the worker's protocol with the `call.sfu` reply's URL and token (docs/calls.md): join,
  answer each offer (its own tracks on the m-lines marked `send`), keep the offer's stream map
  to know whose track each m-line carries.
- `direct_pair`, `relay_publish`, `relay_subscribe`: the peer-to-peer reference path and the
  baseline's peers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from common import Client, Doc
from errors import BenchError
from processes import CLK_TCK, REPO, log_tail, proc_cpu_s, stop_process
from sfu_media import Clip, Inbox, Publisher, Samples
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from tests.sfu.media import connect

# As the web client: one transport for every m-line. aiortc's default (balanced) leaves the
# second and later video m-lines of a first offer on a transport that BUNDLE then discards.
PEER_CONFIG = RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
STEP_TIMEOUT_S = 30.0  # any one wait of a join (a failure detector on a loaded machine)


def pin(pid: int, core: int | None) -> None:
    """Every thread of `pid` onto `core` (threads started later inherit it)."""
    if core is None:
        return
    with contextlib.suppress(OSError):  # gone already: Child.check says why
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):  # a thread that just ended
                os.sched_setaffinity(int(task.name), {core})


class Child:
    """`argv` started in the repository with `env`, pinned to `core`, output in `log_path`."""

    def __init__(
        self, name: str, argv: list[str], env: Mapping[str, str], core: int | None, log_dir: Path
    ) -> None:
        self.name, self.argv, self.env, self.core = name, argv, dict(env), core
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=REPO,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        pin(self.proc.pid, self.core)  # still starting Python: no thread of its own yet

    def check(self) -> None:
        if self.proc is not None and (code := self.proc.poll()) is not None:
            raise BenchError(f"{self.name} exited with code {code}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        return log_tail(self.log_path, lines)

    def stop(self) -> None:
        stop_process(self.proc)


def others_s(core: int | None, pids: Iterable[int | None]) -> float:
    """CPU seconds `core` has spent running anything but `pids` (pinned there) since boot:
    subtract two readings for what other work took of it meanwhile. 0 without pinning."""
    if core is None:
        return 0.0
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            ticks = [int(x) for x in line.split()[1:]]
            busy = ticks[0] + ticks[1] + ticks[2] + ticks[7]  # user, nice, system, steal
            return busy / CLK_TCK - sum(proc_cpu_s(pid) or 0.0 for pid in pids)
    return 0.0


def udp_drops(pid: int | None) -> int:
    """Datagrams the kernel dropped because `pid`'s UDP sockets were full (it read too slowly)."""
    if pid is None:
        return 0
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                link = os.readlink(fd)
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
    drops = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()  # ... inode ref pointer drops
                if fields[9] in inodes:
                    drops += int(fields[-1])
    return drops


async def wait_http(child: Child, url: str, ready: str, timeout: float = 60.0) -> Doc:
    """Poll `url` until its JSON body has `ready` true; the body."""
    http = AsyncHTTPClient()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        child.check()
        with contextlib.suppress(OSError):
            response = await http.fetch(url, raise_error=False, request_timeout=5)
            body = json.loads(response.body or b"{}")
            if body.get(ready):
                return body
        await asyncio.sleep(0.2)
    raise BenchError(f"{child.name}: {url} not {ready} within {timeout} s:\n{child.log_tail()}")


# --- SFU participants ---------------------------------------------------------------------------


class SfuPeer:
    """One participant: publishes `publisher` (if any), receives everyone else's tracks."""

    def __init__(
        self,
        name: str,
        fastsock: Client,
        publisher: Publisher | None,
        publishers: Mapping[str, Publisher],  # by user id: whose track an m-line carries
        clips: dict[str, Clip],
        samples: Samples,
        *,
        decode: bool,
    ) -> None:
        self.name, self.fastsock, self.publisher = name, fastsock, publisher
        self.publishers = publishers
        self.pc = RTCPeerConnection(PEER_CONFIG)
        self.streams: dict[str, Doc] = {}  # mid -> {user_id, kind, send?}, of the last offer
        self.inbox = Inbox(self.pc, clips, samples, self._source, decode=decode)
        self.admission_s = 0.0  # call.join -> call.sfu
        self.joined_s = 0.0  # call.join -> the worker's `joined`
        self.errors: list[Doc] = []
        self._ws: WebSocketClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._joined = asyncio.Event()
        self._closed = False

    def _source(self, transceiver: Any) -> Publisher | None:
        user_id = self.streams.get(transceiver.mid or "", {}).get("user_id")
        return self.publishers.get(user_id or "")

    async def join(self, room_id: str) -> None:
        """`call.join` through FastSock, then join the worker it names."""
        self.inbox.joined = started = time.monotonic()
        ref = f"join-{self.name}-{started}"
        sent, answered, reply = await self.fastsock.request("call.join", {"room_id": room_id}, ref)
        if reply.get("type") != "call.sfu":
            raise BenchError(f"{self.name}: call.join -> {json.dumps(reply)[:300]}")
        self.admission_s = answered - sent
        data = reply["data"]
        self._ws = await asyncio.wait_for(websocket_connect(data["worker_url"]), STEP_TIMEOUT_S)
        self._reader = asyncio.ensure_future(self._read())
        publish = {"audio": self.publisher is not None, "video": self.publisher is not None}
        self._send("join", {"token": data["token"], "publish": publish})
        try:
            await asyncio.wait_for(self._joined.wait(), STEP_TIMEOUT_S)
        except TimeoutError:
            raise BenchError(f"{self.name}: not joined ({self._ws.close_code})") from None
        self.joined_s = time.monotonic() - started

    def _send(self, type_: str, data: Doc) -> None:
        assert self._ws is not None
        self._ws.write_message(json.dumps({"type": type_, "data": data}))

    async def _read(self) -> None:
        assert self._ws is not None
        while (message := await self._ws.read_message()) is not None:
            frame = json.loads(message)
            type_, data = frame.get("type"), frame.get("data") or {}
            if type_ == "offer":
                try:
                    await self._answer(data)
                except Exception as exc:  # reported with the figures (signaling errors)
                    self._error("answer_failed", repr(exc))
            elif type_ == "joined":
                self._joined.set()
            elif type_ == "error":
                self._error(data.get("code"), data.get("message"))
        self._error(self._ws.close_code, f"worker closed the socket: {self._ws.close_reason}")

    def _error(self, code: object, message: object) -> None:
        if not self._closed:  # not what our own leave caused
            at = round(time.monotonic() - self.inbox.joined, 3)
            self.errors.append({"peer": self.name, "code": code, "message": message, "at_s": at})

    async def _answer(self, offer: Doc) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(**offer["sdp"]))
        self.streams = offer["streams"]
        for transceiver in self.pc.getTransceivers():
            stream = self.streams.get(transceiver.mid or "")
            if stream is None or not stream.get("send"):
                continue
            track = self.publisher.track(stream["kind"]) if self.publisher else None
            if track is not None and transceiver.sender.track is not track:
                transceiver.sender.replaceTrack(track)
                track.bind(transceiver.sender)
            transceiver.direction = "sendonly" if track is not None else "inactive"
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        answer = {"type": "answer", "sdp": self.pc.localDescription.sdp}
        self._send("answer", {"revision": offer["revision"], "sdp": answer})

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._ws is not None:
            self._send("leave", {})
            self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
        await self.inbox.close()
        await self.pc.close()
        if self.publisher is not None:
            self.publisher.stop()


# --- the direct reference and the baseline's peers ----------------------------------------------


async def direct_pair(
    publisher: Publisher, clips: dict[str, Clip], samples: Samples
) -> tuple[RTCPeerConnection, RTCPeerConnection, Inbox]:
    """`publisher` straight to a decoding receiver in this process: the reference path."""
    sending = RTCPeerConnection(PEER_CONFIG)
    receiving = RTCPeerConnection(PEER_CONFIG)
    publisher.video.bind(sending.addTrack(publisher.video))
    sending.addTrack(publisher.audio)
    inbox = Inbox(receiving, clips, samples, lambda _: publisher, decode=True)
    await connect(sending, receiving)
    return sending, receiving, inbox


async def _relay_offer(url: str, room: str, pc: RTCPeerConnection) -> None:
    await pc.setLocalDescription(await pc.createOffer())
    body = {"room": room, "sdp": {"type": "offer", "sdp": pc.localDescription.sdp}}
    request = HTTPRequest(url, method="POST", body=json.dumps(body), request_timeout=STEP_TIMEOUT_S)
    response = await AsyncHTTPClient().fetch(request, raise_error=False)
    if response.code != 200:
        raise BenchError(f"{url} -> {response.code} {response.reason}")
    await pc.setRemoteDescription(RTCSessionDescription(**json.loads(response.body)))


async def relay_publish(base: str, room: str, publisher: Publisher) -> RTCPeerConnection:
    pc = RTCPeerConnection(PEER_CONFIG)
    publisher.video.bind(pc.addTrack(publisher.video))
    pc.addTrack(publisher.audio)
    await _relay_offer(base + "/publish", room, pc)
    return pc


async def relay_subscribe(
    base: str, room: str, publisher: Publisher, clips: dict[str, Clip], samples: Samples
) -> tuple[RTCPeerConnection, Inbox]:
    pc = RTCPeerConnection(PEER_CONFIG)
    for kind in ("audio", "video"):
        pc.addTransceiver(kind, direction="recvonly")
    inbox = Inbox(pc, clips, samples, lambda _: publisher, decode=True)
    await _relay_offer(base + "/subscribe", room, pc)
    return pc, inbox
