"""Images: size limits checked before any pixel is decoded, a metadata-free copy, dimensions
and a thumbnail, with Pillow. Runs in worker threads (CPU-bound), in two steps: `prepare`
(headers only) says how much memory `render` (the decode) will hold, so the caller can
refuse or queue the decode before it starts."""

from __future__ import annotations

import ctypes
import platform
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from fastsock.services import image_metadata

# Frames x canvas: the pixels a viewer's browser decodes to play an animation once
# (about 10 s of 1080p at 24 frames a second).
MAX_ANIMATION_PIXELS = 500_000_000
# Peak decode memory per canvas pixel (checked with bench/uploads.py --images). Pillow decodes
# WebP (even a still one) through libwebp's animation decoder: two canvases of its own, the
# copy it hands over and Pillow's image, all RGBA. Other formats hold Pillow's image (1 to 4
# bytes a pixel), at most twice (see `prepare`); a JPEG that stays upright is decoded at the
# thumbnail's scale.
WEBP_BYTES_PER_PIXEL = 16
MOST_BYTES_PER_PIXEL = 8  # two copies of an RGB(A) image
_MMAP_THRESHOLD = 1024 * 1024  # bytes: larger allocations are returned to the system when freed
THUMBNAIL_SIZE = (320, 320)
THUMBNAIL_TYPE = "image/webp"
_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF", "image/webp": "WEBP"}
# EXIF orientation -> the turn that shows the picture upright.
_TURNS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Turns that swap width and height.
_SIDEWAYS = frozenset(_TURNS[orientation] for orientation in (5, 6, 7, 8))


class ImageRejected(Exception):
    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


@dataclass(frozen=True, slots=True)
class Plan:
    width: int  # as shown, after the EXIF orientation
    height: int
    turn: Image.Transpose | None  # a still whose EXIF orientation asks for a turn
    decode_bytes: int  # pixel memory the decode holds at its peak


def prepare(source: Path, content_type: str, clean: Path, max_pixels: int) -> Plan:
    """Write `source` without metadata to `clean` and plan its decode, reading headers only.
    Refuses images past the limits (ImageRejected) before any pixel is decoded."""
    try:
        layout = image_metadata.strip(source, content_type, clean)
    except image_metadata.Malformed as exc:
        raise ImageRejected("the image cannot be decoded") from exc
    pixels = layout.width * layout.height
    size = f"{layout.width}x{layout.height}"
    if pixels > max_pixels:
        raise ImageRejected(
            f"images are limited to {max_pixels / 1e6:g} megapixels; this one is {size}",
            too_large=True,
        )
    if layout.frames * pixels > MAX_ANIMATION_PIXELS:
        raise ImageRejected(
            f"animations are limited to {MAX_ANIMATION_PIXELS / 1e6:g} megapixels over all "
            f"frames; this one has {layout.frames} frames of {size}",
            too_large=True,
        )
    # Animations keep their frames as sent, so they are never turned.
    turn = _turn(layout.exif) if layout.frames == 1 else None
    fmt = _FORMATS[content_type]
    if fmt == "WEBP":  # opening a WebP allocates the decoder's canvases: not before the check
        decode_bytes = pixels * WEBP_BYTES_PER_PIXEL
    else:
        try:
            with _open(clean, fmt, turn) as im:  # headers only
                # A second copy: the turned image, APNG's frame buffer, or the premultiplied
                # copy Pillow shrinks an image with transparency through.
                twice = turn is not None or layout.frames > 1 or im.mode in ("RGBA", "LA")
                copies = 2 if twice else 1
                decode_bytes = im.width * im.height * _bytes_per_pixel(im.mode) * copies
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise ImageRejected("the image cannot be decoded") from exc
    width, height = layout.width, layout.height
    if turn in _SIDEWAYS:
        width, height = height, width
    return Plan(width, height, turn, decode_bytes)


def render(clean: Path, content_type: str, plan: Plan, thumbnail: Path) -> None:
    """Decode `clean` (which checks its data), turn a still upright if its EXIF said so
    (re-encoding it in place) and write the thumbnail of its first frame."""
    fmt = _FORMATS[content_type]
    try:
        if plan.turn is None:
            with _open(clean, fmt, None) as im:
                im.load()
                _write_thumbnail(im, thumbnail)
        else:
            upright = _decode_turned(clean, fmt, plan.turn)
            options = {"JPEG": {"quality": 92}, "WEBP": {"quality": 92}, "PNG": {}}[fmt]
            upright.save(clean, fmt, icc_profile=upright.info.get("icc_profile"), **options)
            _write_thumbnail(upright, thumbnail)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageRejected("the image cannot be decoded") from exc


def return_freed_memory() -> None:
    """Make glibc hand large blocks (decoded images) back to the system when they are freed.
    By default it raises its mmap threshold to the size of the first such block freed, and
    later blocks come from per-thread heaps that keep their memory: decodes on different
    worker threads then each leave hundreds of MiB resident (bench/README.md, --images)."""
    if platform.libc_ver()[0] != "glibc":
        return
    m_mmap_threshold = -3
    ctypes.CDLL(None).mallopt(m_mmap_threshold, _MMAP_THRESHOLD)


def _open(path: Path, fmt: str, turn: Image.Transpose | None) -> Image.Image:
    im = Image.open(path, formats=[fmt])
    if fmt == "JPEG" and turn is None:
        # Only the thumbnail needs pixels: libjpeg decodes at 1/2, 1/4 or 1/8 scale directly.
        im.draft(None, _fit(im.size, (THUMBNAIL_SIZE[0] * 2, THUMBNAIL_SIZE[1] * 2)))
    return im


def _decode_turned(path: Path, fmt: str, turn: Image.Transpose) -> Image.Image:
    """The image turned upright; the decoded original is released on return."""
    with _open(path, fmt, turn) as im:
        im.load()
        upright = im.transpose(turn)
    # The file is already clean; keep only what the pixels need, so nothing else is re-encoded.
    upright.info = {k: v for k, v in im.info.items() if k in ("icc_profile", "transparency")}
    return upright


def _write_thumbnail(im: Image.Image, target: Path) -> None:
    """Shrink `im` (in place when it can) and write it as a WebP thumbnail."""
    icc = im.info.get("icc_profile") if im.mode in ("RGB", "RGBA") else None  # an RGB profile
    if im.mode not in ("RGB", "RGBA", "L", "LA", "CMYK"):
        # Palette, 1-bit or 16-bit: shrink first (nearest neighbour, the only filter palettes
        # have) to twice the box, so the conversion copies a small image, not the full one.
        big = (THUMBNAIL_SIZE[0] * 2, THUMBNAIL_SIZE[1] * 2)
        im = im.resize(_fit(im.size, big), Image.Resampling.NEAREST).convert("RGBA")
    im.thumbnail(THUMBNAIL_SIZE)
    im.save(target, "WEBP", quality=80, icc_profile=icc)


def _fit(size: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """`size` scaled down to fit in `box`, keeping its aspect ratio (never scaled up)."""
    scale = min(box[0] / size[0], box[1] / size[1], 1.0)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _bytes_per_pixel(mode: str) -> int:
    """What Pillow stores per pixel: one byte for 1-bit, grey and palette images, two for
    16-bit grey, four for everything else (RGB is padded to four)."""
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode.startswith("I;16") else 4


def _turn(exif: bytes | None) -> Image.Transpose | None:
    if exif is None:
        return None
    tags = Image.Exif()
    try:
        tags.load(exif)
        orientation = tags.get(0x0112, 1)
    except Exception:  # broken EXIF (it is dropped anyway): nothing to turn
        return None
    return _TURNS.get(orientation) if isinstance(orientation, int) else None
