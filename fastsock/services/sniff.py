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
    (b"ftyp", 4, "video/mp4"),
]

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
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "audio/mpeg"  # an MPEG audio frame header without ID3 tags
    return "text/plain" if _is_text(head) else None


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
