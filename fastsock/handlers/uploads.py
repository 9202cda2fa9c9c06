"""POST /uploads (streamed to a spool file, never held in memory) and GET /uploads/{id}."""

from __future__ import annotations

import contextlib
import re
import secrets
from pathlib import Path
from typing import IO, Any, cast
from urllib.parse import quote

from tornado.http1connection import HTTP1Connection
from tornado.web import stream_request_body

from fastsock.connections import content_length
from fastsock.errors import ApiError, NotFound
from fastsock.handlers.base import BaseHandler
from fastsock.handlers.multipart import MultipartStream, boundary_of

MULTIPART_SLACK = 1024 * 1024  # form framing, and chunk sizes that straddle the limit
# One `bytes=first-last?` or `bytes=-suffix` range (RFC 9110 14.1.2).
_RANGE = re.compile(r"bytes=([0-9]+-[0-9]*|-[0-9]+)$")


class RangeNotSatisfiable(ApiError):
    status, code = 416, "range_not_satisfiable"


@stream_request_body
class UploadHandler(BaseHandler):
    route = "/uploads"

    def initialize(self, ctx: Any) -> None:
        super().initialize(ctx)
        self.spool: Path | None = None
        self.file: IO[bytes] | None = None
        self.size = 0
        self.declared: str | None = None
        self.filename: str | None = None
        self.multipart: MultipartStream | None = None

    async def prepare(self) -> None:
        await super().prepare()
        uploads = self.services.uploads
        boundary = boundary_of(self.request.headers.get("Content-Type", ""))
        declared = content_length(self.request.headers)
        if declared is not None and boundary is not None:
            declared -= MULTIPART_SLACK  # the form's framing is not part of the file
        await uploads.begin(self.me, declared)
        # Tornado's HTTP server hands every request an HTTP1Connection (request.connection is
        # typed as its abstract base, which has no body limit).
        connection = cast(HTTP1Connection, self.request.connection)
        connection.set_max_body_size(uploads.max_bytes + MULTIPART_SLACK)
        if boundary is not None:
            self.multipart = MultipartStream(boundary, self._on_file, self._write)
        else:
            self.declared = self.request.headers.get("Content-Type")
            self.filename = self.query("filename").get("filename")
        uploads.spool_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.spool = uploads.spool_dir / f"{secrets.token_hex(12)}.part"
        self.file = self.spool.open("wb")

    def _on_file(self, filename: str | None, content_type: str | None) -> None:
        self.filename, self.declared = filename, content_type

    def _write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.services.uploads.max_bytes:
            self.services.uploads.refused("too_large")
            raise self.services.uploads.too_large()
        assert self.file is not None
        self.file.write(data)

    def data_received(self, chunk: bytes) -> None:
        if self._finished:
            return  # already refused; tornado discards the rest and closes the connection
        try:
            if self.multipart is not None:
                self.multipart.feed(chunk)
            else:
                self._write(chunk)
        except ApiError as exc:
            # Answer at once: tornado then closes the connection instead of reading on.
            self._discard()
            self.send_error(exc.status, exc_info=(type(exc), exc, None))

    async def post(self) -> None:
        if self.multipart is not None:
            self.multipart.finish()
        assert self.file is not None and self.spool is not None and self.login is not None
        self.file.close()
        # A body may take minutes: the login may have ended since the request began.
        self.services.accounts.require_live(self.login)
        view = await self.services.uploads.accept(
            self.me, self.spool, self.size, self.declared, self.filename
        )
        self.send_json(view, 201)

    def _discard(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.spool is not None:
            self.spool.unlink(missing_ok=True)

    def on_finish(self) -> None:
        super().on_finish()
        self._discard()

    def on_connection_close(self) -> None:
        super().on_connection_close()
        self._discard()


class DownloadHandler(BaseHandler):
    route = "/uploads/{id}"
    thumbnail = False

    async def get(self, upload_id: str) -> None:
        uploads = self.services.uploads
        doc = await uploads.readable(self.me, upload_id)
        key, content_type, size = uploads.blob(doc, self.thumbnail)
        start, end = 0, size - 1
        header = self.request.headers.get("Range")
        # Only single `bytes=` ranges are supported; any other form (or no valid range, like
        # `bytes=-`) is ignored (RFC 9110).
        if header is not None and _RANGE.match(header.strip()) is not None:
            requested = _parse_range(header, size)
            if requested is None:
                # Not raised: send_error would clear the Content-Range header.
                self.set_header("Content-Range", f"bytes */{size}")
                error = RangeNotSatisfiable(f"the file has {size} bytes")
                self.send_json({"error": error.to_dict()}, error.status)
                return
            start, end = requested
            self.set_status(206)
            self.set_header("Content-Range", f"bytes {start}-{end}/{size}")
        disposition = "inline" if self.thumbnail else uploads.disposition(doc)
        self.set_header("Content-Type", content_type)
        self.set_header("Content-Length", str(end - start + 1))
        self.set_header("Accept-Ranges", "bytes")
        self.set_header("Content-Disposition", _disposition(disposition, doc["name"]))
        self.set_header("Cache-Control", "private, max-age=3600")
        # Even if a browser were tricked into rendering it, an upload can run nothing.
        self.set_header("Content-Security-Policy", "default-src 'none'; sandbox")
        # aclosing: a client that goes away mid-download releases the file or S3 body now.
        try:
            async with contextlib.aclosing(uploads.blobs.read(key, start, end)) as chunks:
                async for chunk in chunks:
                    self.write(chunk)
                    await self.flush()
        except FileNotFoundError:  # a record without its content: say so, if still possible
            raise NotFound("the file's content is missing") from None


class ThumbnailHandler(DownloadHandler):
    route = "/uploads/{id}/thumbnail"
    thumbnail = True


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """One `bytes=a-b` range within the file, or None if it cannot be satisfied."""
    match = _RANGE.match(header.strip())
    if match is None or size == 0:
        return None
    first, last = match.group(1).split("-")
    if first == "":  # the last N bytes
        start, end = max(0, size - _position(last, size)), size - 1
    else:
        start = _position(first, size)
        end = min(_position(last, size), size - 1) if last else size - 1
    return (start, end) if start <= end < size else None


def _position(digits: str, size: int) -> int:
    """A byte position or length from a Range header, capped at `size` (any larger number
    means the same: past the end). Python refuses to convert numbers of thousands of digits,
    and a client may send one."""
    digits = digits.lstrip("0")
    return size if len(digits) > len(str(size)) else min(int(digits or "0"), size)


def _disposition(kind: str, name: str) -> str:
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"
