"""Uploads: validation of a spooled file, storage, access control and garbage collection.

The HTTP layer streams the request body into a spool file (never into memory) and hands it
here. Nothing is stored unless the content is an allowed type that matches what was
declared; images are stored without metadata and get a thumbnail."""

from __future__ import annotations

import asyncio
import contextlib
import re
import unicodedata
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastsock.blobs import BlobStore
from fastsock.config import Settings
from fastsock.errors import ApiError, Forbidden, InvalidRequest, NotAMember, NotFound, TooLarge
from fastsock.metrics import Metrics
from fastsock.services import fields, images
from fastsock.services.clock import now
from fastsock.services.limits import Throttles
from fastsock.services.memory_budget import MemoryBudget
from fastsock.services.sniff import GENERIC, HEAD_BYTES, IMAGES, INLINE, detect, normalise
from fastsock.store import Store
from fastsock.store.ids import new_id

Doc = dict[str, Any]

NAME_MAX = 200
UNATTACHED_TTL = timedelta(days=1)
IMAGE_WORKERS = 2  # images stripped or decoded at once (CPU-bound, holding the GIL)
MIB = 1024 * 1024
GC_BATCH = 1000  # uploads per sweep; the rest wait for the next one
# Control and reserved characters, and bidirectional overrides (which can make
# "invoice\u202efdp.exe" display as "invoiceexe.pdf").
_UNSAFE_NAME = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|\u202a-\u202e\u2066-\u2069]+')


class UnsupportedType(ApiError):
    status, code = 415, "unsupported_type"


def sanitise_filename(name: str | None) -> str:
    """A display-safe file name: no path, no control or reserved characters, bounded."""
    name = unicodedata.normalize("NFC", name or "")
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE_NAME.sub("_", name).strip().lstrip(".")
    if len(name) > NAME_MAX:  # shorten the stem, keep a short extension
        stem, dot, ext = name.rpartition(".")
        keep = f"{dot}{ext}" if stem and len(ext) <= 10 else ""
        name = name[: NAME_MAX - len(keep)] + keep
    return name or "upload"


def upload_view(doc: Doc) -> Doc:
    upload_id = str(doc["_id"])
    view: Doc = {
        "id": upload_id,
        "url": f"/uploads/{upload_id}",
        "content_type": doc["content_type"],
        "size": doc["size"],
        "name": doc["name"],
    }
    if doc.get("width"):
        view.update(
            width=doc["width"],
            height=doc["height"],
            thumbnail_url=f"/uploads/{upload_id}/thumbnail",
        )
    return view


class Uploads:
    def __init__(
        self,
        store: Store,
        blobs: BlobStore,
        settings: Settings,
        throttles: Throttles,
        metrics: Metrics,
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.throttles = throttles
        self.metrics = metrics
        self.max_bytes = settings.max_upload_bytes
        self.allowed = set(settings.upload_types)
        self.spool_dir = settings.spool_path
        self.max_image_pixels = int(settings.max_image_megapixels * 1_000_000)
        images.return_freed_memory()
        # Decoding images is memory-hungry: however many arrive at once, the decodes together
        # hold at most what one still at the pixel limit needs turned upright. Its slots bound
        # the threads all image work takes.
        self.decoding = MemoryBudget(
            self.max_image_pixels * images.MOST_BYTES_PER_PIXEL, IMAGE_WORKERS
        )

    async def begin(self, user_id: str, declared_size: int | None) -> None:
        """Checks before any byte is read: the rate limit and a declared length."""
        try:
            await self.throttles.check("upload", user_id)
        except ApiError:
            self.refused("rate_limited")
            raise
        if declared_size is not None and declared_size > self.max_bytes:
            self.refused("too_large")
            raise self.too_large()

    def too_large(self) -> TooLarge:
        return TooLarge(f"uploads are limited to {self.max_bytes} bytes")

    def refused(self, reason: str) -> None:
        self.metrics.upload_refusals.labels(reason).inc()

    async def accept(
        self, user_id: str, spool: Path, size: int, declared: str | None, filename: str | None
    ) -> Doc:
        """Validate and store a fully received file; the caller removes `spool` afterwards."""
        try:
            return await self._accept(user_id, spool, size, declared, filename)
        except ApiError as exc:
            self.refused(exc.code)
            raise

    async def _accept(
        self, user_id: str, spool: Path, size: int, declared: str | None, filename: str | None
    ) -> Doc:
        if size == 0:
            raise InvalidRequest("the file is empty", field="file")
        with spool.open("rb") as f:
            head = f.read(HEAD_BYTES)
        actual = detect(head)
        if actual is None or actual not in self.allowed:
            raise UnsupportedType("this type of file is not allowed")
        claimed = normalise(declared)
        if claimed not in GENERIC and claimed != actual:
            raise UnsupportedType(f"the file is {actual}, not {claimed}")
        upload_id = new_id()
        doc: Doc = {
            "owner_id": user_id,
            "name": sanitise_filename(filename),
            "content_type": actual,
            "size": size,
            "created_at": now(),
            "attached": False,
            "avatar": False,
            "width": None,
            "height": None,
        }
        stored: list[str] = []
        clean, thumb = spool.with_suffix(".clean"), spool.with_suffix(".thumb")
        try:
            source = spool
            if actual in IMAGES:
                plan = await self._process_image(spool, actual, clean, thumb)
                doc.update(
                    width=plan.width,
                    height=plan.height,
                    size=clean.stat().st_size,
                    thumbnail_size=thumb.stat().st_size,
                )
                source = clean
                await self.blobs.put(thumb_key(upload_id), thumb, images.THUMBNAIL_TYPE)
                stored.append(thumb_key(upload_id))
            await self.blobs.put(upload_id, source, actual)
            stored.append(upload_id)
            record = await self.store.uploads.insert(upload_id, doc)
        except BaseException:
            for key in stored:  # nothing half-written survives a failure
                with contextlib.suppress(Exception):
                    await self.blobs.delete(key)
            raise
        finally:
            for path in (clean, thumb):
                path.unlink(missing_ok=True)
        self.metrics.uploads.inc()
        self.metrics.upload_bytes.inc(doc["size"])
        return upload_view(record)

    async def _process_image(self, spool: Path, kind: str, clean: Path, thumb: Path) -> images.Plan:
        """Write the clean copy and the thumbnail; refuses images past the limits before any
        pixel is decoded."""
        try:
            # Stripping holds no pixels but is CPU work too: it takes one of the decode slots,
            # so images never occupy more than IMAGE_WORKERS threads however many arrive.
            async with self.decoding.hold(0):
                plan = await asyncio.to_thread(
                    images.prepare, spool, kind, clean, self.max_image_pixels
                )
            if plan.decode_bytes > self.decoding.total:
                raise TooLarge(
                    f"the image would take {plan.decode_bytes / MIB:.1f} MiB to decode, more "
                    f"than the {self.decoding.total / MIB:.1f} MiB allowed; send it at a lower "
                    "resolution"
                )
            async with self.decoding.hold(plan.decode_bytes):
                await asyncio.to_thread(images.render, clean, kind, plan, thumb)
        except images.ImageRejected as exc:
            if exc.too_large:
                raise TooLarge(str(exc)) from None
            raise UnsupportedType(str(exc)) from None
        return plan

    # --- access ---------------------------------------------------------------------------

    async def readable(self, user_id: str, upload_id: Any) -> Doc:
        """The upload if the user may download it: its uploader, anyone for an avatar, or a
        member of a room where a (not deleted) message shares it. Otherwise 403, the same
        for uploads that do not exist."""
        upload_id = fields.object_id(upload_id, "upload_id")
        doc = await self.store.uploads.get(upload_id)
        if doc is not None and (str(doc["owner_id"]) == user_id or doc.get("avatar")):
            return doc
        if doc is not None:
            rooms = [str(m["room_id"]) for m in await self.store.memberships.for_user(user_id)]
            if rooms and await self.store.messages.shares_upload(upload_id, rooms):
                return doc
        raise NotAMember("no such file in a room you are a member of")

    async def for_message(self, user_id: str, upload_ids: list[str]) -> list[Doc]:
        """Attachment views for a message; only the sender's own uploads."""
        if not upload_ids:
            return []
        owned = {str(d["_id"]): d for d in await self.store.uploads.owned(user_id, upload_ids)}
        if len(owned) != len(upload_ids):
            raise Forbidden("you can only attach your own uploads", field="attachment_ids")
        return [upload_view(owned[u]) for u in upload_ids]

    async def mark_attached(self, upload_ids: list[str]) -> None:
        if upload_ids:
            await self.store.uploads.mark(upload_ids, {"attached": True})

    async def release(self, upload_ids: list[str]) -> None:
        """Uploads no live message shares any more become collectable again."""
        for upload_id in upload_ids:
            await self._release_if_unused(upload_id)

    async def _release_if_unused(self, upload_id: str) -> None:
        doc = await self.store.uploads.get(upload_id)
        if doc is None or doc.get("avatar"):
            return
        if not await self.store.messages.shares_upload(upload_id, None):
            await self.store.uploads.mark([upload_id], {"attached": False})

    async def avatar(self, user_id: str, upload_id: str, previous: str | None) -> str:
        """Make the user's own image upload their avatar, retiring the previous one; returns
        the new avatar's URL (its thumbnail)."""
        docs = await self.store.uploads.owned(user_id, [upload_id])
        if not docs:
            raise Forbidden("you can only use your own uploads", field="avatar_upload_id")
        if docs[0]["content_type"] not in IMAGES:
            raise InvalidRequest("an avatar must be an image", field="avatar_upload_id")
        await self.store.uploads.mark([upload_id], {"attached": True, "avatar": True})
        if previous is not None and previous != upload_id:
            await self.store.uploads.mark([previous], {"avatar": False})
            await self._release_if_unused(previous)  # unless a message still shares it
        return f"/uploads/{upload_id}/thumbnail"

    @staticmethod
    def disposition(doc: Doc) -> str:
        """Media play inline; everything else downloads, so no upload ever renders as a page."""
        return "inline" if doc["content_type"] in INLINE else "attachment"

    @staticmethod
    def blob(doc: Doc, thumbnail: bool) -> tuple[str, str, int]:
        """(key, content type, size) of the file or of its thumbnail."""
        upload_id = str(doc["_id"])
        if thumbnail:
            if not doc.get("thumbnail_size"):
                raise NotFound("this file has no thumbnail")
            return thumb_key(upload_id), images.THUMBNAIL_TYPE, doc["thumbnail_size"]
        return upload_id, doc["content_type"], doc["size"]

    # --- garbage collection ---------------------------------------------------------------

    async def collect_garbage(self, older_than: timedelta = UNATTACHED_TTL) -> int:
        """Delete uploads never attached to a message (nor used as an avatar) after a day."""
        removed = 0
        cutoff = now() - older_than
        for doc in await self.store.uploads.unattached_before(cutoff, GC_BATCH):
            upload_id = str(doc["_id"])
            try:
                # Content first: a record without content is re-collected next time, while
                # content without a record would be orphaned for good.
                for key in (upload_id, thumb_key(upload_id)):
                    with contextlib.suppress(FileNotFoundError):
                        await self.blobs.delete(key)
            except ApiError:  # storage unavailable: try again on the next sweep
                continue
            if await self.store.uploads.delete_if_unattached(doc["_id"]):
                removed += 1
        return removed


def thumb_key(upload_id: str) -> str:
    """The key of an upload's thumbnail (also what `fastsock backup` looks for)."""
    return f"{upload_id}.thumb"
