"""Issue 5, item 9: attachments by picker, drag and drop and paste; per-file progress with
cancel; retry after a failure; refusals before (size, type) and after upload (server 415);
image previews in both browsers, full size on click; file cards."""

import asyncio
import re

from playwright.async_api import expect

from tests.e2e.attachments_data import png_bytes
from tests.e2e.helpers import dm_pair, shot


async def _slow_uploads(page, gate: asyncio.Event):
    async def handler(route) -> None:
        await gate.wait()
        await route.continue_()

    await page.route("**/uploads?*", handler)


async def test_image_upload_shows_progress_then_preview_in_both_browsers(new_page, api) -> None:
    *_, page, bob_page = await dm_pair(new_page, api)
    gate = asyncio.Event()
    await _slow_uploads(page, gate)
    await page.get_by_test_id("file-input").set_input_files(
        {"name": "sunset.png", "mimeType": "image/png", "buffer": png_bytes()}
    )
    item = page.get_by_test_id("upload-item")
    await expect(item.get_by_test_id("upload-progress")).to_be_visible()
    await expect(page.get_by_test_id("send-button")).to_be_disabled()
    await expect(page.get_by_test_id("composer-hint")).to_have_text(
        "Waiting for uploads to finish…"
    )
    await page.get_by_test_id("composer-input").fill("the view from here")
    await shot(page, "upload-progress")
    gate.set()
    await expect(item).to_have_attribute("data-state", "done")
    await page.get_by_test_id("send-button").click()
    await expect(page.get_by_test_id("upload-tray")).to_be_hidden()

    for p in (page, bob_page):
        preview = p.get_by_test_id("image-preview")
        await expect(preview).to_be_visible()
        # Fetched with the token and shown through a blob: URL, never a token in a URL.
        await expect(preview).to_have_attribute("src", re.compile(r"^blob:"))
        assert await preview.evaluate("img => img.decode().then(() => img.naturalWidth)") > 0
    await shot(bob_page, "attachments")
    await bob_page.get_by_role("button", name="Open image sunset.png").click()
    viewer = bob_page.get_by_role("dialog", name="sunset.png")
    full = viewer.get_by_test_id("full-image")
    await expect(full).to_have_attribute("src", re.compile(r"^blob:"))
    assert await full.evaluate("img => img.decode().then(() => img.naturalWidth)") == 640
    await bob_page.keyboard.press("Escape")
    await expect(viewer).to_have_count(0)


async def test_cancel_retry_refusals_drop_and_paste(new_page, api) -> None:
    *_, page, bob_page = await dm_pair(new_page, api)
    items = page.get_by_test_id("upload-item")

    # Cancel while uploading.
    gate = asyncio.Event()
    await _slow_uploads(page, gate)
    await page.get_by_test_id("file-input").set_input_files(
        {"name": "slow.png", "mimeType": "image/png", "buffer": png_bytes(64, 64)}
    )
    await expect(items.get_by_test_id("upload-progress")).to_be_visible()
    await page.get_by_role("button", name="Cancel upload of slow.png").click()
    await expect(items).to_have_count(0)
    await page.unroute("**/uploads?*")

    # A network failure keeps the file and offers a retry.
    await page.route("**/uploads?*", lambda route: route.abort())
    await page.get_by_test_id("file-input").set_input_files(
        {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"meeting notes\n"}
    )
    await expect(items).to_have_attribute("data-state", "failed")
    await expect(items.get_by_test_id("upload-error")).to_contain_text("upload failed")
    await page.unroute("**/uploads?*")
    await items.get_by_test_id("upload-retry").click()
    await expect(items).to_have_attribute("data-state", "done")
    await page.get_by_test_id("send-button").click()
    card = bob_page.get_by_test_id("file-card")
    await expect(card).to_contain_text("notes.txt")
    await expect(card).to_contain_text("14 B · text/plain")
    await expect(card.get_by_role("button", name="Download notes.txt")).to_be_visible()

    # Refused before upload: type (picker) and size (drag and drop).
    await page.get_by_test_id("file-input").set_input_files(
        {"name": "setup.exe", "mimeType": "application/x-msdownload", "buffer": b"MZ\x90\x00"}
    )
    await expect(items.get_by_test_id("upload-error")).to_contain_text(
        "This type of file can't be sent (application/x-msdownload)"
    )
    await page.get_by_role("button", name="Remove setup.exe").click()
    await page.get_by_test_id("message-list").evaluate(
        """el => {
            const dt = new DataTransfer();
            const big = new Uint8Array(26 * 1024 * 1024);
            dt.items.add(new File([big], 'huge.zip', {type: 'application/zip'}));
            const opts = {dataTransfer: dt, bubbles: true, cancelable: true};
            el.dispatchEvent(new DragEvent('dragenter', opts));
            el.dispatchEvent(new DragEvent('drop', opts));
        }"""
    )
    await expect(items.get_by_test_id("upload-error")).to_contain_text("Too large: 26.0 MB")
    await page.get_by_role("button", name="Remove huge.zip").click()

    # Refused by the server after upload (content does not match the declared type): paste.
    await page.get_by_test_id("composer-input").evaluate(
        """el => {
            const dt = new DataTransfer();
            dt.items.add(new File(['just text'], 'report.pdf', {type: 'application/pdf'}));
            const opts = {clipboardData: dt, bubbles: true, cancelable: true};
            el.dispatchEvent(new ClipboardEvent('paste', opts));
        }"""
    )
    await expect(items).to_have_attribute("data-state", "refused")
    await expect(items.get_by_test_id("upload-error")).to_have_text(
        "File type not allowed: the file is text/plain, not application/pdf"
    )
