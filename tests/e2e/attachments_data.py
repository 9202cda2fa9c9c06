"""Generated test files."""

import io
import os

from PIL import Image


def png_bytes(width: int = 640, height: int = 400) -> bytes:
    """A PNG of random pixels (incompressible, so its size is predictable)."""
    img = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()
