"""Metadata removal from image files at the container level.

The compressed pixel data is copied as it is (no re-encoding: no quality loss, animations keep
every frame and duration) and everything else is left out: EXIF (GPS included), XMP, IPTC,
comments, text chunks, embedded thumbnails and anything after the image's end. Kept is only
what decoders need to show the pixels as intended: colour (ICC profiles, PNG colour chunks),
transparency and animation control.

Each reader also reports the canvas size and frame count from the headers, so the size limits
are checked before any pixel is decoded. Runs in a worker thread; the file is memory-mapped,
never read into memory as a whole.

The walk over a file's structures is Python, holding the GIL, so a file made of nothing but
tiny structures (a 24 MiB JPEG of 4-byte comments is 6 million segments, 2 s of work) would
stall the server's other threads. Counts no real image comes near are refused as malformed."""

from __future__ import annotations

import mmap
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_COPY_CHUNK = 1024 * 1024
# Real images have tens of JPEG segments; thousands of PNG chunks (image data in 8 to 64 KiB
# pieces) or of GIF blocks (two per animation frame); GIF image data comes in sub-blocks of 255
# bytes, so a million of them is 255 MB. Each walks in well under 0.1 s.
MAX_JPEG_SEGMENTS = 10_000
MAX_PNG_CHUNKS = 100_000
MAX_GIF_BLOCKS = 100_000
MAX_GIF_SUB_BLOCKS = 1_000_000
MAX_WEBP_CHUNKS = 100_000  # frames' own chunks included


class Malformed(Exception):
    """The file's structure is broken (truncated, or not what its type says)."""


@dataclass(frozen=True, slots=True)
class Layout:
    width: int  # the canvas, as stored (before any EXIF orientation)
    height: int
    frames: int
    exif: bytes | None  # the EXIF block the file carried: read for its orientation, never kept


def strip(source: Path, content_type: str, target: Path) -> Layout:
    """Write `source` to `target` without metadata; raises Malformed."""
    with source.open("rb") as f, target.open("wb") as out:
        try:
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError as exc:  # an empty file
            raise Malformed("the file is empty") from exc
        with data:
            try:
                layout = _READERS[content_type](data, out)
            except (IndexError, struct.error) as exc:
                raise Malformed("the file ends early") from exc
    if layout.width <= 0 or layout.height <= 0 or layout.frames <= 0:
        raise Malformed("the image has no pixels")
    return layout


class _Tally:
    """Counts one kind of structure as a file is walked; past `limit` the file is refused."""

    __slots__ = ("left", "limit", "what")

    def __init__(self, limit: int, what: str) -> None:
        self.left, self.limit, self.what = limit, limit, what

    def count(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise Malformed(f"more than {self.limit:,} {self.what}")


def _copy(data: mmap.mmap, out: BinaryIO, start: int, end: int) -> None:
    for pos in range(start, end, _COPY_CHUNK):
        out.write(data[pos : min(end, pos + _COPY_CHUNK)])


# --- JPEG: markers and segments; entropy-coded data follows each start of scan -----------------

# Frame headers, tables and scans (not 0xC8, reserved), and DNL, DRI, DHP, EXP.
_JPEG_STRUCTURE = frozenset(range(0xC0, 0xD0)) - {0xC8} | frozenset(range(0xDA, 0xE0))
# APP2 ICC profile (colour) and APP14 Adobe (how to read the colour channels).
_JPEG_KEPT_APPS = {0xE2: b"ICC_PROFILE\x00", 0xEE: b"Adobe"}
_JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# The end of entropy-coded data: a marker other than a stuffed 0xFF00 or a restart marker.
_JPEG_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7]")
# A marker, after any number of fill bytes (matched in C: a run of them costs no Python loop).
_JPEG_MARKER = re.compile(rb"\xff+([^\xff])")


def _jpeg(data: mmap.mmap, out: BinaryIO) -> Layout:
    if data[:2] != b"\xff\xd8":
        raise Malformed("not a JPEG")
    out.write(b"\xff\xd8")
    pos, size, exif = 2, None, None
    segments = _Tally(MAX_JPEG_SEGMENTS, "JPEG segments")
    while True:
        found = _JPEG_MARKER.match(data, pos)
        if found is None:
            raise Malformed("expected a JPEG marker")
        segments.count()
        marker, pos = found[1][0], found.end()
        if marker == 0xD9:  # end of image: whatever follows (MPF images, appended files) goes
            out.write(b"\xff\xd9")
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a segment
            out.write(bytes((0xFF, marker)))
            continue
        (length,) = struct.unpack_from(">H", data, pos)
        end = pos + length
        if length < 2 or end > len(data):
            raise Malformed("a JPEG segment runs past the end")
        payload = data[pos + 2 : end]
        if marker in _JPEG_FRAMES and size is None:
            height, width = struct.unpack_from(">HH", payload, 1)
            size = (width, height)
        if marker == 0xE1 and exif is None and payload.startswith(b"Exif\x00\x00"):
            exif = payload
        kept_app = _JPEG_KEPT_APPS.get(marker)
        if marker in _JPEG_STRUCTURE or (kept_app is not None and payload.startswith(kept_app)):
            _copy(data, out, pos - 2, end)
        pos = end
        if marker == 0xDA:
            match = _JPEG_SCAN_END.search(data, pos)
            if match is None:
                raise Malformed("the JPEG scan data is cut off")
            _copy(data, out, pos, match.start())
            pos = match.start()
    if size is None:
        raise Malformed("the JPEG has no frame header")
    return Layout(size[0], size[1], 1, exif)


# --- PNG: chunks ---------------------------------------------------------------------------------

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Image data, colour (gamma, chromaticities, sRGB, ICC, HDR), transparency, significant bits and
# APNG animation. Not kept: tEXt, zTXt, iTXt (XMP), eXIf, tIME, pHYs and unknown chunks.
_PNG_KEPT = frozenset(
    b"IHDR PLTE IDAT IEND tRNS gAMA cHRM sRGB iCCP cICP mDCV cLLI sBIT acTL fcTL fdAT".split()
)


def _png(data: mmap.mmap, out: BinaryIO) -> Layout:
    if data[:8] != _PNG_SIGNATURE:
        raise Malformed("not a PNG")
    out.write(_PNG_SIGNATURE)
    pos, size, exif = 8, None, None
    declared = controls = 0  # frames acTL announces; frame control chunks (fcTL) present
    chunks = _Tally(MAX_PNG_CHUNKS, "PNG chunks")
    while True:
        chunks.count()
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length  # length, type, data, CRC
        if end > len(data):
            raise Malformed("a PNG chunk runs past the end")
        if (kind == b"IHDR") != (pos == 8):  # decoders read the first IHDR, we must too
            raise Malformed("a PNG must begin with its one header chunk")
        if kind == b"IHDR":
            size = struct.unpack_from(">II", data, pos + 8)
        elif kind == b"acTL":
            (declared,) = struct.unpack_from(">I", data, pos + 8)
        elif kind == b"fcTL":
            controls += 1
        elif kind == b"eXIf" and exif is None:
            exif = data[pos + 8 : pos + 8 + length]
        if kind in _PNG_KEPT:
            _copy(data, out, pos, end)
        pos = end
        if kind == b"IEND":
            break
    if size is None:
        raise Malformed("the PNG has no header chunk")
    return Layout(size[0], size[1], max(declared, controls, 1), exif)


# --- GIF: blocks of 255-byte sub-blocks ----------------------------------------------------------

# Application extensions that hold the loop count; XMP and all others are dropped.
_GIF_LOOPS = (b"\x0bNETSCAPE2.0", b"\x0bANIMEXTS1.0")
_GIF_CONTROL = 0xF9  # frame delay, disposal, transparency


def _sub_blocks_end(data: mmap.mmap, pos: int, sub_blocks: _Tally) -> int:
    """The end of a run of sub-blocks: each a length byte and that many bytes, 0 ends it."""
    while (length := data[pos]) != 0:
        sub_blocks.count()
        pos += 1 + length
    return pos + 1


def _gif(data: mmap.mmap, out: BinaryIO) -> Layout:
    if data[:6] not in (b"GIF87a", b"GIF89a"):
        raise Malformed("not a GIF")
    width, height, flags = struct.unpack_from("<HHB", data, 6)
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # after the global colour table
    _copy(data, out, 0, pos)
    frames = 0
    blocks = _Tally(MAX_GIF_BLOCKS, "GIF blocks")
    sub_blocks = _Tally(MAX_GIF_SUB_BLOCKS, "GIF sub-blocks")
    while (intro := data[pos]) != 0x3B:  # trailer; anything after it goes
        blocks.count()
        start = pos
        if intro == 0x2C:  # an image: descriptor, local colour table, LZW code size, data
            left, top, w, h, flags = struct.unpack_from("<HHHHB", data, pos + 1)
            width, height = max(width, left + w), max(height, top + h)  # decoders grow the canvas
            pos += 10 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0) + 1
            pos = _sub_blocks_end(data, pos, sub_blocks)
            frames += 1
            _copy(data, out, start, pos)
        elif intro == 0x21:  # an extension: comment (0xFE), plain text, application or control
            label = data[pos + 1]
            pos = _sub_blocks_end(data, pos + 2, sub_blocks)
            if label == _GIF_CONTROL or (
                label == 0xFF and data[start + 2 : start + 14] in _GIF_LOOPS
            ):
                _copy(data, out, start, pos)
        else:
            raise Malformed("unexpected data in a GIF")
    out.write(b";")
    return Layout(width, height, frames, None)


# --- WebP: RIFF chunks, with frames (ANMF) holding chunks of their own ---------------------------

_WEBP_KEPT = frozenset((b"VP8X", b"ICCP", b"ANIM", b"ANMF", b"ALPH", b"VP8 ", b"VP8L"))
_WEBP_FRAME_KEPT = frozenset((b"ALPH", b"VP8 ", b"VP8L"))
_VP8X_METADATA = 0x08 | 0x04  # the EXIF and XMP flags
Piece = bytes | tuple[int, int]  # new bytes, or a range of the source to copy


def _riff_chunks(
    data: mmap.mmap, start: int, end: int, tally: _Tally
) -> list[tuple[bytes, int, int, int]]:
    """(fourcc, payload start, payload end, end with padding) of each chunk in [start, end)."""
    chunks = []
    pos = start
    while pos < end:
        tally.count()
        kind, size = struct.unpack_from("<4sI", data, pos)
        body = pos + 8
        if body + size > end:
            raise Malformed("a WebP chunk runs past the end")
        pos = body + size + (size & 1)
        chunks.append((kind, body, body + size, min(pos, end)))
    return chunks


def _webp_size(kind: bytes, payload: bytes) -> tuple[int, int]:
    if kind == b"VP8X":
        return (
            int.from_bytes(payload[4:7], "little") + 1,
            int.from_bytes(payload[7:10], "little") + 1,
        )
    if kind == b"VP8L":
        if payload[0] != 0x2F:
            raise Malformed("a bad lossless WebP header")
        (bits,) = struct.unpack_from("<I", payload, 1)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if payload[3:6] != b"\x9d\x01\x2a":
        raise Malformed("a bad lossy WebP header")
    width, height = struct.unpack_from("<HH", payload, 6)
    return width & 0x3FFF, height & 0x3FFF


def _webp(data: mmap.mmap, out: BinaryIO) -> Layout:
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise Malformed("not a WebP")
    (riff_size,) = struct.unpack_from("<I", data, 4)
    if 8 + riff_size > len(data):
        raise Malformed("the WebP is cut off")
    pieces: list[Piece] = []
    size, frames, exif = None, 0, None
    chunks = _Tally(MAX_WEBP_CHUNKS, "WebP chunks")
    for kind, body, body_end, end in _riff_chunks(data, 12, 8 + riff_size, chunks):
        if kind == b"EXIF" and exif is None:
            exif = data[body:body_end]
        if kind not in _WEBP_KEPT:
            continue
        if size is None and kind in (b"VP8X", b"VP8 ", b"VP8L"):  # the first one is the canvas
            size = _webp_size(kind, data[body : body + 10])
        if kind == b"VP8X":
            header = bytearray(data[body - 8 : end])
            header[8] &= ~_VP8X_METADATA & 0xFF
            pieces.append(bytes(header))
        elif kind == b"ANMF":  # a frame: its 16-byte header, then only its image chunks
            frames += 1
            inner = [
                (s - 8, e)
                for k, s, _, e in _riff_chunks(data, body + 16, body_end, chunks)
                if k in _WEBP_FRAME_KEPT
            ]
            length = 16 + sum(e - s for s, e in inner)
            pieces += [b"ANMF" + struct.pack("<I", length), (body, body + 16), *inner]
        else:
            pieces.append((body - 8, end))
    if size is None:
        raise Malformed("the WebP has no image")
    total = 4 + sum(len(p) if isinstance(p, bytes) else p[1] - p[0] for p in pieces)
    out.write(b"RIFF" + struct.pack("<I", total) + b"WEBP")
    for piece in pieces:
        if isinstance(piece, bytes):
            out.write(piece)
        else:
            _copy(data, out, *piece)
    return Layout(size[0], size[1], max(frames, 1), exif)


_READERS: dict[str, Callable[[mmap.mmap, BinaryIO], Layout]] = {
    "image/jpeg": _jpeg,
    "image/png": _png,
    "image/gif": _gif,
    "image/webp": _webp,
}
