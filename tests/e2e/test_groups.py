"""Issue 5, item 3: the group modal (name, private/public, member picker with search as you
type, chips, keyboard only)."""

from playwright.async_api import expect

from tests.e2e.helpers import room_item, shot, signed_in


async def test_create_a_group_with_the_keyboard(new_page, api) -> None:
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob Marley")
    await api.register(display_name="Bobby Tables")
    await api.register(display_name="Carla Bruni")
    page = await signed_in(new_page, alice)
    bob_page = await signed_in(new_page, bob)

    await page.get_by_test_id("new-group").focus()
    await page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="New group")
    await expect(dialog).to_be_visible()
    await expect(dialog.get_by_label("Group name")).to_be_focused()
    await page.keyboard.type("Design crew")
    await page.keyboard.press("Tab")
    await expect(dialog.get_by_test_id("group-private")).to_be_focused()
    await page.keyboard.press("Space")  # make it public
    await expect(dialog.get_by_test_id("group-private")).not_to_be_checked()
    await page.keyboard.press("Tab")
    picker = dialog.get_by_role("combobox", name="Add members")
    await expect(picker).to_be_focused()

    await page.keyboard.type("bob")
    await expect(dialog.get_by_test_id("member-option")).to_have_count(2)
    selected = dialog.locator("[role=option][aria-selected=true]")
    for _ in range(3):
        if "Bob Marley" in await selected.inner_text():
            break
        await page.keyboard.press("ArrowDown")
    await expect(selected).to_contain_text("Bob Marley")
    await page.keyboard.press("Enter")
    await expect(dialog.get_by_test_id("chip")).to_have_count(1)
    await page.keyboard.type("carla")
    await expect(dialog.get_by_test_id("member-option")).to_have_count(1)
    await page.keyboard.press("Enter")
    await expect(dialog.get_by_test_id("chip")).to_have_count(2)
    await page.keyboard.press("Backspace")  # removes the last chip
    await expect(dialog.get_by_test_id("chip")).to_have_count(1)
    await page.keyboard.type("carla")
    await expect(dialog.get_by_test_id("member-option")).to_have_count(1)
    await page.keyboard.press("Enter")
    await expect(dialog.get_by_test_id("chip")).to_have_text(["Bob Marley", "Carla Bruni"])
    await shot(page, "group-modal")

    await dialog.get_by_test_id("group-create").click()
    await expect(dialog).to_be_hidden()
    await expect(page.get_by_test_id("conversation-title")).to_have_text("Design crew")
    await expect(page.get_by_test_id("conversation-subtitle")).to_contain_text("3 members · Public")
    # The new member sees it appear live.
    await expect(room_item(bob_page, "Design crew")).to_be_visible()


async def test_escape_closes_the_modal_and_returns_focus(new_page, api) -> None:
    alice = await api.register()
    page = await signed_in(new_page, alice)
    opener = page.get_by_test_id("new-group")
    await opener.click()
    await expect(page.get_by_role("dialog", name="New group")).to_be_visible()
    await page.keyboard.press("Escape")
    await expect(page.get_by_role("dialog")).to_have_count(0)
    await expect(opener).to_be_focused()


async def test_group_details_members_and_public_groups(new_page, api) -> None:
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    carol = await api.register(display_name="Carolina")
    dave = await api.register(display_name="Dave")
    r = await api.post(
        "/rooms", {"name": "Open house", "member_ids": [bob.id], "private": False}, alice
    )
    room = r.body["id"]
    page = await signed_in(new_page, alice)
    bob_page = await signed_in(new_page, bob)
    await room_item(page, "Open house").click()
    await page.get_by_role("button", name="Group details").click()
    dialog = page.get_by_role("dialog", name="Group details")
    await expect(dialog.get_by_test_id("member-row")).to_have_count(2)
    await dialog.get_by_role("combobox", name="Add members").fill("carolina")
    await expect(dialog.get_by_test_id("member-option")).to_have_count(1)
    await dialog.get_by_role("combobox", name="Add members").press("Enter")
    await dialog.get_by_test_id("add-members").click()
    await expect(dialog.get_by_test_id("member-row")).to_have_count(3)
    await dialog.get_by_role("button", name="Remove Bob").click()
    await expect(dialog.get_by_test_id("member-row")).to_have_count(2)
    await expect(room_item(bob_page, "Open house")).to_have_count(0)  # live, for Bob
    await dialog.get_by_test_id("group-info-name").fill("Open house 2")
    await dialog.get_by_test_id("group-info-save").click()
    await expect(page.get_by_test_id("conversation-title")).to_have_text("Open house 2")

    # Dave finds the public group and joins it.
    dave_page = await signed_in(new_page, dave)
    await dave_page.get_by_test_id("new-group").click()
    await dave_page.get_by_test_id("browse-public").click()
    browser = dave_page.get_by_role("dialog", name="Public groups")
    await browser.get_by_role("searchbox", name="Search public groups").fill("open")
    await browser.get_by_role("button", name="Join Open house 2").click()
    await expect(dave_page.get_by_test_id("conversation-title")).to_have_text("Open house 2")
    members = (await api.get(f"/rooms/{room}", alice)).body["member_ids"]
    assert dave.id in members and carol.id in members and bob.id not in members
