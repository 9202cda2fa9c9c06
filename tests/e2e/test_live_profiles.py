"""Issue 14, item 5: live profiles. Bob changes his name, status and avatar; Alice sees each
change at once (the room list, the conversation header, the timeline's names), without a
reload, and so does Bob's other tab. Alice's clock is frozen: no periodic refresh can stand
in for the `user.updated` event."""

import re

from playwright.async_api import Page, expect

from tests.e2e.attachments_data import png_bytes
from tests.e2e.helpers import freeze_time, message, open_room, room_item, signed_in, until
from tests.support import Api

SOCKET = "window.__fs.store.socket"


async def _save_profile(
    page: Page, *, name: str | None = None, status: str | None = None, picture: bytes = b""
) -> None:
    """The page's own profile dialog: fill what is given, save, wait for it to close."""
    await page.get_by_test_id("profile-button").click()
    dialog = page.get_by_role("dialog", name="Your profile")
    if name is not None:
        await dialog.get_by_label("Display name").fill(name)
    if status is not None:
        await dialog.get_by_label("Status message").fill(status)
    if picture:
        await dialog.get_by_test_id("avatar-input").set_input_files(
            {"name": "me.png", "mimeType": "image/png", "buffer": picture}
        )
    await dialog.get_by_test_id("profile-save").click()
    await expect(dialog).to_have_count(0)


async def test_name_status_and_avatar_changes_show_at_once(new_page, api: Api) -> None:
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    dm = (await api.post("/rooms/direct", {"user_id": bob.id}, alice)).body["id"]
    await api.send(bob, dm, "hello from bob")
    # Bob first, so that Alice's page learns nothing from his coming online.
    bob_page = await signed_in(new_page, bob)
    bob_other_tab = await signed_in(new_page, bob)
    page = await signed_in(new_page, alice, fake_clock=True)
    await open_room(page, "Bob")
    row = message(page, "hello from bob")
    await expect(row.get_by_test_id("message-sender")).to_have_text("Bob")
    await until(page, f"{SOCKET}.state === 'open'")
    await freeze_time(page)
    await page.evaluate("window.__notReloaded = true")

    await _save_profile(bob_page, name="Bobby Tables", status="Out to lunch")
    await expect(room_item(page, "Bobby Tables")).to_be_visible()
    await expect(page.get_by_test_id("conversation-title")).to_have_text("Bobby Tables")
    await expect(page.get_by_test_id("conversation-subtitle")).to_contain_text("Out to lunch")
    await expect(row.get_by_test_id("message-sender")).to_have_text("Bobby Tables")
    await expect(bob_other_tab.get_by_test_id("profile-button")).to_contain_text("Bobby Tables")

    await _save_profile(bob_page, picture=png_bytes(120, 120))
    blob = re.compile("^blob:")
    await expect(room_item(page, "Bobby Tables").locator(".avatar img")).to_have_attribute(
        "src", blob
    )
    await expect(row.locator(".avatar img")).to_have_attribute("src", blob)
    await expect(bob_other_tab.get_by_test_id("profile-button").locator("img")).to_have_attribute(
        "src", blob
    )
    await _save_profile(bob_page, status="Back at my desk")
    await expect(page.get_by_test_id("conversation-subtitle")).to_contain_text("Back at my desk")
    assert await page.evaluate("window.__notReloaded === true")
