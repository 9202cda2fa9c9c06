"""Issue 10, item 5: the client checks uploads against this server's limits (GET /config:
FASTSOCK_MAX_UPLOAD_BYTES and FASTSOCK_UPLOAD_TYPES), not figures built into it. Review of
issue 10, finding 17: the composer's picker offers every file (a file the browser has no type
for is the server's to judge, by its content); the avatar's offers this server's images."""

import io
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import expect

from fastsock.app import Server
from tests.conftest import make_settings
from tests.e2e.attachments_data import png_bytes
from tests.e2e.helpers import dm_pair
from tests.support import Api

MAX_BYTES = 2048
TYPES = ("image/png", "text/plain", "application/zip")


@pytest.fixture
async def web_server(db_uri: str | None, tmp_path: Path) -> AsyncIterator[Server]:
    """A server with a small upload limit and a short list of types."""
    settings = make_settings(db_uri, tmp_path, max_upload_bytes=MAX_BYTES, upload_types=TYPES)
    server = Server(settings)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def api(web_server: Server) -> Api:
    return Api(web_server.port)


def small_zip() -> bytes:
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        archive.writestr("notes.txt", "meeting notes\n")
    return data.getvalue()


async def test_uploads_are_checked_against_the_servers_limits(new_page, api: Api) -> None:
    *_, page, bob_page = await dm_pair(new_page, api)
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if "/uploads" in r.url else None)
    picker = page.get_by_test_id("file-input")
    items = page.get_by_test_id("upload-item")
    assert await picker.get_attribute("accept") is None

    # Over this server's limit (far below the default 25 MiB): refused before sending.
    await picker.set_input_files(
        {"name": "big.txt", "mimeType": "text/plain", "buffer": b"a" * 3000}
    )
    await expect(items.get_by_test_id("upload-error")).to_have_text(
        "Too large: 2.9 KB (the limit is 2.0 KB)"
    )
    await page.get_by_role("button", name="Remove big.txt").click()
    # A type the default list has but this server's does not.
    await picker.set_input_files(
        {"name": "report.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.4\n%%EOF\n"}
    )
    await expect(items.get_by_test_id("upload-error")).to_have_text(
        "This type of file can't be sent (application/pdf). Allowed: PNG, text or ZIP."
    )
    await page.get_by_role("button", name="Remove report.pdf").click()

    # A ZIP as Windows names it: the server takes it as application/zip, so does the client.
    await picker.set_input_files(
        {"name": "notes.zip", "mimeType": "application/x-zip-compressed", "buffer": small_zip()}
    )
    await expect(items).to_have_attribute("data-state", "done")
    # The first upload that left the page: the refused ones never did.
    assert [url.split("filename=")[1] for url in sent] == ["notes.zip"]
    await page.get_by_test_id("send-button").click()
    await expect(bob_page.get_by_test_id("file-card")).to_contain_text("notes.zip")

    # A file the browser has no type for: the server looks at its content (text) and takes it.
    await picker.set_input_files({"name": "minutes", "mimeType": "", "buffer": b"minutes\n"})
    await expect(items).to_have_attribute("data-state", "done")
    await page.get_by_test_id("send-button").click()
    await expect(bob_page.get_by_test_id("file-card")).to_contain_text(["notes.zip", "minutes"])

    # The avatar picker offers this server's image types only.
    await page.get_by_test_id("profile-button").click()
    avatar = page.get_by_test_id("avatar-input")
    await expect(avatar).to_have_attribute("accept", "image/png")
    await avatar.set_input_files({"name": "me.gif", "mimeType": "image/gif", "buffer": b"GIF89a"})
    await expect(page.get_by_test_id("profile-modal")).to_contain_text("Choose a PNG image.")
    await avatar.set_input_files(
        {"name": "me.png", "mimeType": "image/png", "buffer": png_bytes(8, 8)}
    )
    await expect(page.get_by_test_id("avatar-preview").locator("img")).to_be_visible()
