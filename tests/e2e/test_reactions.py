"""Issue 5, item 8: reaction picker, counts with who-reacted tooltips, toggling, synced."""

from playwright.async_api import expect

from tests.e2e.helpers import message, open_room, signed_in


async def test_reaction_counts_sync_and_toggle(new_page, api) -> None:
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    dm = (await api.post("/rooms/direct", {"user_id": bob.id}, alice)).body["id"]
    await api.send(bob, dm, "shipped it 🚀")
    page = await signed_in(new_page, alice)
    bob_page = await signed_in(new_page, bob)
    await open_room(page, "Bob")
    await open_room(bob_page, "Alice")

    row = message(page, "shipped it 🚀")
    await row.hover()
    await row.get_by_test_id("react-button").click()
    picker = page.get_by_role("menu", name="Add reaction")
    await expect(picker.get_by_role("menuitem")).to_have_count(8)
    await picker.get_by_role("menuitem", name="React with 🎉").click()

    mine = row.locator("[data-testid=reaction][data-emoji='🎉']")
    await expect(mine.get_by_test_id("reaction-count")).to_have_text("1")
    await expect(mine).to_have_attribute("aria-pressed", "true")
    theirs = message(bob_page, "shipped it 🚀").locator("[data-testid=reaction][data-emoji='🎉']")
    await expect(theirs.get_by_test_id("reaction-count")).to_have_text("1")
    await expect(theirs).to_have_attribute("title", "Alice reacted with 🎉")

    await theirs.click()  # Bob adds his
    await expect(mine.get_by_test_id("reaction-count")).to_have_text("2")
    await expect(mine).to_have_attribute("title", "You and Bob reacted with 🎉")
    await expect(theirs).to_have_attribute("title", "Alice and You reacted with 🎉")

    # Both are stored, not only told: a reload shows them from history.
    await bob_page.reload()
    await open_room(bob_page, "Alice")
    await expect(theirs.get_by_test_id("reaction-count")).to_have_text("2")
    await expect(theirs).to_have_attribute("title", "Alice and You reacted with 🎉")

    await mine.click()  # Alice toggles hers off
    await expect(theirs.get_by_test_id("reaction-count")).to_have_text("1")
    await expect(theirs).to_have_attribute("title", "You reacted with 🎉")
    await expect(mine).to_have_attribute("aria-pressed", "false")
