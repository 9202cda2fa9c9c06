"""The bare in-memory Tornado fan-out server that bench/fanout.py measures FastSock against.

It speaks just enough of FastSock's WebSocket protocol for the benchmark's clients, with the
same JSON shapes (so the same frame sizes): `auth {token}` -> `ready` (the token is taken as the
user id: there are no accounts), `message.send {room_id, client_msg_id, text}` -> `message.ack`
to the sender (with its `ref`) and `message.new` to every authenticated socket (one implicit
room), `ping` -> `pong`. A message is serialised once; each socket only gets its own `seq`
spliced in, as FastSock does. Nothing is stored, checked or kept for a resume: this is the
ceiling a chat server's fan-out can reach in one Tornado process. See bench/README.md.

    .venv/bin/python bench/reference_server.py --port 8899
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import time
from typing import Any

from tornado.web import Application, RequestHandler
from tornado.websocket import WebSocketClosedError, WebSocketHandler

SOCKETS: set[Reference] = set()
IDS = itertools.count(int(time.time()) << 64)  # 24-hex ids that grow, like ObjectIds
VERSIONS = itertools.count(1)  # the room's change versions


def dumps(type_: str, data: dict[str, Any]) -> bytes:
    return json.dumps({"type": type_, "data": data}, separators=(",", ":")).encode()


def iso_now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


class Reference(WebSocketHandler):
    user_id = ""
    seq = 0

    def check_origin(self, origin: str) -> bool:
        return True

    def open(self) -> None:
        self.set_nodelay(True)

    def on_close(self) -> None:
        SOCKETS.discard(self)

    def send(self, payload: bytes, ref: Any = None, numbered: bool = True) -> None:
        head = b"{"
        if numbered:
            self.seq += 1
            head += b'"seq":%d,' % self.seq
        if ref is not None:
            head += b'"ref":%s,' % json.dumps(ref).encode()
        with contextlib.suppress(WebSocketClosedError):
            self.write_message(head + payload[1:])

    def on_message(self, raw: str | bytes) -> None:
        frame = json.loads(raw)
        type_, data, ref = frame["type"], frame.get("data") or {}, frame.get("ref")
        if type_ == "auth":
            self.user_id = str(data["token"])
            user = {"id": self.user_id, "username": self.user_id, "display_name": self.user_id,
                    "avatar_url": None, "status_message": "", "online": True,
                    "created_at": iso_now()}  # fmt: skip
            self.send(dumps("ready", {"user": user, "session": "ref", "resume": None}), None, False)
            SOCKETS.add(self)
        elif type_ == "ping":
            self.send(dumps("pong", {}), ref, False)
        elif type_ == "message.send":
            at = iso_now()
            message = {"id": f"{next(IDS):024x}", "room_id": data["room_id"],
                       "sender_id": self.user_id, "type": "text", "text": data["text"],
                       "attachments": [], "client_msg_id": data["client_msg_id"],
                       "created_at": at, "edited_at": None, "deleted": False,
                       "reactions": {}, "version": next(VERSIONS)}  # fmt: skip
            ack = {"client_msg_id": data["client_msg_id"], "message": message}
            self.send(dumps("message.ack", ack), ref)
            payload = dumps("message.new", {"message": message})
            for socket in list(SOCKETS):
                socket.send(payload)


class Ready(RequestHandler):
    def get(self) -> None:
        self.write({"ready": True})


async def serve(port: int) -> None:
    Application([("/ws", Reference), ("/readyz", Ready)]).listen(port, "127.0.0.1")
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8899)
    asyncio.run(serve(parser.parse_args().port))
