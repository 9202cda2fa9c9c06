"""POST /uploads (streamed, raw or multipart), GET /uploads/{id}[/thumbnail]: limits, content
sniffing, images, downloads with ranges, access control, storage failures, rate limit, metrics.
Every upload/download test runs on both storage backends (local disk and moto's S3)."""

from __future__ import annotations

import asyncio
import json
import re
import select
import socket
import struct
import time
import uuid
import zipfile
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from io import BytesIO
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from bson import ObjectId
from PIL import ExifTags, Image
from PIL.PngImagePlugin import PngInfo
from tornado.httpclient import AsyncHTTPClient, HTTPRequest, HTTPResponse

from fastsock.app import Server
from fastsock.config import ConfigError
from fastsock.store.sqlite.engine import InUse
from tests.conftest import RELAXED, BlobWorld, make_settings
from tests.support import Api, Response, User

MiB = 1024 * 1024
SECRET = "SpyCamCorp-4711"  # planted in image metadata; must never come back out


# --- samples -----------------------------------------------------------------------------------


def image_bytes(fmt: str, size: tuple[int, int] = (64, 48), **save: Any) -> bytes:
    im = Image.new("RGB", size, (200, 30, 30))
    for x in range(0, size[0], 4):  # some structure, so encoders do real work
        im.putpixel((x, x % size[1]), (10, 250, 10))
    buf = BytesIO()
    im.save(buf, fmt, **save)
    return buf.getvalue()


def pdf_bytes() -> bytes:
    return (
        b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
        b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n"
        b"trailer << /Root 1 0 R >>\n%%EOF\n"
    )


def zip_bytes() -> bytes:
    buf = BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("hello.txt", "hello from a zip")
    return buf.getvalue()


def mp4_bytes(extra: int = 200) -> bytes:
    head = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
    return head + struct.pack(">I", 8 + extra) + b"mdat" + bytes(range(256))[:extra]


SAMPLES: dict[str, tuple[Callable[[], bytes], str, str]] = {
    # label: (make bytes, declared type, detected type)
    "png": (lambda: image_bytes("PNG"), "image/png", "image/png"),
    "jpeg": (lambda: image_bytes("JPEG"), "image/jpeg", "image/jpeg"),
    "gif": (lambda: image_bytes("GIF"), "image/gif", "image/gif"),
    "webp": (lambda: image_bytes("WEBP"), "image/webp", "image/webp"),
    "pdf": (pdf_bytes, "application/pdf", "application/pdf"),
    "text": (
        lambda: "Grüße, naïve café — ünïcödé text\nline two\n".encode(),
        "text/plain; charset=utf-8",
        "text/plain",
    ),
    "zip": (zip_bytes, "application/zip", "application/zip"),
    "mp3": (
        lambda: b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x64" + bytes(400),
        "audio/mpeg",
        "audio/mpeg",
    ),
    "ogg": (
        lambda: b"OggS\x00\x02" + bytes(20) + b"\x01vorbis" + bytes(100),
        "audio/ogg",
        "audio/ogg",
    ),
    "mp4": (mp4_bytes, "video/mp4", "video/mp4"),
    "webm": (
        lambda: (
            b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81\x04"
            b"\x42\xf3\x81\x08\x42\x82\x84webm\x42\x87\x81\x04\x42\x85\x81\x02" + bytes(100)
        ),
        "video/webm",
        "video/webm",
    ),
}
IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}


def exif_with_secrets(orientation: int | None = None) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = SECRET
    exif[ExifTags.Base.Model] = "Model-" + SECRET
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.IFD.GPSInfo] = {
        ExifTags.GPS.GPSLatitudeRef: "N",
        ExifTags.GPS.GPSLatitude: (52.0, 31.0, 12.0),
        ExifTags.GPS.GPSLongitudeRef: "E",
        ExifTags.GPS.GPSLongitude: (13.0, 24.0, 36.0),
    }
    return exif


def png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit greyscale PNG of huge declared size whose pixels compress to almost nothing."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    row = bytes(1 + (width + 7) // 8)  # filter byte + packed pixels, all zero
    comp = zlib.compressobj(9)
    rows_per_call = 200
    idat = b"".join(comp.compress(row * rows_per_call) for _ in range(height // rows_per_call))
    idat += comp.compress(row * (height % rows_per_call)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def multipart(
    parts: Iterable[tuple[str, str | None, str | None, bytes]],
    boundary: str = "----FastSockBoundary7MA4YWxkTrZu0gW",
) -> tuple[bytes, str]:
    """(body, content type) of a multipart form; parts are (name, filename, type, data)."""
    out = b""
    for name, filename, ctype, data in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
        if ctype is not None:
            out += f"Content-Type: {ctype}\r\n".encode()
        out += b"\r\n" + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, f"multipart/form-data; boundary={boundary}"


# --- clients -----------------------------------------------------------------------------------


async def upload(
    api: Api,
    user: User | None,
    data: bytes,
    content_type: str,
    filename: str | None = None,
) -> Response:
    path = "/uploads" + (f"?{urlencode({'filename': filename})}" if filename is not None else "")
    return await api.request(
        "POST",
        path,
        raw=data,
        token=user.access_token if user else None,
        headers={"Content-Type": content_type},
    )


async def upload_ok(api: Api, user: User, label: str, filename: str | None = None) -> dict:
    make, declared, _ = SAMPLES[label]
    r = await upload(api, user, make(), declared, filename or f"sample.{label}")
    assert r.status == 201, r.body
    return r.body


async def fetch(
    api: Api, path: str, user: User | None = None, headers: dict[str, str] | None = None
) -> HTTPResponse:
    """A GET whose body stays bytes (downloads are binary)."""
    hdrs = dict(headers or {})
    if user is not None:
        hdrs["Authorization"] = f"Bearer {user.access_token}"
    request = HTTPRequest(f"{api.base}{path}", headers=hdrs, request_timeout=15)
    return await AsyncHTTPClient().fetch(request, raise_error=False)


def error_code(resp: HTTPResponse) -> str | None:
    try:
        return json.loads(resp.body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


async def upload_count(server: Server) -> int:
    assert server.ctx is not None
    return await server.ctx.store.transfer.count("uploads")


async def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.05)
    return check()


async def assert_nothing_kept(blob_world: BlobWorld, server: Server | None = None) -> None:
    assert await wait_until(lambda: not blob_world.spool_files()), blob_world.spool_files()
    assert await asyncio.to_thread(blob_world.stored_keys) == set()
    assert await upload_count(server or blob_world.server) == 0


def metric(text: str, name: str, labels: str = "") -> float:
    """The value of one sample in a Prometheus text exposition (0 when absent)."""
    pattern = re.escape(name + (f"{{{labels}}}" if labels else "")) + r" ([0-9.e+-]+)$"
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


@asynccontextmanager
async def variant(blob_world: BlobWorld, **overrides: Any) -> AsyncIterator[tuple[Server, Api]]:
    """A second server on the same storage as `blob_world`, with other settings (and a database
    of its own: an embedded database serves one server)."""
    settings = blob_world.settings
    own = {"data_dir": settings.data_dir / "variant", "upload_dir": settings.uploads_path}
    server = Server(replace(settings, port=0, **own, **overrides))
    await server.start()
    try:
        yield server, Api(server.port)
    finally:
        await server.stop()


# --- raw HTTP for streaming (a thread, so the server keeps running on the event loop) ---------


@dataclass
class Exchange:
    status: int
    body: Any
    body_bytes_sent: int  # request body bytes the kernel accepted before the answer
    finished_sending: bool  # did the client get to send the whole request?


def _parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes] | None:
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def _complete(raw: bytes) -> bool:
    parsed = _parse_response(raw)
    if parsed is None:
        return False
    _, headers, body = parsed
    return len(body) >= int(headers.get("content-length", "0"))


def raw_post(port: int, head: bytes, frames: Iterable[bytes], timeout: float = 20.0) -> Exchange:
    """Send `head` then the body `frames` while watching for an answer; stop sending as soon as
    a complete response has arrived (or the server hung up)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)  # little kernel buffering
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    sock.sendall(head)
    sock.setblocking(False)
    frames_iter = iter(frames)
    pending, sent, finished, broken, response = b"", 0, False, False, b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not _complete(response):
            writing = not finished and not broken
            readable, writable, _ = select.select([sock], [sock] if writing else [], [], 0.2)
            if readable:
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    break
                if not data:
                    break
                response += data
                continue  # always prefer reading what the server says
            if writable:
                if not pending:
                    nxt = next(frames_iter, None)
                    if nxt is None:
                        finished = True
                        continue
                    pending = nxt
                try:
                    n = sock.send(pending)
                except (BrokenPipeError, ConnectionResetError):
                    broken = True
                    continue
                sent += n
                pending = pending[n:]
    finally:
        sock.close()
    parsed = _parse_response(response)
    assert parsed is not None, f"no HTTP response (sent {sent} bytes): {response[:200]!r}"
    status, _, body = parsed
    try:
        decoded: Any = json.loads(body)
    except ValueError:
        decoded = body
    return Exchange(status, decoded, sent, finished)


def chunked(pieces: Iterable[bytes]) -> Iterable[bytes]:
    for piece in pieces:
        yield b"%x\r\n" % len(piece) + piece + b"\r\n"
    yield b"0\r\n\r\n"


def post_head(user: User, headers: dict[str, str], path: str = "/uploads") -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1",
        f"Authorization: Bearer {user.access_token}",
    ]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# --- authentication and size ---------------------------------------------------------------------


async def test_unauthenticated_upload_is_refused_and_nothing_is_stored(
    blob_world: BlobWorld,
) -> None:
    api = blob_world.api
    data = image_bytes("PNG")
    r = await upload(api, None, data, "image/png", "a.png")
    assert r.status == 401 and r.error_code == "unauthenticated"
    r = await api.request(
        "POST",
        "/uploads?filename=a.png",
        raw=data,
        headers={"Content-Type": "image/png", "Authorization": "Bearer not-a-token"},
    )
    assert r.status == 401 and r.error_code == "unauthenticated"
    await assert_nothing_kept(blob_world)
    # Downloads need a token too.
    alice = await api.register()
    body = await upload_ok(api, alice, "png")
    assert (await fetch(api, body["url"])).code == 401
    assert (await fetch(api, body["thumbnail_url"])).code == 401


async def test_declared_length_over_the_limit_is_refused_before_the_body(
    blob_world: BlobWorld,
) -> None:
    async with variant(blob_world, max_upload_bytes=MiB) as (server, api):
        alice = await api.register()
        head = post_head(
            alice,
            {"Content-Type": "text/plain", "Content-Length": str(50 * MiB)},
            "/uploads?filename=big.txt",
        )
        started = time.monotonic()
        # No body byte is sent at all: the answer must come from the headers alone.
        ex = await asyncio.to_thread(raw_post, server.port, head, [])
        assert time.monotonic() - started < 5
        assert ex.status == 413 and ex.body["error"]["code"] == "too_large"
        await assert_nothing_kept(blob_world, server)
        metrics = (await api.get("/metrics")).body
        assert metric(metrics, "fastsock_upload_refusals_total", 'reason="too_large"') == 1


async def test_a_content_length_int_cannot_read_is_refused_not_a_500(
    blob_world: BlobWorld,
) -> None:
    """The handler reads Content-Length before tornado checks it. "²" (one byte, \\xb2, in the
    Latin-1 tornado decodes headers with) passes str.isdigit and fails int(); so does a number
    of more digits than int() converts. Neither may end in a 500."""
    async with variant(blob_world, max_upload_bytes=MiB) as (server, api):
        alice = await api.register()

        def post(length: bytes) -> Exchange:
            head = post_head(alice, {"Content-Type": "text/plain", "Content-Length": "N"})
            head = head.replace(b"Content-Length: N", b"Content-Length: " + length)
            return raw_post(server.port, head, [b"hello"])

        ex = await asyncio.to_thread(post, b"\xb2")
        assert ex.status == 400, ex.body  # tornado refuses what is no length
        ex = await asyncio.to_thread(post, b"9" * 5000)
        assert ex.status == 413 and ex.body["error"]["code"] == "too_large", ex.body
        await assert_nothing_kept(blob_world, server)
        ok = await upload(api, alice, b"hello\n", "text/plain", "ok.txt")
        assert ok.status == 201, ok.body


@pytest.mark.parametrize("form", ["raw", "multipart"])
async def test_streamed_body_over_the_limit_is_cut_off_early(
    blob_world: BlobWorld, form: str
) -> None:
    total = 24 * MiB
    piece = b"a" * (64 * 1024)
    async with variant(blob_world, max_upload_bytes=MiB) as (server, api):
        alice = await api.register()
        if form == "raw":
            headers = {"Content-Type": "text/plain", "Transfer-Encoding": "chunked"}
            prefix, suffix, path = b"", b"", "/uploads?filename=big.txt"
        else:
            boundary = "b0undary" + uuid.uuid4().hex
            headers = {
                "Content-Type": f"multipart/form-data; boundary={boundary}",
                "Transfer-Encoding": "chunked",
            }
            prefix = (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                f'filename="big.txt"\r\nContent-Type: text/plain\r\n\r\n'
            ).encode()
            suffix, path = f"\r\n--{boundary}--\r\n".encode(), "/uploads"
        pieces = [prefix, *([piece] * (total // len(piece))), suffix]
        frames = chunked(p for p in pieces if p)
        ex = await asyncio.to_thread(raw_post, server.port, post_head(alice, headers, path), frames)
        assert ex.status == 413, ex.body
        assert ex.body["error"]["code"] == "too_large"
        # The answer came while the client was still sending: the server did not read on.
        assert not ex.finished_sending
        assert ex.body_bytes_sent < total // 2, ex.body_bytes_sent
        await assert_nothing_kept(blob_world, server)
        # The server is fine afterwards: a small upload from the same user still works.
        ok = await upload(api, alice, b"small and fine\n", "text/plain", "ok.txt")
        assert ok.status == 201, ok.body
        assert await upload_count(server) == 1


async def test_exactly_the_limit_is_accepted_one_byte_more_is_not(blob_world: BlobWorld) -> None:
    limit = 256 * 1024
    async with variant(blob_world, max_upload_bytes=limit) as (server, api):
        alice = await api.register()
        r = await upload(api, alice, b"x" * limit, "text/plain", "fits.txt")
        assert r.status == 201 and r.body["size"] == limit, r.body
        r = await upload(api, alice, b"x" * (limit + 1), "text/plain", "over.txt")
        assert r.status == 413 and r.error_code == "too_large"
        body, ctype = multipart([("file", "over.txt", "text/plain", b"y" * (limit + 1))])
        r = await upload(api, alice, body, ctype)
        assert r.status == 413 and r.error_code == "too_large"
        assert await upload_count(server) == 1
        assert await wait_until(lambda: not blob_world.spool_files())


# --- type validation -----------------------------------------------------------------------------


SPOOFS: list[tuple[str, bytes, str, str]] = [
    ("php as png", b"<?php system($_GET['c']); ?>\n", "image/png", "shell.png"),
    (
        "html as png",
        b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>",
        "image/png",
        "page.png",
    ),
    ("html as text", b"<html><script>alert(1)</script></html>", "text/plain", "x.txt"),
    ("html as octet", b"  <script>alert(1)</script>", "application/octet-stream", "x.png"),
    (
        "svg",
        b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        "image/svg+xml",
        "x.svg",
    ),
    (
        "svg with xml prolog as png",
        b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>',
        "image/png",
        "x.png",
    ),
    ("png as jpeg", image_bytes("PNG"), "image/jpeg", "x.jpg"),
    ("jpeg as png", image_bytes("JPEG"), "image/png", "x.png"),
    ("pdf as text", pdf_bytes(), "text/plain", "x.txt"),
    ("png magic then php", b"\x89PNG\r\n\x1a\n<?php system('id'); ?>", "image/png", "x.png"),
    ("executable", b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff", "image/png", "x.png"),
    ("elf", b"\x7fELF\x02\x01\x01\x00" + bytes(64), "application/octet-stream", "x.bin"),
]


async def test_spoofed_and_unknown_types_are_refused(blob_world: BlobWorld) -> None:
    api = blob_world.api
    alice = await api.register()
    for label, data, declared, filename in SPOOFS:
        r = await upload(api, alice, data, declared, filename)
        assert r.status == 415 and r.error_code == "unsupported_type", (label, r.status, r.body)
        body, ctype = multipart([("file", filename, declared, data)])
        r = await upload(api, alice, body, ctype)
        assert r.status == 415 and r.error_code == "unsupported_type", (label, r.body)
    await assert_nothing_kept(blob_world)
    metrics = (await api.get("/metrics")).body
    refused = metric(metrics, "fastsock_upload_refusals_total", 'reason="unsupported_type"')
    assert refused == 2 * len(SPOOFS)
    assert metric(metrics, "fastsock_uploads_total") == 0


async def test_generic_declared_type_gets_the_detected_one(blob_world: BlobWorld) -> None:
    api = blob_world.api
    alice = await api.register()
    r = await upload(api, alice, pdf_bytes(), "application/octet-stream", "report.bin")
    assert r.status == 201, r.body
    assert r.body["content_type"] == "application/pdf"
    resp = await fetch(api, r.body["url"], alice)
    assert resp.code == 200 and resp.headers["Content-Type"] == "application/pdf"
    assert resp.body == pdf_bytes()


async def test_allowed_types_raw_uploads(blob_world: BlobWorld) -> None:
    api = blob_world.api
    alice = await api.register()
    for label, (make, declared, expected) in SAMPLES.items():
        data = make()
        r = await upload(api, alice, data, declared, f"my {label} file.{label}")
        assert r.status == 201, (label, r.body)
        view = r.body
        assert view["content_type"] == expected, label
        assert view["name"] == f"my {label} file.{label}"
        assert view["url"] == f"/uploads/{view['id']}"
        resp = await fetch(api, view["url"], alice)
        assert resp.code == 200, label
        assert resp.headers["Content-Type"] == expected
        assert view["size"] == len(resp.body) == int(resp.headers["Content-Length"])
        if expected in IMAGE_TYPES:
            assert {"width", "height", "thumbnail_url"} <= set(view), label
            assert (view["width"], view["height"]) == (64, 48)
        else:
            assert "thumbnail_url" not in view and "width" not in view, label
            assert resp.body == data, label  # non-images are stored exactly as sent
    assert len(await asyncio.to_thread(blob_world.stored_keys)) == len(SAMPLES) + len(IMAGE_TYPES)
    assert await upload_count(blob_world.server) == len(SAMPLES)
    assert await wait_until(lambda: not blob_world.spool_files())


async def test_multipart_uploads(blob_world: BlobWorld) -> None:
    api = blob_world.api
    alice = await api.register()
    png = image_bytes("PNG")
    body, ctype = multipart([("file", "picture.png", "image/png", png)])
    r = await upload(api, alice, body, ctype)
    assert r.status == 201, r.body
    assert (r.body["content_type"], r.body["name"]) == ("image/png", "picture.png")
    assert (r.body["width"], r.body["height"]) == (64, 48)

    # A text field first, and a file bigger than one read chunk that contains something that
    # looks like the start of the boundary: the content must come back byte for byte.
    boundary = "----FsB" + uuid.uuid4().hex
    tricky = f"\r\n--{boundary[:-3]}not-it\r\n".encode()
    text = (("line of text " * 7 + "\n").encode() * 2000)[:150_000]
    content = text[:70_000] + tricky + text[70_000:]
    body, ctype = multipart(
        [
            ("caption", None, None, b"a caption that is not the file"),
            ("file", "notes.txt", "text/plain", content),
            ("after", None, None, b"trailing field"),
        ],
        boundary,
    )
    r = await upload(api, alice, body, ctype)
    assert r.status == 201, r.body
    assert r.body["content_type"] == "text/plain" and r.body["name"] == "notes.txt"
    assert r.body["size"] == len(content)
    resp = await fetch(api, r.body["url"], alice)
    assert resp.body == content

    # Without a part named file, or with a broken body: 400, nothing stored.
    before = await upload_count(blob_world.server)
    body, ctype = multipart([("other", "x.txt", "text/plain", b"hello")])
    r = await upload(api, alice, body, ctype)
    assert r.status == 400 and r.error_code == "invalid_request"
    body, ctype = multipart([("file", "x.txt", "text/plain", b"hello")])
    r = await upload(api, alice, body[:-20], ctype)  # the closing boundary is missing
    assert r.status == 400 and r.error_code == "invalid_request"
    r = await upload(api, alice, body, "multipart/form-data")  # no boundary
    assert r.status == 400 and r.error_code == "invalid_request"
    assert await upload_count(blob_world.server) == before
    assert await wait_until(lambda: not blob_world.spool_files())


async def test_multipart_quoted_filename_may_contain_a_semicolon(blob_world: BlobWorld) -> None:
    """RFC 7578 / browsers: filename="report; final.pdf" is sent as is; the name is not cut."""
    alice = await blob_world.api.register()
    for name in ("report; final.pdf", "a=b; c.pdf"):
        body, ctype = multipart([("file", name, "application/pdf", pdf_bytes())])
        r = await upload(blob_world.api, alice, body, ctype)
        assert r.status == 201, r.body
        assert r.body["name"] == name


async def test_empty_file_is_refused(blob_world: BlobWorld) -> None:
    alice = await blob_world.api.register()
    r = await upload(blob_world.api, alice, b"", "text/plain", "empty.txt")
    assert r.status == 400 and r.error_code == "invalid_request"
    await assert_nothing_kept(blob_world)


async def test_filenames_are_sanitised(blob_world: BlobWorld) -> None:
    api = blob_world.api
    alice = await api.register()
    data = b"plain text content\n"
    raw_cases = {
        "../../x.txt": "x.txt",
        "..\\..\\windows\\evil.txt": "evil.txt",
        "/etc/passwd": "passwd",
        ".htaccess": "htaccess",
        'quo"te<a>|b*?.txt': None,
        "résumé 2024.txt": "résumé 2024.txt",
        "x" * 600 + ".txt": None,
    }
    for given, expected in raw_cases.items():
        r = await upload(api, alice, data, "text/plain", given)
        assert r.status == 201, r.body
        name = r.body["name"]
        if expected is not None:
            assert name == expected, (given, name)
        assert name and "/" not in name and "\\" not in name and not name.startswith(".")
        assert not set(name) & set('"<>|*?:'), name
        assert len(name) <= 255, len(name)
    # No name at all still gives a usable one.
    r = await upload(api, alice, data, "text/plain")
    assert r.status == 201 and r.body["name"]
    # Control characters can only arrive through a multipart header.
    body, ctype = multipart([("file", "a\x01b\x1bc\x7fd\t.txt", "text/plain", data)])
    r = await upload(api, alice, body, ctype)
    assert r.status == 201, r.body
    name = r.body["name"]
    assert not any(ord(c) < 32 or ord(c) == 127 for c in name), repr(name)
    assert name.startswith("a") and name.endswith(".txt") and all(c in name for c in "bcd")
    # The download header carries the name safely (ASCII fallback plus UTF-8 form).
    r = await upload(api, alice, data, "text/plain", 'naïve "quoted".txt')
    resp = await fetch(api, r.body["url"], alice)
    disposition = resp.headers["Content-Disposition"]
    assert disposition.startswith("attachment;")
    assert "filename*=UTF-8''na%C3%AFve" in disposition
    assert disposition.count('"') == 2  # the quotes in the name cannot end the parameter


# --- images --------------------------------------------------------------------------------------


async def test_image_dimensions_and_thumbnail(blob_world: BlobWorld) -> None:
    api = blob_world.api
    alice = await api.register()
    r = await upload(api, alice, image_bytes("PNG", (800, 400)), "image/png", "wide.png")
    assert r.status == 201, r.body
    view = r.body
    assert (view["width"], view["height"]) == (800, 400)
    assert view["thumbnail_url"] == f"/uploads/{view['id']}/thumbnail"
    resp = await fetch(api, view["thumbnail_url"], alice)
    assert resp.code == 200
    assert resp.headers["Content-Type"] == "image/webp"
    assert resp.headers["Content-Disposition"].startswith("inline")
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    with Image.open(BytesIO(resp.body)) as thumb:
        assert thumb.format == "WEBP"
        assert thumb.width <= 320 and thumb.height <= 320
        assert thumb.size == (320, 160)  # fits the box, keeps the aspect ratio
    # A small image is not scaled up; a tall one fits by height.
    r = await upload(api, alice, image_bytes("JPEG", (300, 1200)), "image/jpeg", "tall.jpg")
    with Image.open(BytesIO((await fetch(api, r.body["thumbnail_url"], alice)).body)) as thumb:
        assert thumb.size == (80, 320)
    r = await upload(api, alice, image_bytes("GIF", (40, 30)), "image/gif", "small.gif")
    with Image.open(BytesIO((await fetch(api, r.body["thumbnail_url"], alice)).body)) as thumb:
        assert thumb.size == (40, 30)
    # A non-image has no thumbnail.
    pdf = await upload(api, alice, pdf_bytes(), "application/pdf", "x.pdf")
    assert (await fetch(api, f"/uploads/{pdf.body['id']}/thumbnail", alice)).code == 404


def _with_metadata(fmt: str) -> bytes:
    im = Image.new("RGB", (60, 40), (20, 120, 220))
    buf = BytesIO()
    if fmt == "PNG":
        info = PngInfo()
        info.add_text("Comment", SECRET)
        info.add_text("Author", SECRET)
        im.save(buf, "PNG", pnginfo=info, exif=exif_with_secrets())
    elif fmt == "WEBP":
        im.save(buf, "WEBP", exif=exif_with_secrets().tobytes(), xmp=SECRET.encode())
    else:
        im.save(buf, "JPEG", exif=exif_with_secrets(), comment=SECRET.encode())
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
async def test_exif_and_other_metadata_are_removed(blob_world: BlobWorld, fmt: str) -> None:
    api = blob_world.api
    alice = await api.register()
    data = _with_metadata(fmt)
    with Image.open(BytesIO(data)) as original:  # the sample really carries the secrets
        assert original.getexif().get(ExifTags.Base.Make) == SECRET
        assert original.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    assert SECRET.encode() in data
    r = await upload(api, alice, data, f"image/{fmt.lower()}", "holiday.img")
    assert r.status == 201, r.body
    for path in (r.body["url"], r.body["thumbnail_url"]):
        resp = await fetch(api, path, alice)
        assert resp.code == 200
        assert SECRET.encode() not in resp.body, path
        assert b"Exif\x00\x00" not in resp.body and b"eXIf" not in resp.body, path
        with Image.open(BytesIO(resp.body)) as im:
            assert len(im.getexif()) == 0, dict(im.getexif())
            assert not {"exif", "xmp", "comment", "Comment", "Author"} & set(im.info), im.info
            assert im.size[0] > 0


async def test_exif_orientation_is_applied_before_it_is_dropped(blob_world: BlobWorld) -> None:
    api = blob_world.api
    alice = await api.register()
    buf = BytesIO()
    Image.new("RGB", (60, 20), (1, 2, 3)).save(buf, "JPEG", exif=exif_with_secrets(6))
    r = await upload(api, alice, buf.getvalue(), "image/jpeg", "rotated.jpg")
    assert r.status == 201, r.body
    assert (r.body["width"], r.body["height"]) == (20, 60)  # rotated 90 degrees, as viewers show
    with Image.open(BytesIO((await fetch(api, r.body["url"], alice)).body)) as im:
        assert im.size == (20, 60)


@pytest.mark.parametrize(("width", "height"), [(20_000, 20_000), (8_000, 6_000)])
async def test_decompression_bombs_are_refused(
    blob_world: BlobWorld, width: int, height: int
) -> None:
    api = blob_world.api
    alice = await api.register()
    bomb = await asyncio.to_thread(png_bomb, width, height)
    assert len(bomb) < 2 * MiB  # small on the wire, huge once decoded
    r = await upload(api, alice, bomb, "image/png", "bomb.png")
    assert r.status in (413, 415), r.body
    assert r.error_code in ("too_large", "unsupported_type")
    await assert_nothing_kept(blob_world)


async def test_corrupt_image_is_refused(blob_world: BlobWorld) -> None:
    api = blob_world.api
    alice = await api.register()
    for fmt in ("PNG", "JPEG", "GIF", "WEBP"):
        data = image_bytes(fmt, (200, 200))
        r = await upload(api, alice, data[: len(data) // 2], f"image/{fmt.lower()}", "cut.img")
        assert r.status == 415 and r.error_code == "unsupported_type", (fmt, r.body)
        assert r.body["error"]["message"] == "the image cannot be decoded"
    await assert_nothing_kept(blob_world)


async def test_transparency_survives_reencoding(blob_world: BlobWorld) -> None:
    """Stripping metadata must not change what the picture looks like."""
    api = blob_world.api
    alice = await api.register()
    palette = Image.new("P", (20, 20), 0)
    palette.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    palette.paste(1, (0, 0, 10, 20))  # left half green, right half index 0 = transparent
    samples = {}
    buf = BytesIO()
    palette.save(buf, "PNG", transparency=0)
    samples["palette"] = buf.getvalue()
    buf = BytesIO()
    Image.new("RGBA", (20, 20), (255, 0, 0, 0)).save(buf, "PNG")
    samples["rgba"] = buf.getvalue()
    for label, data in samples.items():
        with Image.open(BytesIO(data)) as original:
            assert original.convert("RGBA").getpixel((15, 5))[3] == 0  # the sample is see-through
        r = await upload(api, alice, data, "image/png", f"{label}.png")
        assert r.status == 201, r.body
        for path in (r.body["url"], r.body["thumbnail_url"]):
            with Image.open(BytesIO((await fetch(api, path, alice)).body)) as im:
                alpha = im.convert("RGBA").getpixel((im.width * 3 // 4, im.height // 4))[3]
                assert alpha == 0, (label, path, "transparent pixels became opaque")


# --- downloads -----------------------------------------------------------------------------------


async def test_download_headers(blob_world: BlobWorld) -> None:
    api = blob_world.api
    alice = await api.register()
    expected = {
        "pdf": "attachment",
        "zip": "attachment",
        "text": "attachment",
        "png": "inline",
        "jpeg": "inline",
        "mp3": "inline",
        "ogg": "inline",
        "mp4": "inline",
        "webm": "inline",
    }
    for label, disposition in expected.items():
        view = await upload_ok(api, alice, label)
        resp = await fetch(api, view["url"], alice)
        assert resp.code == 200, label
        assert resp.headers["Content-Disposition"].split(";")[0] == disposition, label
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Content-Type"] == view["content_type"]
        assert "public" not in resp.headers.get("Cache-Control", "")
        if blob_world.backend == "s3":  # streamed through the server, never a public object URL
            assert "Location" not in resp.headers


async def test_range_requests(blob_world: BlobWorld) -> None:
    api = blob_world.api
    alice = await api.register()
    for label in ("mp4", "text"):
        make, declared, _ = SAMPLES[label]
        data = make()
        size = len(data)
        view = (await upload(api, alice, data, declared, f"r.{label}")).body
        url = view["url"]
        full = await fetch(api, url, alice)
        assert full.code == 200 and full.body == data
        assert full.headers["Accept-Ranges"] == "bytes"
        cases = {
            "bytes=0-9": (0, 9),
            "bytes=-5": (size - 5, size - 1),
            "bytes=5-": (5, size - 1),
            "bytes=10-19": (10, 19),
            f"bytes=0-{size + 100}": (0, size - 1),  # clipped to the end
        }
        for header, (start, end) in cases.items():
            resp = await fetch(api, url, alice, {"Range": header})
            assert resp.code == 206, (label, header, resp.code)
            assert resp.headers["Content-Range"] == f"bytes {start}-{end}/{size}", header
            assert resp.body == data[start : end + 1], header
            assert int(resp.headers["Content-Length"]) == end - start + 1
        for header in (f"bytes={size}-", f"bytes={size + 10}-{size + 20}", "bytes=9-3"):
            resp = await fetch(api, url, alice, {"Range": header})
            assert resp.code == 416, (label, header, resp.code)
            assert resp.headers["Content-Range"] == f"bytes */{size}"


async def test_range_forms_the_server_does_not_support_are_ignored(blob_world: BlobWorld) -> None:
    """RFC 9110 14.2: an unknown range unit MUST be ignored, and a server may ignore a range
    it does not support: either way the answer is the whole file, not 416."""
    api = blob_world.api
    alice = await api.register()
    data = mp4_bytes()
    view = (await upload(api, alice, data, "video/mp4", "clip.mp4")).body
    answers = {}
    for header in ("items=0-5", "bytes=0-1,5-6"):
        resp = await fetch(api, view["url"], alice, {"Range": header})
        answers[header] = resp.code
        if resp.code == 200:
            assert resp.body == data, header
    assert all(code in (200, 206) for code in answers.values()), answers


async def test_aborted_upload_leaves_nothing(blob_world: BlobWorld) -> None:
    api = blob_world.api
    alice = await api.register()
    head = post_head(
        alice, {"Content-Type": "text/plain", "Content-Length": str(4 * MiB)}, "/uploads?filename=a"
    )

    def send_half_and_hang_up() -> None:
        with socket.create_connection(("127.0.0.1", api.port), timeout=5) as sock:
            sock.sendall(head + b"a" * MiB)
            time.sleep(0.3)  # let the server spool what it got

    await asyncio.to_thread(send_half_and_hang_up)
    await assert_nothing_kept(blob_world)
    # The spool file existed while the body was arriving (the check above is not vacuous).
    assert blob_world.settings.spool_path.is_dir()


# --- access control ------------------------------------------------------------------------------


async def test_download_access_control(blob_world: BlobWorld) -> None:
    api = blob_world.api
    alice, bob, carol, dave = [await api.register() for _ in range(4)]
    room = await api.group(alice, bob, carol)
    view = await upload_ok(api, alice, "png")
    paths = (view["url"], view["thumbnail_url"])

    async def status(user: User) -> list[tuple[int, str | None]]:
        out = []
        for path in paths:
            resp = await fetch(api, path, user)
            out.append((resp.code, error_code(resp) if resp.code != 200 else None))
        return out

    refused = [(403, "not_a_member")] * 2
    assert await status(alice) == [(200, None)] * 2  # the uploader
    assert await status(bob) == refused  # not shared anywhere yet
    r = await api.post(
        f"/rooms/{room}/messages",
        {"client_msg_id": "c1", "text": "look", "attachment_ids": [view["id"]]},
        alice,
    )
    assert r.status == 201, r.body
    message_id = r.body["id"]
    assert await status(bob) == [(200, None)] * 2
    assert await status(carol) == [(200, None)] * 2
    assert await status(dave) == refused  # never a member
    # Removed from the room: no longer.
    r = await api.delete(f"/rooms/{room}/members/{carol.id}", alice)
    assert r.status in (200, 204), r.body
    assert await status(carol) == refused
    # The message deleted: its attachment is no longer shared with the room.
    r = await api.delete(f"/messages/{message_id}", alice)
    assert r.status in (200, 204), r.body
    assert await status(bob) == refused
    assert await status(alice) == [(200, None)] * 2
    # Unknown ids answer exactly like files one may not see.
    unknown = await fetch(api, f"/uploads/{ObjectId()}", alice)
    assert (unknown.code, error_code(unknown)) == (403, "not_a_member")
    unknown = await fetch(api, f"/uploads/{ObjectId()}/thumbnail", alice)
    assert (unknown.code, error_code(unknown)) == (403, "not_a_member")
    bad = await fetch(api, "/uploads/not-an-id", alice)
    assert bad.code in (400, 403, 404)


async def test_sharing_in_one_room_does_not_open_another(blob_world: BlobWorld) -> None:
    api = blob_world.api
    alice, bob, eve = [await api.register() for _ in range(3)]
    shared = await api.group(alice, bob)
    other = await api.group(eve, bob)  # bob is in both, alice is not in `other`
    view = await upload_ok(api, alice, "pdf")
    # eve cannot "share" alice's upload into her own room to get at it.
    r = await api.post(
        f"/rooms/{other}/messages",
        {"client_msg_id": "steal", "text": "mine now", "attachment_ids": [view["id"]]},
        eve,
    )
    assert r.status == 403 and r.error_code == "forbidden"
    assert (await fetch(api, view["url"], eve)).code == 403
    await api.post(
        f"/rooms/{shared}/messages",
        {"client_msg_id": "ok", "text": "", "attachment_ids": [view["id"]]},
        alice,
    )
    assert (await fetch(api, view["url"], bob)).code == 200
    assert (await fetch(api, view["url"], eve)).code == 403


# --- failures, limits, metrics -------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_s3_unavailable_gives_503_and_nothing_half_written(
    db_uri: str | None, tmp_path: Path, s3_endpoint: str
) -> None:
    # s3_endpoint only provides the (fake) credentials; this server points at a closed port.
    settings = make_settings(
        db_uri,
        tmp_path,
        blob_backend="s3",
        s3_bucket="nowhere",
        s3_endpoint_url=f"http://127.0.0.1:{closed_port()}",
    )
    server = Server(settings)
    await server.start()  # S3 being down is logged, not fatal: it may come back
    try:
        api = Api(server.port)
        alice = await api.register()
        for label in ("text", "png"):
            make, declared, _ = SAMPLES[label]
            r = await upload(api, alice, make(), declared, f"x.{label}")
            assert r.status == 503 and r.error_code == "unavailable", (label, r.body)
            assert r.headers.get("Retry-After")
        body, ctype = multipart([("file", "x.pdf", "application/pdf", pdf_bytes())])
        r = await upload(api, alice, body, ctype)
        assert r.status == 503 and r.error_code == "unavailable"
        # Nothing left in the spool (the .clean/.thumb intermediates are made there too), and
        # nothing under the upload dir.
        spool = settings.spool_path
        assert await wait_until(lambda: not (spool.is_dir() and any(spool.iterdir())))
        leftovers = [p for p in settings.uploads_path.rglob("*") if p.is_file()]
        assert leftovers == []
        assert await upload_count(server) == 0
        metrics = (await api.get("/metrics")).body
        assert metric(metrics, "fastsock_uploads_total") == 0
        assert metric(metrics, "fastsock_upload_refusals_total", 'reason="unavailable"') == 3
        # The rest of the server keeps working.
        room = await api.group(alice)
        await api.send(alice, room, "still here")
    finally:
        await server.stop()


async def test_unusable_upload_dir_stops_start_up(db_uri: str | None, tmp_path: Path) -> None:
    # Tests run as root, so permissions cannot make a directory unwritable: use a regular file.
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("I am a file")
    uri = db_uri
    for upload_dir in (blocker, blocker / "uploads"):
        server = Server(make_settings(uri, tmp_path, upload_dir=upload_dir))
        with pytest.raises(ConfigError) as info:
            await server.start()
        message = str(info.value)
        assert "FASTSOCK_UPLOAD_DIR" in message and str(upload_dir) in message
        assert "\n" not in message
        assert server.http is None  # never started listening
    # A missing (but creatable) directory is created.
    fresh = tmp_path / "a" / "b" / "uploads"
    server = Server(make_settings(uri, tmp_path, upload_dir=fresh))
    await server.start()
    try:
        assert fresh.is_dir()
    finally:
        await server.stop()


SLOW_BODY = b"a slow upload\n" * 4096


@asynccontextmanager
async def slow_upload(
    server: Server, user: User
) -> AsyncIterator[Callable[[], Awaitable[tuple[int, Any]]]]:
    """A raw upload to `server` of SLOW_BODY but its last byte, held open: yields once the
    server spools it, a function that sends the last byte and returns the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    headers = {"Content-Type": "text/plain", "Content-Length": str(len(SLOW_BODY))}
    writer.write(post_head(user, headers, "/uploads?filename=slow.txt") + SLOW_BODY[:-1])
    await writer.drain()
    assert server.ctx is not None
    spool = server.ctx.services.uploads.spool_dir
    assert await wait_until(lambda: spool.is_dir() and any(spool.iterdir())), "never spooled"

    async def finish() -> tuple[int, Any]:
        writer.write(SLOW_BODY[-1:])
        await writer.drain()
        raw = b""
        while not _complete(raw) and (chunk := await asyncio.wait_for(reader.read(65536), 20)):
            raw += chunk
        parsed = _parse_response(raw)
        assert parsed is not None, raw
        return parsed[0], json.loads(parsed[2])

    try:
        yield finish
    finally:
        writer.close()


async def test_a_node_starting_keeps_the_uploads_of_nodes_sharing_its_upload_dir(
    db_uri: str | None, tmp_path: Path
) -> None:
    """Nodes may share FASTSOCK_UPLOAD_DIR (docker-compose.yml's cluster does): a node that
    starts clears the partial uploads in its own spool only, not those other nodes are
    receiving."""
    shared = tmp_path / "shared-uploads"
    a = Server(make_settings(db_uri, tmp_path / "a", upload_dir=shared))
    await a.start()
    b = Server(make_settings(db_uri, tmp_path / "b", upload_dir=shared))
    try:
        api = Api(a.port)
        alice = await api.register()
        # What a crash of b left in its spool.
        b.settings.spool_path.mkdir(parents=True)
        leftover = b.settings.spool_path / "crashed.part"
        leftover.write_bytes(b"half")
        async with slow_upload(a, alice) as finish:
            await b.start()
            status, view = await finish()
        assert status == 201, view
        assert (await fetch(api, view["url"], alice)).body == SLOW_BODY
        assert not leftover.exists()
    finally:
        await b.stop()
        await a.stop()


async def test_a_server_refused_by_the_database_lock_keeps_the_running_ones_uploads(
    tmp_path: Path,
) -> None:
    """A second server on the same data dir (so the same spool) is refused by the embedded
    database's lock before it clears anything."""
    first = Server(make_settings(None, tmp_path))
    await first.start()
    try:
        api = Api(first.port)
        alice = await api.register()
        async with slow_upload(first, alice) as finish:
            second = Server(make_settings(None, tmp_path))
            with pytest.raises(InUse):
                await second.start()
            await second.stop()
            status, view = await finish()
        assert status == 201, view
        assert (await fetch(api, view["url"], alice)).body == SLOW_BODY
    finally:
        await first.stop()


async def test_upload_rate_limit(blob_world: BlobWorld) -> None:
    limits = replace(RELAXED, uploads_per_min=3)
    async with variant(blob_world, limits=limits) as (server, api):
        alice, bob = await api.register(), await api.register()
        for i in range(3):
            r = await upload(api, alice, b"note %d\n" % i, "text/plain", f"{i}.txt")
            assert r.status == 201, r.body
        r = await upload(api, alice, b"one too many\n", "text/plain", "4.txt")
        assert r.status == 429 and r.error_code == "rate_limited", r.body
        assert int(r.headers["Retry-After"]) >= 1
        # Per user: bob is not affected.
        r = await upload(api, bob, b"bob's note\n", "text/plain", "b.txt")
        assert r.status == 201, r.body
        assert await upload_count(server) == 4
        metrics = (await api.get("/metrics")).body
        assert metric(metrics, "fastsock_upload_refusals_total", 'reason="rate_limited"') == 1


async def test_upload_metrics(blob_world: BlobWorld) -> None:
    api = blob_world.api
    alice = await api.register()
    text = b"counted bytes\n" * 10
    pdf = pdf_bytes()
    await upload(api, alice, text, "text/plain", "a.txt")
    await upload(api, alice, pdf, "application/pdf", "a.pdf")
    await upload(api, alice, b"<html></html>", "text/plain", "x.txt")  # refused
    body = (await api.get("/metrics")).body
    assert "# TYPE fastsock_uploads_total counter" in body
    assert metric(body, "fastsock_uploads_total") == 2
    assert metric(body, "fastsock_upload_bytes_total") == len(text) + len(pdf)
    assert metric(body, "fastsock_upload_refusals_total", 'reason="unsupported_type"') == 1
