"""Images: dimensions, EXIF removal and thumbnails with Pillow, guarded against
decompression bombs. Runs in a worker thread (CPU-bound)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

# 24 megapixels (a 6000x4000 photo); decoding more is refused before any pixel is read.
# Decoding takes several full-size copies (about 18 bytes a pixel at peak).
MAX_PIXELS = 24_000_000
THUMBNAIL_SIZE = (320, 320)
THUMBNAIL_TYPE = "image/webp"
_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF", "image/webp": "WEBP"}


class ImageRejected(Exception):
    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


@dataclass(frozen=True, slots=True)
class ImageInfo:
    width: int
    height: int


def process(source: Path, content_type: str, clean: Path, thumbnail: Path) -> ImageInfo:
    """Write a metadata-free copy of the image to `clean` and a thumbnail to `thumbnail`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise ImageRejected(
                        f"images are limited to {MAX_PIXELS // 1_000_000} megapixels",
                        too_large=True,
                    )
                if im.format != _FORMATS[content_type]:
                    raise ImageRejected("the image does not decode as its type")
                im.load()
                if content_type == "image/gif":
                    # GIF carries no EXIF; re-encoding would lose animation. Keep as sent.
                    clean.write_bytes(source.read_bytes())
                    frame = im.convert("RGBA")
                else:
                    # Keep the visible orientation (a copy only when EXIF asks for a turn).
                    frame = ImageOps.exif_transpose(im) if im.getexif().get(0x0112, 1) != 1 else im
                    _save_clean(frame, clean, _FORMATS[content_type])
                info = ImageInfo(frame.width, frame.height)
                thumb = frame.copy()
                thumb.thumbnail(THUMBNAIL_SIZE)
                thumb.save(thumbnail, "WEBP", quality=80)
                return info
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected("the image is too large to decode", too_large=True) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageRejected("the image cannot be decoded") from exc


def _save_clean(image: Image.Image, target: Path, fmt: str) -> None:
    """Re-encode without EXIF, XMP, ICC-free text chunks or comments."""
    if fmt == "JPEG" and image.mode not in ("RGB", "L", "CMYK"):
        image = image.convert("RGB")
    options = {"JPEG": {"quality": 92}, "WEBP": {"quality": 92}, "PNG": {"optimize": False}}[fmt]
    # A fresh image with only the pixels: no info dict, so nothing is carried over.
    bare = Image.new(image.mode, image.size)
    bare.paste(image)
    if image.mode == "P":
        bare.putpalette(image.getpalette() or [])
    if fmt == "PNG" and "transparency" in image.info:
        options["transparency"] = image.info["transparency"]  # pixels, not metadata
    bare.save(target, fmt, **options)
