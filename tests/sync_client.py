"""A model chat client, as the browser client behaves: it keeps a local view of its rooms from
events, reconnects with `resume`, resyncs from the REST API when told to, and re-sends every
request that got no answer before its socket dropped. The reconnect tests compare its view
with the server's."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClientConnection, WebSocketClosedError, websocket_connect

from tests.support import Api, User

Doc = dict[str, Any]


@dataclass
class Outgoing:
    type: str
    data: Doc


@dataclass
class SyncClient:
    api: Api
    user: User
    messages: dict[str, Doc] = field(default_factory=dict)
    read_pointers: dict[tuple[str, str], str] = field(default_factory=dict)
    rooms: set[str] = field(default_factory=set)
    # Per room: the version up to which this client has every change, from changed_after pages.
    synced_version: dict[str, int] = field(default_factory=dict)
    outbox: dict[str, Outgoing] = field(default_factory=dict)  # ref -> request awaiting reply
    accepted: set[str] = field(default_factory=set)  # client_msg_ids the server acked
    session: str | None = None
    last_seq: int = 0
    sequenced: list[str] = field(default_factory=list)  # the type of each frame with a seq
    resumes: list[str | None] = field(default_factory=list)  # each ready's resume outcome
    seq_errors: list[str] = field(default_factory=list)
    conn: WebSocketClientConnection | None = None
    _pump: asyncio.Task[None] | None = None
    _resyncs: set[asyncio.Task[None]] = field(default_factory=set)  # told to by the server

    # --- connection ---------------------------------------------------------------------

    async def connect(self) -> None:
        self.conn = await websocket_connect(f"ws://127.0.0.1:{self.api.port}/ws")
        auth: Doc = {"token": self.user.access_token}
        if self.session is not None:
            auth["resume"] = {"session": self.session, "last_seq": self.last_seq}
        await self.conn.write_message(json.dumps({"type": "auth", "data": auth}))
        ready = json.loads(await asyncio.wait_for(self.conn.read_message(), 10))
        assert ready["type"] == "ready", ready
        outcome = ready["data"]["resume"]
        self.resumes.append(outcome)
        if outcome != "ok":
            self.session, self.last_seq, self.sequenced = ready["data"]["session"], 0, []
        self._pump = asyncio.ensure_future(self._read(self.conn))
        if outcome == "resync":
            await self.resync()
        for ref, out in list(self.outbox.items()):  # no answer came: ask again
            await self._write(out.type, out.data, ref)

    def drop(self) -> None:
        """Lose the connection abruptly, the way a network failure does."""
        if self.conn is not None and self.conn.protocol is not None:
            self.conn.protocol.stream.close()

    async def reconnect(self) -> None:
        self.drop()
        if self._pump is not None:
            await asyncio.wait([self._pump], timeout=5)
        await self.connect()

    async def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        if self._pump is not None:
            await asyncio.wait([self._pump], timeout=5)

    # --- requests -----------------------------------------------------------------------

    async def request(self, type_: str, data: Doc) -> None:
        """Send a request; it stays in the outbox until its reply (ack or error) arrives."""
        ref = uuid.uuid4().hex[:12]
        self.outbox[ref] = Outgoing(type_, data)
        await self._write(type_, data, ref)

    async def send_text(self, room_id: str, text: str) -> str:
        cid = uuid.uuid4().hex
        await self.request("message.send", {"room_id": room_id, "client_msg_id": cid, "text": text})
        return cid

    async def _write(self, type_: str, data: Doc, ref: str) -> None:
        if self.conn is None:
            return
        with contextlib.suppress(WebSocketClosedError, StreamClosedError):
            # Closed under us: the request stays in the outbox and goes again on reconnect.
            await self.conn.write_message(json.dumps({"type": type_, "data": data, "ref": ref}))

    # --- receiving ----------------------------------------------------------------------

    async def _read(self, conn: WebSocketClientConnection) -> None:
        while (raw := await conn.read_message()) is not None:
            frame = json.loads(raw)
            seq = frame.get("seq")
            if seq is not None:
                if seq != self.last_seq + 1:
                    self.seq_errors.append(f"seq {seq} after {self.last_seq}")
                self.last_seq = seq
                self.sequenced.append(frame["type"])
            self.apply(frame)

    def apply(self, frame: Doc) -> None:
        type_, data, ref = frame["type"], frame.get("data", {}), frame.get("ref")
        if ref is not None and type_ in ("ack", "message.ack", "error"):
            out = self.outbox.pop(ref, None)
            if type_ == "error" and out is not None and data["code"] == "rate_limited":
                self.outbox[ref] = out  # try again later
        if type_ == "message.ack":
            self.accepted.add(data["client_msg_id"])
            self._upsert(data["message"])
        elif type_ in ("message.new", "message.updated"):
            self._upsert(data["message"])
        elif type_ == "message.deleted":
            msg = self.messages.get(data["message_id"])
            if msg is not None:
                msg.update(deleted=True, text="", reactions={}, attachments=[])
        elif type_ == "reaction.updated":
            msg = self.messages.get(data["message_id"])
            if msg is not None and data["version"] >= msg["version"]:
                msg.update(reactions=data["reactions"], version=data["version"])
        elif type_ == "message.read":
            key = (data["room_id"], data["user_id"])
            self.read_pointers[key] = max(self.read_pointers.get(key, ""), data["message_id"])
        elif type_ in ("room.created", "room.member_added"):
            self.rooms.add(data["room"]["id"])
        elif type_ == "room.member_removed" and data["user_id"] == self.user.id:
            self.rooms.discard(data["room"]["id"])
        elif type_ == "resync":  # a node was lost: refetch, as after a resync on reconnect
            self._resyncs.add(task := asyncio.ensure_future(self.resync()))
            task.add_done_callback(self._resyncs.discard)
        elif type_ == "ack" and "last_read_message_id" in data:
            key = (data["room_id"], self.user.id)
            self.read_pointers[key] = max(
                self.read_pointers.get(key, ""), data["last_read_message_id"] or ""
            )

    def _upsert(self, message: Doc) -> None:
        known = self.messages.get(message["id"])
        if known is None or message["version"] >= known["version"]:
            self.messages[message["id"]] = dict(message)

    # --- resync -------------------------------------------------------------------------

    async def resync(self) -> None:
        """Refetch what changed while away: rooms, every change since the last synced version,
        and read pointers."""
        rooms = (await self.api.get("/rooms", self.user)).body["rooms"]
        self.rooms = {r["id"] for r in rooms}
        for room in rooms:
            since = self.synced_version.get(room["id"], 0)
            while True:
                path = f"/history/room/{room['id']}?changed_after={since}&limit=100"
                page = (await self.api.get(path, self.user)).body
                for message in page["messages"]:
                    self._upsert(message)
                    since = max(since, message["version"])
                if not page["has_more"]:
                    break
            self.synced_version[room["id"]] = since
            detail = (await self.api.get(f"/rooms/{room['id']}", self.user)).body
            for member in detail["members"]:
                if member["last_read_message_id"]:
                    self.read_pointers[(room["id"], member["user_id"])] = member[
                        "last_read_message_id"
                    ]
        self.messages = {k: m for k, m in self.messages.items() if m["room_id"] in self.rooms}

    def view(self, room_id: str) -> list[tuple[str, str, bool, Doc]]:
        """(id, text, deleted, reactions) of the room's messages, oldest first."""
        msgs = sorted(
            (m for m in self.messages.values() if m["room_id"] == room_id), key=lambda m: m["id"]
        )
        return [(m["id"], m["text"], m["deleted"], m["reactions"]) for m in msgs]
