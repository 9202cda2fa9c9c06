"""Issue 5, item 6: edit and delete from a context menu (hover button, right click), optimistic
and propagated; rolled back with a visible error when the server refuses; tombstones.
Review 2, item 13: the editor's length counter from the start."""

from playwright.async_api import expect

from tests.e2e.helpers import dm_pair, message, send


async def test_edit_and_delete_propagate_to_the_other_browser(new_page, api) -> None:
    _, bob, dm, page, bob_page = await dm_pair(new_page, api)
    await send(page, "see you at 5")
    await expect(message(bob_page, "see you at 5")).to_be_visible()

    # Edit from the hover button's menu.
    row = message(page, "see you at 5")
    await row.hover()
    await row.get_by_test_id("message-actions").click()
    await page.get_by_role("menuitem", name="Edit").click()
    editor = page.get_by_test_id("edit-input")
    await expect(editor).to_be_focused()
    # The conversation re-renders while the editor is open (here: Bob writes); the caret stays.
    await api.send(bob, dm, "ok")
    await expect(message(page, "ok")).to_be_visible()
    await expect(editor).to_be_focused()
    await editor.fill("see you at 6")
    await editor.press("Enter")
    await expect(message(page, "see you at 6").get_by_test_id("edited")).to_have_text(" (edited)")
    await expect(message(bob_page, "see you at 6").get_by_test_id("edited")).to_be_visible()

    # Delete with a right click and the confirmation dialog.
    await page.get_by_test_id("message-text").filter(has_text="see you at 6").click(button="right")
    await page.get_by_role("menuitem", name="Delete").click()
    dialog = page.get_by_role("dialog", name="Delete message?")
    await dialog.get_by_role("button", name="Delete").click()
    await expect(page.get_by_test_id("tombstone")).to_have_text("This message was deleted")
    await expect(bob_page.get_by_test_id("tombstone")).to_have_text("This message was deleted")
    await expect(bob_page.get_by_text("see you at 6")).to_have_count(0)


async def test_a_refused_edit_rolls_back_with_a_visible_error(new_page, api) -> None:
    *_, page, bob_page = await dm_pair(new_page, api)
    await send(page, "short and sweet")
    row = message(page, "short and sweet")
    await expect(row.get_by_test_id("tick")).to_have_attribute("data-state", "read")
    await row.hover()
    await row.get_by_test_id("message-actions").click()
    await page.get_by_role("menuitem", name="Edit").click()
    # The server refuses bidirectional overrides in text (the client cannot know every rule).
    await page.get_by_test_id("edit-input").fill("reversed \u202e text")
    await page.get_by_test_id("edit-save").click()
    await expect(
        page.get_by_role("alert").filter(has_text="Couldn't edit the message")
    ).to_be_visible()
    await expect(message(page, "short and sweet")).to_be_visible()
    await expect(message(bob_page, "short and sweet")).to_be_visible()


async def test_keyboard_menu_and_cancel(new_page, api) -> None:
    page = (await dm_pair(new_page, api)).page
    await send(page, "keyboard user")
    box = page.get_by_test_id("composer-input")
    await expect(message(page, "keyboard user").get_by_test_id("tick")).to_have_attribute(
        "data-state", "read"
    )
    # ArrowUp in an empty composer opens the actions of my last message.
    await box.press("ArrowUp")
    menu = page.get_by_role("menu", name="Message actions")
    await expect(menu).to_be_visible()
    await expect(page.get_by_role("menuitem", name="Add reaction")).to_be_focused()
    await page.keyboard.press("Escape")
    await expect(menu).to_have_count(0)


async def test_editing_a_long_message_shows_its_count_at_once(new_page, api) -> None:
    """Review 2, item 13: the editor's length counter is there when it opens, not only after
    the first key."""
    alice, _, dm, page, _ = await dm_pair(new_page, api)
    await api.send(alice, dm, "x" * 3900)
    row = page.get_by_test_id("message").filter(has_text="x" * 3900)
    await row.hover()
    await row.get_by_test_id("message-actions").click()
    await page.get_by_role("menuitem", name="Edit").click()
    await expect(page.get_by_test_id("edit-input")).to_be_focused()
    await expect(page.get_by_test_id("edit-count")).to_have_text("3,900 / 4,000")
    await expect(page.get_by_test_id("edit-save")).to_be_enabled()
