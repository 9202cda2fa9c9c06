"""alice's socket for fuzzing, and one exchange on it: a fuzzed frame, then a request queued
behind it and a ping, so that once both are answered every reply to the frame is in."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from fastsock.realtime.socket import MAX_FRAME_BYTES
from tests.fuzz.world import World
from tests.support import Socket

REPLY_TIMEOUT = 15.0  # generous: a loaded 2-core CI machine; a live server answers in ms

Frame = dict[str, Any]


@dataclass
class FuzzSocket:
    """alice's socket, opened on first use and again after it was closed."""

    world: World
    sock: Socket | None = None
    refs: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text("FuzzSocket()")  # how hypothesis prints an argument

    def ref(self) -> str | int:
        """A ref no earlier frame used, a string or an integer in turn."""
        n = next(self.refs)
        return n if n % 2 else f"r{n}"

    async def open(self) -> Socket:
        if self.sock is None:
            self.sock = await self.world.api.ws(self.world.alice)
        return self.sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    async def exchange(self, frame: str | bytes) -> list[Frame]:
        """Send `frame`; return every frame the server sent until a request queued behind it
        and a ping were both answered. A frame over the size limit is answered and then
        the socket is replaced (a second one would close it, by design)."""
        sock = await self.open()
        await sock.send_raw(frame)
        barrier, ping = self.ref(), self.ref()
        room = self.world.values["group"]
        await sock.send("typing", {"room_id": room, "active": False}, ref=barrier)
        await sock.send("ping", ref=ping)
        for type_, ref in (("ack", barrier), ("pong", ping)):
            if sock.closed:
                break
            try:
                await sock.expect(type_, lambda f, r=ref: same(f.get("ref"), r), REPLY_TIMEOUT)
            except AssertionError:
                if not sock.closed:
                    raise
        if sock.closed:
            self.sock = None
            raise AssertionError(
                f"the socket was closed ({sock.conn.close_code} {sock.conn.close_reason}) "
                f"after {brief_frame(frame)}; frames: {sock.frames}"
            )
        frames, sock.frames[:] = list(sock.frames), []
        if size(frame) > MAX_FRAME_BYTES:
            self.close()
        return frames


def same(a: Any, b: Any) -> bool:
    """Equal refs: the same type too (1 is not "1", and True is not 1)."""
    return type(a) is type(b) and a == b


def size(frame: str | bytes) -> int:
    return len(frame if isinstance(frame, bytes) else frame.encode("utf-8", "surrogatepass"))


def brief_frame(frame: str | bytes, limit: int = 300) -> str:
    text = repr(frame)
    return text if len(text) <= limit else f"{text[:limit]}... ({size(frame)} bytes)"


def encode(type_: Any, data: Any, ref: Any) -> str:
    """A frame as JSON text (lone surrogates as \\ud800 escapes)."""
    return json.dumps({"type": type_, "data": data, "ref": ref})
