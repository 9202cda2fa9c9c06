"""What a file really is, from its first bytes (never from its name or declared type)."""

from __future__ import annotations

import re

HEAD_BYTES = 4096

_MAGIC: list[tuple[bytes, int, str]] = [
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"%PDF-", 0, "application/pdf"),
    (b"PK\x03\x04", 0, "application/zip"),
    (b"PK\x05\x06", 0, "application/zip"),  # an empty archive
    (b"OggS", 0, "audio/ogg"),
    (b"ID3", 0, "audio/mpeg"),
    (b"\x1a\x45\xdf\xa3", 0, "video/webm"),  # EBML (WebM / Matroska)
]

# ISO base media brands that are MP4 (not HEIC, AVIF or QuickTime, which share the box).
MP4_BRANDS = {
    b"isom",
    b"iso2",
    b"iso4",
    b"iso5",
    b"iso6",
    b"mp41",
    b"mp42",
    b"avc1",
    b"M4A ",
    b"M4V ",
    b"M4B ",
    b"dash",
    b"mmp4",
    b"f4v ",
    b"MSNV",
}

# Markup that browsers would run if it were ever served as HTML: never "plain text".
_MARKUP = re.compile(
    rb"^\s*(<!doctype|<html|<head|<body|<script|<svg|<\?xml|<\?php|<iframe|<object|<embed|<!--)",
    re.IGNORECASE,
)

# Declared types that mean the same as what we detect.
ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "audio/mp3": "audio/mpeg",
    "audio/mp4": "video/mp4",
    "audio/x-m4a": "video/mp4",
    "application/ogg": "audio/ogg",
    "video/ogg": "audio/ogg",
    "audio/webm": "video/webm",
    "video/x-matroska": "video/webm",
    "application/x-zip-compressed": "application/zip",
}
GENERIC = {"", "application/octet-stream", "binary/octet-stream"}
IMAGES = {"image/png", "image/jpeg", "image/gif", "image/webp"}
INLINE = IMAGES | {"audio/mpeg", "audio/ogg", "video/mp4", "video/webm"}


def detect(head: bytes) -> str | None:
    """The content type of a file starting with `head`, or None when unknown."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    for magic, offset, mime in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return mime
    if head[4:8] == b"ftyp" and head[8:12] in MP4_BRANDS:
        return "video/mp4"
    if _mpeg_frame(head):
        return "audio/mpeg"  # an MPEG audio frame without ID3 tags
    return "text/plain" if _is_text(head) else None


def _mpeg_frame(head: bytes) -> bool:
    """An MP3 (MPEG audio layer III) frame header: sync bits, no reserved version, bitrate
    or sample rate. Layer I and II are not MP3, which also keeps UTF-16 text (FF FE…, a
    well-formed layer I header) from passing as audio."""
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version, layer = (head[1] >> 3) & 3, (head[1] >> 1) & 3
    bitrate, rate = head[2] >> 4, (head[2] >> 2) & 3
    return version != 1 and layer == 1 and bitrate not in (0, 15) and rate != 3


def _is_text(head: bytes) -> bool:
    if b"\x00" in head or _MARKUP.match(head.lstrip(b"\xef\xbb\xbf")):
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # The head may end inside a multi-byte character; only that tail may fail.
        if exc.start < len(head) - 3:
            return False
    return True


def normalise(declared: str | None) -> str:
    """`Image/JPG; charset=x` -> `image/jpeg`."""
    base = (declared or "").split(";")[0].strip().lower()
    return ALIASES.get(base, base)
