"""Uploaded images leave the server without metadata (EXIF and its GPS block, XMP, comments,
text chunks, IPTC, trailing data) in every accepted format, animations keep their frames and
durations, and the pixel, animation and decode-memory limits refuse images before they are
decoded, with a clear 413. All over real HTTP: upload, then download."""

from __future__ import annotations

import asyncio
import struct
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from PIL import ExifTags, Image, ImageChops, ImageCms
from PIL.PngImagePlugin import PngInfo

from fastsock.app import Server
from fastsock.services import image_metadata, images, uploads
from tests.conftest import make_settings
from tests.handlers.test_uploads import SECRET, fetch, upload, upload_count, wait_until
from tests.support import Api, User

PLACE = "Bahnhofstrasse-12"  # planted in EXIF's GPS block and in XMP
XMP = (
    '<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>'
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
    'xmlns:exif="http://ns.adobe.com/exif/1.0/" exif:GPSLatitude="52,31.2N" '
    f'exif:GPSAreaInformation="{PLACE}"/></rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
).encode()
ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
# Bytes that betray metadata: the planted values, XMP, EXIF and TIFF headers, PNG text chunks.
MARKERS = [
    SECRET.encode(),
    PLACE.encode(),
    b"XMP",
    b"xmpmeta",
    b"ns.adobe.com",
    b"Exif\x00\x00",
    b"eXIf",
    b"II*\x00",
    b"MM\x00*",
    b"tEXt",
    b"zTXt",
    b"iTXt",
]
COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
DURATIONS = [100, 200, 300]


def gps_exif(orientation: int | None = None) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = SECRET
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.IFD.GPSInfo] = {
        ExifTags.GPS.GPSLatitudeRef: "N",
        ExifTags.GPS.GPSLatitude: (52.0, 31.0, 12.0),
        ExifTags.GPS.GPSLongitudeRef: "E",
        ExifTags.GPS.GPSLongitude: (13.0, 24.0, 36.0),
        ExifTags.GPS.GPSAreaInformation: b"ASCII\x00\x00\x00" + PLACE.encode(),
    }
    return exif


def frames(
    mode: str = "RGB", count: int = 3, size: tuple[int, int] = (60, 40)
) -> list[Image.Image]:
    out = []
    for colour in COLOURS[:count]:
        im = Image.new("RGB", size, colour)
        im.paste((250, 250, 250), (5, 5, 20, 15))  # some structure
        out.append(im.convert(mode) if mode != "RGB" else im)
    return out


def encode(first: Image.Image, fmt: str, **options: Any) -> bytes:
    buf = BytesIO()
    first.save(buf, fmt, **options)
    return buf.getvalue()


def png_text() -> PngInfo:
    info = PngInfo()
    info.add_text("Comment", SECRET)  # tEXt
    info.add_text("Author", SECRET, zip=True)  # zTXt
    info.add_itxt("XML:com.adobe.xmp", XMP.decode())  # iTXt, how PNG carries XMP
    return info


def jpeg_segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def with_jpeg_extras(data: bytes) -> bytes:
    """An IPTC block (APP13, where captions and places go) and bytes after the image's end."""
    iptc = jpeg_segment(0xED, b"Photoshop 3.0\x008BIM\x04\x04\x00\x00" + SECRET.encode())
    return data[:2] + iptc + data[2:] + b"trailer: " + SECRET.encode()


def gif_with_extras(data: bytes) -> bytes:
    """XMP in an application extension (with the 258-byte trailer that makes it parse as
    sub-blocks) and a plain-text extension before the first image, bytes after the end."""
    flags = data[10]
    start = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    xmp = b"\x21\xff\x0bXMP DataXMP" + XMP + bytes([1, *range(255, -1, -1)]) + b"\x00"
    text = SECRET.encode()
    plain = b"\x21\x01\x0c" + bytes(12) + bytes([len(text)]) + text + b"\x00"
    return data[:start] + xmp + plain + data[start:] + SECRET.encode()


@dataclass(frozen=True)
class Sample:
    content_type: str
    data: bytes
    size: tuple[int, int]  # as shown
    frames: int = 1
    icc: bool = True  # carries an ICC profile, which must be kept (colour)
    turned: bool = False


def samples() -> dict[str, Sample]:
    still = frames(count=1)[0]
    anim = frames()
    animation = {"save_all": True, "append_images": anim[1:], "duration": DURATIONS, "loop": 0}
    jpeg = {"exif": gps_exif(), "xmp": XMP, "comment": SECRET.encode(), "icc_profile": ICC}
    return {
        "jpeg": Sample("image/jpeg", with_jpeg_extras(encode(still, "JPEG", **jpeg)), (60, 40)),
        "jpeg turned by EXIF": Sample(
            "image/jpeg",
            with_jpeg_extras(encode(still, "JPEG", **{**jpeg, "exif": gps_exif(6)})),
            (40, 60),
            turned=True,
        ),
        "png": Sample(
            "image/png",
            encode(still, "PNG", pnginfo=png_text(), exif=gps_exif(), icc_profile=ICC)
            + SECRET.encode(),
            (60, 40),
        ),
        "png turned by EXIF": Sample(
            "image/png",
            encode(still, "PNG", pnginfo=png_text(), exif=gps_exif(8), icc_profile=ICC),
            (40, 60),
            turned=True,
        ),
        "animated png": Sample(
            "image/png",
            encode(anim[0], "PNG", pnginfo=png_text(), exif=gps_exif(), **animation),
            (60, 40),
            frames=3,
            icc=False,
        ),
        "gif": Sample(
            "image/gif",
            gif_with_extras(encode(still.convert("P"), "GIF", comment=SECRET)),
            (60, 40),
            icc=False,
        ),
        "animated gif": Sample(
            "image/gif",
            gif_with_extras(encode(anim[0].convert("P"), "GIF", comment=SECRET, **animation)),
            (60, 40),
            frames=3,
            icc=False,
        ),
        "webp": Sample(
            "image/webp",
            encode(still, "WEBP", exif=gps_exif(), xmp=XMP, icc_profile=ICC),
            (60, 40),
        ),
        "webp turned by EXIF": Sample(
            "image/webp",
            encode(still, "WEBP", exif=gps_exif(5), xmp=XMP, icc_profile=ICC),
            (40, 60),
            turned=True,
        ),
        "animated webp": Sample(
            "image/webp",
            encode(anim[0], "WEBP", exif=gps_exif(), xmp=XMP, icc_profile=ICC, **animation),
            (60, 40),
            frames=3,
        ),
    }


SAMPLES = samples()


def frame_list(im: Image.Image) -> list[tuple[Image.Image, Any]]:
    """Every frame (as RGBA) with its duration."""
    out = []
    for index in range(getattr(im, "n_frames", 1)):
        im.seek(index)
        im.load()
        out.append((im.convert("RGBA"), im.info.get("duration")))
    return out


def assert_no_metadata(data: bytes, where: str) -> None:
    for marker in MARKERS:
        assert marker not in data, (where, marker)
    with Image.open(BytesIO(data)) as im:
        assert len(im.getexif()) == 0, (where, dict(im.getexif()))
        keys = {"exif", "xmp", "XML:com.adobe.xmp", "comment", "Comment", "Author"}
        assert not keys & set(im.info), (where, im.info)
        assert getattr(im, "text", {}) == {}, where  # PNG text chunks, wherever they are
        if im.format == "GIF":  # only the loop count's application extension is left
            assert im.info.get("extension", (b"NETSCAPE2.0",))[0].startswith(b"NETSCAPE2.0")


@pytest.mark.parametrize("label", list(SAMPLES))
async def test_metadata_is_removed_and_the_picture_kept(api: Api, label: str) -> None:
    sample = SAMPLES[label]
    for marker in (SECRET.encode(), PLACE.encode(), b"xmpmeta"):  # the sample carries it all
        assert marker in sample.data, marker
    alice = await api.register()
    r = await upload(api, alice, sample.data, sample.content_type, "holiday")
    assert r.status == 201, r.body
    assert (r.body["width"], r.body["height"]) == sample.size
    full = await fetch(api, r.body["url"], alice)
    assert full.code == 200 and r.body["size"] == len(full.body)
    assert_no_metadata(full.body, "file")
    thumb = await fetch(api, r.body["thumbnail_url"], alice)
    assert thumb.code == 200
    assert_no_metadata(thumb.body, "thumbnail")
    with Image.open(BytesIO(full.body)) as im, Image.open(BytesIO(sample.data)) as original:
        assert im.size == sample.size
        # Colour stays right: the ICC profile describes the pixels, not the photographer.
        assert im.info.get("icc_profile") == (ICC if sample.icc else None)
        got, sent = frame_list(im), frame_list(original)
        assert len(got) == sample.frames
        assert [duration for _, duration in got] == [duration for _, duration in sent]
        if sample.frames > 1:
            assert im.info.get("loop") == 0
        if not sample.turned:  # not re-encoded: the very same pixels, frame by frame
            for (mine, _), (theirs, _) in zip(got, sent, strict=True):
                assert ImageChops.difference(mine, theirs).getbbox() is None, label


# --- limits --------------------------------------------------------------------------------------


@pytest.fixture
async def one_megapixel(db_uri: str | None, tmp_path: Path) -> AsyncIterator[Server]:
    """A server whose image limit is 1 megapixel (8 MB of decode memory)."""
    server = Server(make_settings(db_uri, tmp_path, max_image_megapixels=1))
    await server.start()
    yield server
    await server.stop()


async def assert_refused(server: Server, api: Api, user: User, data: bytes, kind: str) -> str:
    """413 too_large with a message; nothing stored. Returns the message."""
    r = await upload(api, user, data, kind, "big")
    assert r.status == 413 and r.error_code == "too_large", r.body
    assert await upload_count(server) == 0
    spool = server.settings.spool_path
    assert not (spool.is_dir() and any(spool.iterdir()))
    return r.body["error"]["message"]


def flat_png(size: tuple[int, int], mode: str = "RGB") -> bytes:
    return encode(Image.new(mode, size), "PNG")


async def test_images_past_the_pixel_limit_are_refused(one_megapixel: Server) -> None:
    api = Api(one_megapixel.port)
    alice = await api.register()
    message = await assert_refused(one_megapixel, api, alice, flat_png((1001, 1000)), "image/png")
    assert message == "images are limited to 1 megapixels; this one is 1001x1000"
    # A GIF may grow its canvas with any later frame: every frame counts, not the header.
    small = encode(Image.new("P", (10, 10)), "GIF")
    large = encode(Image.new("P", (2000, 600)), "GIF")
    descriptor = b"\x2c" + struct.pack("<HHHH", 0, 0, 2000, 600)
    spliced = small[:-1] + large[large.index(descriptor) : -1] + b";"
    with Image.open(BytesIO(spliced)) as im:  # the header says 10x10; the second frame grows it
        assert im.size == (10, 10) and im.n_frames == 2
    message = await assert_refused(one_megapixel, api, alice, spliced, "image/gif")
    assert "2000x600" in message
    # A decoy second header after the pixels: decoders read the first one (2000x600).
    big = flat_png((2000, 600))
    decoy = flat_png((1, 1))
    header = decoy[8 : 8 + 25]  # length, "IHDR", 13 bytes, CRC
    r = await upload(api, alice, big[:-12] + header + big[-12:], "image/png", "decoy.png")
    assert r.status == 415 and r.error_code == "unsupported_type", r.body
    assert await upload_count(one_megapixel) == 0
    r = await upload(api, alice, flat_png((1000, 1000)), "image/png", "fits.png")
    assert r.status == 201, r.body


async def test_animations_are_limited_in_frames_times_size(
    one_megapixel: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(images, "MAX_ANIMATION_PIXELS", 2 * 60 * 40)
    api = Api(one_megapixel.port)
    alice = await api.register()
    anim = [im.convert("P") for im in frames()]
    three = encode(anim[0], "GIF", save_all=True, append_images=anim[1:], duration=100)
    message = await assert_refused(one_megapixel, api, alice, three, "image/gif")
    assert message == (
        "animations are limited to 0.0048 megapixels over all frames; "
        "this one has 3 frames of 60x40"
    )
    two = encode(anim[0], "GIF", save_all=True, append_images=anim[1:2], duration=100)
    r = await upload(api, alice, two, "image/gif", "two.gif")
    assert r.status == 201, r.body


async def test_images_that_would_take_too_much_memory_to_decode_are_refused(
    one_megapixel: Server,
) -> None:
    """WebP decodes at 16 bytes a pixel: within the pixel limit, but past the memory budget
    (8 bytes a pixel of the limit) above half of it."""
    api = Api(one_megapixel.port)
    alice = await api.register()
    webp = encode(Image.new("RGB", (1000, 1000)), "WEBP", lossless=True)
    message = await assert_refused(one_megapixel, api, alice, webp, "image/webp")
    assert message == (
        "the image would take 15.3 MiB to decode, more than the 7.6 MiB allowed; "
        "send it at a lower resolution"
    )
    webp = encode(Image.new("RGB", (700, 700)), "WEBP", lossless=True)
    r = await upload(api, alice, webp, "image/webp", "fits.webp")
    assert r.status == 201, r.body


async def test_parallel_uploads_share_one_decode_budget(
    one_megapixel: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each of these RGBA images needs more than half the budget: however many arrive at
    once, they are decoded one after the other."""
    active: list[int] = []
    most = 0
    lock = threading.Lock()
    release = threading.Event()
    render: Callable[..., None] = images.render

    def counting_render(*args: Any) -> None:
        nonlocal most
        with lock:
            active.append(1)
            most = max(most, len(active))
        try:
            assert release.wait(30)
            render(*args)
        finally:
            with lock:
                active.pop()

    monkeypatch.setattr(images, "render", counting_render)
    api = Api(one_megapixel.port)
    alice = await api.register()
    png = flat_png((1000, 900), "RGBA")  # 0.9 MP, two copies of 4 bytes a pixel: 7.2 MB
    assert one_megapixel.ctx is not None
    budget = one_megapixel.ctx.services.uploads.decoding
    sent = [asyncio.create_task(upload(api, alice, png, "image/png", f"{i}.png")) for i in range(3)]
    try:
        # Every upload has reached its decode: started, or waiting for its turn.
        assert await wait_until(lambda: len(active) + budget.waiting == 3, timeout=30)
        assert (len(active), budget.waiting) == (1, 2)
    finally:
        release.set()
    answers = await asyncio.gather(*sent)
    assert [r.status for r in answers] == [201, 201, 201], [r.body for r in answers]
    assert most == 1


# --- the cost of stripping -----------------------------------------------------------------------


async def test_images_of_absurdly_many_structures_are_refused(server: Server, api: Api) -> None:
    """A JPEG of nothing but empty comments would be millions of segments to walk; past
    image_metadata.MAX_JPEG_SEGMENTS it is refused as undecodable, and nothing is kept."""
    alice = await api.register()
    jpeg = encode(frames(count=1)[0], "JPEG")
    comments = jpeg_segment(0xFE, b"") * image_metadata.MAX_JPEG_SEGMENTS
    r = await upload(api, alice, jpeg[:2] + comments + jpeg[2:], "image/jpeg", "comments.jpg")
    assert r.status == 415 and r.error_code == "unsupported_type", r.body
    assert r.body["error"]["message"] == "the image cannot be decoded"
    assert await upload_count(server) == 0
    r = await upload(api, alice, jpeg[:2] + comments[:400] + jpeg[2:], "image/jpeg", "ok.jpg")
    assert r.status == 201, r.body


async def test_stripping_and_decoding_share_the_image_workers(
    server: Server, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stripping is CPU work like decoding: however many images arrive at once, at most
    IMAGE_WORKERS threads work on images, the others wait for a slot."""
    active: list[str] = []
    most = 0
    lock = threading.Lock()
    release = threading.Event()

    def counted(step: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any) -> Any:
            nonlocal most
            with lock:
                active.append(step.__name__)
                most = max(most, len(active))
            try:
                assert release.wait(30)
                return step(*args)
            finally:
                with lock:
                    active.remove(step.__name__)

        return run

    monkeypatch.setattr(images, "prepare", counted(images.prepare))
    monkeypatch.setattr(images, "render", counted(images.render))
    alice = await api.register()
    png = flat_png((40, 30))
    assert server.ctx is not None
    budget = server.ctx.services.uploads.decoding
    sent = [asyncio.create_task(upload(api, alice, png, "image/png", f"{i}.png")) for i in range(3)]
    try:
        # Every upload has reached its image work: started, or waiting for a slot.
        assert await wait_until(lambda: len(active) + budget.waiting == 3, timeout=30)
        assert (active, budget.waiting) == (["prepare", "prepare"], 1)
    finally:
        release.set()
    answers = await asyncio.gather(*sent)
    assert [r.status for r in answers] == [201, 201, 201], [r.body for r in answers]
    assert most == uploads.IMAGE_WORKERS == 2
