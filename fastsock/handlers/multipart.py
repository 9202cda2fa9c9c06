"""An incremental multipart/form-data parser: the file part's bytes are handed on as they
arrive, so an upload is never held whole in memory."""

from __future__ import annotations

import re
from collections.abc import Callable

from fastsock.errors import InvalidRequest

HEADERS_MAX = 16 * 1024
FIELD_MAX = 64 * 1024  # non-file fields are read and dropped, up to this much each
# name="quoted; value" (with \" escapes) or name=token
_PARAM = re.compile(r';\s*([a-zA-Z0-9_*-]+)=(?:"((?:[^"\\]|\\.)*)"|([^";\s]*))')


class MultipartStream:
    """Feed body chunks; `on_file(filename, content_type)` is called when the part named
    `file` begins and `on_data(bytes)` with its content. Other parts are ignored."""

    def __init__(
        self,
        boundary: bytes,
        on_file: Callable[[str | None, str | None], None],
        on_data: Callable[[bytes], None],
    ) -> None:
        self.delimiter = b"\r\n--" + boundary
        self.on_file = on_file
        self.on_data = on_data
        self.buffer = b"\r\n"  # lets the first boundary match the general delimiter
        self.state = "preamble"
        self.in_file = False
        self.seen_file = False
        self.field_bytes = 0

    def feed(self, chunk: bytes) -> None:
        self.buffer += chunk
        while self._step():
            pass

    def finish(self) -> None:
        if self.state != "done":
            raise InvalidRequest("the multipart body is incomplete", field="file")
        if not self.seen_file:
            raise InvalidRequest("the form needs a part named file", field="file")

    def _step(self) -> bool:
        """Advance as far as the buffer allows; False when more input is needed."""
        if self.state == "preamble":
            at = self.buffer.find(self.delimiter)
            if at < 0:
                self.buffer = self.buffer[-len(self.delimiter) :]
                return False
            self.buffer = self.buffer[at + len(self.delimiter) :]
            self.state = "after_delimiter"
            return True
        if self.state == "after_delimiter":
            if len(self.buffer) < 2:
                return False
            if self.buffer[:2] == b"--":
                self.state = "done"
                return False
            if self.buffer[:2] != b"\r\n":
                raise InvalidRequest("malformed multipart body", field="file")
            self.buffer = self.buffer[2:]
            self.state = "headers"
            return True
        if self.state == "headers":
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > HEADERS_MAX:
                    raise InvalidRequest("multipart headers too long", field="file")
                return False
            self._start_part(self.buffer[:end].decode("utf-8", "replace"))
            self.buffer = self.buffer[end + 4 :]
            self.state = "body"
            return True
        if self.state == "body":
            at = self.buffer.find(self.delimiter)
            if at < 0:
                # Keep a tail that could be the start of the delimiter.
                safe = len(self.buffer) - len(self.delimiter) + 1
                if safe > 0:
                    self._emit(self.buffer[:safe])
                    self.buffer = self.buffer[safe:]
                return False
            self._emit(self.buffer[:at])
            self.buffer = self.buffer[at + len(self.delimiter) :]
            self.in_file = False
            self.state = "after_delimiter"
            return True
        return False  # done: anything after the closing boundary is ignored

    def _start_part(self, raw_headers: str) -> None:
        headers = {}
        for line in raw_headers.split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        params = {
            key: quoted.replace('\\"', '"') if quoted else token
            for key, quoted, token in _PARAM.findall(headers.get("content-disposition", ""))
        }
        self.field_bytes = 0
        self.in_file = params.get("name") == "file" and not self.seen_file
        if self.in_file:
            self.seen_file = True
            self.on_file(params.get("filename"), headers.get("content-type"))

    def _emit(self, data: bytes) -> None:
        if self.in_file:
            if data:
                self.on_data(data)
            return
        self.field_bytes += len(data)
        if self.field_bytes > FIELD_MAX:
            raise InvalidRequest("form fields other than file are limited", field="file")


def boundary_of(content_type: str) -> bytes | None:
    """The boundary of a multipart/form-data Content-Type, or None for other types."""
    main, _, rest = content_type.partition(";")
    if main.strip().lower() != "multipart/form-data":
        return None
    match = re.search(r'boundary="?([^";]+)"?', rest)
    if not match or len(match.group(1)) > 200:
        raise InvalidRequest("multipart body without a usable boundary", field="file")
    return match.group(1).encode("latin-1")
