"""Test clients: real HTTP requests and real WebSocket connections against a running server."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

DEFAULT_TIMEOUT = 5.0
PASSWORD = "correct horse battery"


@dataclass
class User:
    id: str
    username: str
    access_token: str
    refresh_token: str


@dataclass
class Response:
    status: int
    body: Any
    headers: Any

    @property
    def error_code(self) -> str | None:
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return self.body["error"].get("code")
        return None


class Api:
    """HTTP client bound to one server."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.http = AsyncHTTPClient()

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        payload: bytes | None = raw
        if body is not None:
            payload = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        if payload is None and method in ("POST", "PUT", "PATCH"):
            payload = b""
        req = HTTPRequest(
            self.base + path,
            method=method,
            headers=hdrs,
            body=payload,
            allow_nonstandard_methods=True,
            request_timeout=20,
        )
        resp = await self.http.fetch(req, raise_error=False)
        text = resp.body.decode(errors="replace") if resp.body else ""  # downloads: any bytes
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = text
        return Response(resp.code, parsed, resp.headers)

    async def get(self, path: str, user: User | None = None, **kw: Any) -> Response:
        return await self.request("GET", path, token=user.access_token if user else None, **kw)

    async def post(self, path: str, body: Any = None, user: User | None = None, **kw: Any):
        return await self.request(
            "POST", path, body, token=user.access_token if user else None, **kw
        )

    async def patch(self, path: str, body: Any = None, user: User | None = None, **kw: Any):
        return await self.request(
            "PATCH", path, body, token=user.access_token if user else None, **kw
        )

    async def delete(self, path: str, user: User | None = None, **kw: Any) -> Response:
        return await self.request("DELETE", path, token=user.access_token if user else None, **kw)

    async def register(self, username: str | None = None, **extra: Any) -> User:
        name = username or "u" + uuid.uuid4().hex[:10]
        r = await self.post("/auth/register", {"username": name, "password": PASSWORD, **extra})
        assert r.status == 201, r.body
        return User(r.body["user"]["id"], name, r.body["access_token"], r.body["refresh_token"])

    async def group(self, owner: User, *members: User, private: bool = True) -> str:
        r = await self.post(
            "/rooms",
            {
                "name": "room " + uuid.uuid4().hex[:6],
                "member_ids": [m.id for m in members],
                "private": private,
            },
            owner,
        )
        assert r.status == 201, r.body
        return r.body["id"]

    async def send(self, user: User, room_id: str, text: str, cid: str | None = None) -> dict:
        r = await self.post(
            f"/rooms/{room_id}/messages",
            {"client_msg_id": cid or uuid.uuid4().hex, "text": text},
            user,
        )
        assert r.status in (200, 201), r.body
        return r.body

    async def ws(self, user: User, **auth: Any) -> Socket:
        sock = Socket(await websocket_connect(f"ws://127.0.0.1:{self.port}/ws"))
        await sock.send("auth", {"token": user.access_token, **auth})
        sock.ready = await sock.expect("ready")
        return sock


@dataclass
class Socket:
    """A WebSocket client that keeps every frame it receives, in order."""

    conn: WebSocketClientConnection
    frames: list[dict[str, Any]] = field(default_factory=list)
    cursor: int = 0
    seqs: list[int] = field(default_factory=list)
    ready: dict[str, Any] | None = None
    closed: bool = False

    async def send(self, type_: str, data: Any = None, ref: str | None = None) -> None:
        frame: dict[str, Any] = {"type": type_}
        if data is not None:
            frame["data"] = data
        if ref is not None:
            frame["ref"] = ref
        await self.conn.write_message(json.dumps(frame))

    async def send_raw(self, text: str | bytes) -> None:
        await self.conn.write_message(text, binary=isinstance(text, bytes))

    async def _read_one(self, timeout: float) -> dict[str, Any] | None:
        try:
            msg = await asyncio.wait_for(self.conn.read_message(), timeout)
        except TimeoutError:
            return None
        if msg is None:
            self.closed = True
            return None
        frame = json.loads(msg)
        self.frames.append(frame)
        if "seq" in frame:  # every frame but `ready`
            self.seqs.append(frame["seq"])
        return frame

    async def expect(
        self, type_: str, match: Any = None, timeout: float = DEFAULT_TIMEOUT
    ) -> dict[str, Any]:
        """The data of the next unconsumed frame of this type (matching `match`, a predicate
        on the whole frame); frames before it stay available to later `expect` calls."""
        deadline = time.monotonic() + timeout
        index = self.cursor
        while True:
            while index < len(self.frames):
                frame = self.frames[index]
                if frame.get("type") == type_ and (match is None or match(frame)):
                    self.frames.pop(index)
                    return frame.get("data", {}) | (
                        {"__ref": frame["ref"]} if "ref" in frame else {}
                    )
                index += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.closed:
                types = [f.get("type") for f in self.frames]
                raise AssertionError(f"no {type_} frame within {timeout}s; got {types}")
            await self._read_one(remaining)

    async def request(
        self, type_: str, data: Any = None, timeout: float = DEFAULT_TIMEOUT
    ) -> dict[str, Any]:
        """Send an event with a fresh ref; the whole frame answering it (`ack`, `error` or a
        specific reply), taken out of the kept frames."""
        ref = f"{type_}-{uuid.uuid4().hex[:8]}"
        await self.send(type_, data, ref)
        deadline = time.monotonic() + timeout
        while True:
            for index, frame in enumerate(self.frames):
                if frame.get("ref") == ref:
                    return self.frames.pop(index)
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.closed:
                raise AssertionError(f"no reply to {type_} within {timeout}s")
            await self._read_one(remaining)

    async def drain(self, quiet: float = 0.3) -> list[dict[str, Any]]:
        """Read until nothing arrives for `quiet` seconds; returns (and keeps) new frames."""
        start = len(self.frames)
        while not self.closed and await self._read_one(quiet) is not None:
            pass
        return self.frames[start:]

    async def assert_none(self, type_: str, quiet: float = 0.5) -> None:
        await self.drain(quiet)
        leaked = [f for f in self.frames if f.get("type") == type_]
        assert not leaked, f"unexpected {type_} frames: {leaked}"

    async def close_code(self, timeout: float = DEFAULT_TIMEOUT) -> int | None:
        deadline = time.monotonic() + timeout
        while not self.closed and time.monotonic() < deadline:
            await self._read_one(deadline - time.monotonic())
        return self.conn.close_code

    def close(self) -> None:
        self.conn.close()
