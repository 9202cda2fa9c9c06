"""Issue 5, item 12: message search (room, sender, highlighted match, click to jump to the
message in context) and the profile (display name, status, avatar with preview; others see
the change)."""

import re

from playwright.async_api import expect

from tests.e2e.attachments_data import png_bytes
from tests.e2e.helpers import message, open_room, send, shot, signed_in


async def test_search_highlights_and_jumps_to_the_message_in_context(new_page, api) -> None:
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    room = await api.group(alice, bob)
    name = (await api.get(f"/rooms/{room}", alice)).body["name"]
    dm = (await api.post("/rooms/direct", {"user_id": bob.id}, alice)).body["id"]
    for i in range(90):
        text = "where is the needle in this haystack" if i == 20 else f"filler {i:02d}"
        await api.send(bob if i % 2 else alice, room, text)
    await api.send(alice, dm, "a needle for Bob")
    page = await signed_in(new_page, alice)

    search = page.get_by_test_id("search-input")
    await search.fill("needle")
    await search.press("Enter")
    results = page.get_by_test_id("search-result")
    await expect(results).to_have_count(2)
    await expect(page.get_by_test_id("search-status")).to_have_text("2 results for “needle”")
    first = results.nth(0)
    await expect(first).to_contain_text("Bob")  # the DM, newest first
    second = results.nth(1)
    await expect(second).to_contain_text(name)
    await expect(second.locator("mark")).to_have_text("needle")
    await expect(second.get_by_test_id("search-result-text")).to_have_text(
        "where is the needle in this haystack"
    )
    await shot(page, "search")

    await second.click()
    await expect(page.get_by_test_id("conversation-title")).to_have_text(name)
    target = message(page, "where is the needle in this haystack")
    await expect(target).to_be_in_viewport()
    await expect(target).to_have_class(re.compile("highlight"))
    await expect(message(page, "filler 19")).to_be_attached()
    await expect(message(page, "filler 21")).to_be_attached()
    await expect(message(page, "filler 89")).to_have_count(0)  # not loaded yet
    await page.get_by_test_id("jump-latest").click()
    await expect(message(page, "filler 89")).to_be_in_viewport()


async def test_profile_changes_are_seen_by_others(new_page, api) -> None:
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    await api.post("/rooms/direct", {"user_id": bob.id}, alice)
    page = await signed_in(new_page, alice)
    bob_page = await signed_in(new_page, bob)
    await open_room(bob_page, "Alice")
    await open_room(page, "Bob")

    await page.get_by_test_id("profile-button").click()
    dialog = page.get_by_role("dialog", name="Your profile")
    await expect(dialog.get_by_label("Display name")).to_be_focused()
    await dialog.get_by_label("Display name").fill("Alice Cooper")
    await dialog.get_by_label("Status message").fill("On tour until Friday")
    await dialog.get_by_test_id("avatar-input").set_input_files(
        {"name": "me.png", "mimeType": "image/png", "buffer": png_bytes(200, 200)}
    )
    await expect(dialog.get_by_alt_text("New avatar preview")).to_be_visible()
    await shot(page, "profile")
    await dialog.get_by_test_id("profile-save").click()
    await expect(dialog).to_have_count(0)
    await expect(page.get_by_test_id("profile-button")).to_contain_text("Alice Cooper")
    await expect(page.get_by_test_id("profile-button").locator("img")).to_have_attribute(
        "src", re.compile("^blob:")
    )

    # Bob's client hears of it at once (user.updated), before her next message.
    await send(page, "new look!")
    await expect(bob_page.get_by_test_id("conversation-title")).to_have_text("Alice Cooper")
    await expect(bob_page.get_by_test_id("conversation-subtitle")).to_contain_text(
        "On tour until Friday"
    )
    row = message(bob_page, "new look!")
    await expect(row.get_by_test_id("message-sender")).to_have_text("Alice Cooper")
    await expect(row.locator(".avatar img")).to_have_attribute("src", re.compile("^blob:"))
