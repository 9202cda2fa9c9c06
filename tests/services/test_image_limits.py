"""The shared decode-memory budget, the image size setting, and files whose structure is broken."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from fastsock.config import ConfigError, load_settings
from fastsock.services import image_metadata
from fastsock.services.memory_budget import MemoryBudget


async def test_budget_bounds_bytes_and_holders_and_serves_in_order() -> None:
    budget = MemoryBudget(100, slots=2)
    order: list[str] = []
    release = {name: asyncio.Event() for name in "abcd"}

    async def use(name: str, amount: int) -> None:
        async with budget.hold(amount):
            order.append(name)
            await release[name].wait()

    a = asyncio.create_task(use("a", 60))
    await asyncio.sleep(0)
    b = asyncio.create_task(use("b", 50))  # does not fit next to a: waits
    c = asyncio.create_task(use("c", 10))  # would fit, but b came first
    await asyncio.sleep(0)
    assert order == ["a"] and budget.waiting == 2
    release["a"].set()
    await a
    await asyncio.sleep(0)
    assert order == ["a", "b", "c"] and budget.waiting == 0  # 60 bytes, 2 holders: both fit
    d = asyncio.create_task(use("d", 1))  # the two slots are taken
    await asyncio.sleep(0)
    assert budget.waiting == 1
    release["b"].set()
    await b
    await asyncio.sleep(0)
    assert order == ["a", "b", "c", "d"]
    release["c"].set()
    release["d"].set()
    await asyncio.gather(c, d)


async def test_a_cancelled_waiter_gives_way_and_keeps_nothing() -> None:
    budget = MemoryBudget(100, slots=4)
    held = asyncio.Event()
    done = asyncio.Event()

    async def big() -> None:
        async with budget.hold(90):
            held.set()
            await done.wait()

    first = asyncio.create_task(big())
    await held.wait()
    blocked = asyncio.create_task(budget.hold(50).__aenter__())
    small = asyncio.create_task(budget.hold(10).__aenter__())  # queued behind `blocked`
    await asyncio.sleep(0)
    assert budget.waiting == 2
    blocked.cancel()
    await asyncio.gather(blocked, return_exceptions=True)
    await asyncio.wait_for(small, 5)  # no longer held up by the cancelled one
    assert budget.waiting == 0
    done.set()
    await first
    async with budget.hold(90):  # 90 + the 10 still held by `small`: everything came back
        pass


async def test_more_than_the_whole_budget_is_an_error() -> None:
    with pytest.raises(ValueError):
        async with MemoryBudget(100, slots=1).hold(101):
            pass


def test_max_image_megapixels_setting() -> None:
    assert load_settings({}).max_image_megapixels == 40
    assert load_settings({"FASTSOCK_MAX_IMAGE_MEGAPIXELS": "24.5"}).max_image_megapixels == 24.5
    for bad in ("0", "-3", "many", "90"):
        with pytest.raises(ConfigError) as info:
            load_settings({"FASTSOCK_MAX_IMAGE_MEGAPIXELS": bad})
        assert "FASTSOCK_MAX_IMAGE_MEGAPIXELS" in str(info.value)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        ("image/jpeg", b"\xff\xd8\xff\xe0\x00\x10JFIF"),  # a segment cut short
        ("image/jpeg", b"\xff\xd8\xff\xdb\x00\x04\x00\x00\xff\xd9"),  # no frame header
        ("image/png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00"),
        ("image/png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\x00IEND\xae\x42\x60\x82"),  # no header
        ("image/gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00\x2c\x00\x00"),
        ("image/gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"),  # no frame
        ("image/webp", b"RIFF\xff\x00\x00\x00WEBPVP8 "),  # longer than the file
        ("image/webp", b"RIFF\x04\x00\x00\x00WEBP"),  # no image
    ],
)
def test_broken_structure_is_malformed(tmp_path: Path, kind: str, data: bytes) -> None:
    source = tmp_path / "in"
    source.write_bytes(data)
    with pytest.raises(image_metadata.Malformed):
        image_metadata.strip(source, kind, tmp_path / "out")


def _image(fmt: str, **options: Any) -> bytes:
    buf = BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buf, fmt, **options)
    return buf.getvalue()


def _jpeg_comments(count: int) -> bytes:
    jpeg = _image("JPEG")
    return jpeg[:2] + b"\xff\xfe\x00\x02" * count + jpeg[2:]  # empty COM segments


def _png_chunks(count: int) -> bytes:
    png = _image("PNG")
    after_header = 8 + 25  # the signature and IHDR
    return png[:after_header] + b"\x00\x00\x00\x00ziLc\x00\x00\x00\x00" * count + png[after_header:]


def _gif_after_header(extra: bytes) -> bytes:
    gif = _image("GIF")
    flags = gif[10]
    start = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    return gif[:start] + extra + gif[start:]


def _gif_comments(count: int) -> bytes:
    return _gif_after_header(b"\x21\xfe\x00" * count)  # empty comment extensions


def _gif_sub_blocks(count: int) -> bytes:
    return _gif_after_header(b"\x21\xfe" + b"\x01x" * count + b"\x00")  # one-byte sub-blocks


def _webp_chunks(count: int) -> bytes:
    body = _image("WEBP", lossless=True)[12:] + b"ziLc\x00\x00\x00\x00" * count
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


@pytest.mark.parametrize(
    ("kind", "build", "limit", "what"),
    [
        ("image/jpeg", _jpeg_comments, image_metadata.MAX_JPEG_SEGMENTS, "JPEG segments"),
        ("image/png", _png_chunks, image_metadata.MAX_PNG_CHUNKS, "PNG chunks"),
        ("image/gif", _gif_comments, image_metadata.MAX_GIF_BLOCKS, "GIF blocks"),
        ("image/gif", _gif_sub_blocks, image_metadata.MAX_GIF_SUB_BLOCKS, "GIF sub-blocks"),
        ("image/webp", _webp_chunks, image_metadata.MAX_WEBP_CHUNKS, "WebP chunks"),
    ],
)
def test_absurd_structure_counts_are_malformed(
    tmp_path: Path, kind: str, build: Callable[[int], bytes], limit: int, what: str
) -> None:
    """A file of nothing but tiny structures would keep a worker (and the GIL) busy for
    seconds: past a count no real image comes near, it is refused before its walk is done."""
    source, clean = tmp_path / "in", tmp_path / "out"
    source.write_bytes(build(100))  # the same structures, a plausible number of them: fine
    assert image_metadata.strip(source, kind, clean).width == 8
    source.write_bytes(build(limit))
    with pytest.raises(image_metadata.Malformed, match=f"more than {limit:,} {what}"):
        image_metadata.strip(source, kind, clean)


def test_jpeg_fill_bytes_before_a_marker_are_skipped(tmp_path: Path) -> None:
    jpeg = _image("JPEG")
    source, clean = tmp_path / "in", tmp_path / "out"
    source.write_bytes(jpeg)
    image_metadata.strip(source, "image/jpeg", clean)
    expected = clean.read_bytes()
    source.write_bytes(jpeg[:2] + b"\xff" * 1000 + jpeg[2:])
    image_metadata.strip(source, "image/jpeg", clean)
    assert clean.read_bytes() == expected
    source.write_bytes(jpeg[:2] + b"\xff" * 1000)  # fill bytes, then the file ends
    with pytest.raises(image_metadata.Malformed):
        image_metadata.strip(source, "image/jpeg", clean)
