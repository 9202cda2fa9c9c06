"""Issue 5, item 3: the group modal (name, private/public, member picker with search as you
type, chips, keyboard only). Issue 10, item 7: removing a member asks first (the focus on
Cancel: a second Enter removes nobody); public groups and New chat are reachable from the
sidebar and from the welcome pane."""

from playwright.async_api import expect

from tests.e2e.helpers import room_item, shot, signed_in
from tests.support import Api, User


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
    await (
        page.get_by_role("dialog", name="Remove Bob from Open house?")
        .get_by_role("button", name="Remove")
        .click()
    )
    await expect(dialog.get_by_test_id("member-row")).to_have_count(2)
    await expect(room_item(bob_page, "Open house")).to_have_count(0)  # live, for Bob
    await dialog.get_by_test_id("group-info-name").fill("Open house 2")
    await dialog.get_by_test_id("group-info-save").click()
    await expect(page.get_by_test_id("conversation-title")).to_have_text("Open house 2")

    # Dave finds the public group from the New group dialog too, and joins it.
    dave_page = await signed_in(new_page, dave)
    await dave_page.get_by_test_id("new-group").click()
    await dave_page.get_by_test_id("browse-public").click()
    browser = dave_page.get_by_role("dialog", name="Public groups")
    await browser.get_by_role("searchbox", name="Search public groups").fill("open")
    await browser.get_by_role("button", name="Join Open house 2").click()
    await expect(dave_page.get_by_test_id("conversation-title")).to_have_text("Open house 2")
    members = (await api.get(f"/rooms/{room}", alice)).body["member_ids"]
    assert dave.id in members and carol.id in members and bob.id not in members


async def _members(api: Api, room: str, user: User) -> set[str]:
    return set((await api.get(f"/rooms/{room}", user)).body["member_ids"])


async def test_removing_a_member_asks_first_and_cancel_changes_nothing(new_page, api) -> None:
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    carol = await api.register(display_name="Carol")
    r = await api.post("/rooms", {"name": "Design", "member_ids": [bob.id, carol.id]}, alice)
    room = r.body["id"]
    page = await signed_in(new_page, alice)
    bob_page = await signed_in(new_page, bob)
    await room_item(page, "Design").click()
    await page.get_by_role("button", name="Group details").click()
    details = page.get_by_role("dialog", name="Group details")
    rows = details.get_by_test_id("member-row")
    await expect(rows).to_have_count(3)
    remove_bob = details.get_by_role("button", name="Remove Bob")
    confirm = page.get_by_role("dialog", name="Remove Bob from Design?")

    # Cancel, then Escape, then Enter twice (the focus starts on Cancel, not on the
    # destructive button): the confirmation closes, the group details stay, nobody is removed.
    await remove_bob.click()
    await expect(confirm).to_be_visible()
    await expect(confirm.get_by_role("button", name="Remove")).to_have_class("btn btn-danger")
    await confirm.get_by_role("button", name="Cancel").click()
    await expect(confirm).to_be_hidden()
    await expect(remove_bob).to_be_focused()
    await remove_bob.press("Enter")
    await expect(confirm).to_be_visible()
    await page.keyboard.press("Escape")
    await expect(confirm).to_be_hidden()
    await remove_bob.press("Enter")
    await expect(confirm.get_by_role("button", name="Cancel")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(confirm).to_be_hidden()
    await expect(remove_bob).to_be_focused()
    await expect(details).to_be_visible()
    await expect(rows).to_have_count(3)
    assert await _members(api, room, alice) == {alice.id, bob.id, carol.id}
    await expect(room_item(bob_page, "Design")).to_be_visible()

    # Confirmed: Bob is removed (live for him too) and the focus stays in the dialog.
    await remove_bob.click()
    await confirm.get_by_role("button", name="Remove").click()
    await expect(rows).to_have_count(2)
    await expect(details.get_by_role("button", name="Remove Carol")).to_be_focused()
    assert await _members(api, room, alice) == {alice.id, carol.id}
    await expect(room_item(bob_page, "Design")).to_have_count(0)


async def test_new_user_welcome_pane_and_sidebar_public_groups(new_page, api) -> None:
    owner = await api.register(display_name="Olga")
    dave = await api.register(display_name="Dave")
    r = await api.post("/rooms", {"name": "Open house", "member_ids": [], "private": False}, owner)
    room = r.body["id"]
    page = await signed_in(new_page, dave)

    # No rooms yet: the welcome pane says so and offers both ways in.
    welcome = page.get_by_test_id("empty-state")
    await expect(welcome).to_be_visible()
    await expect(welcome).to_contain_text("not in any conversation yet")
    await shot(page, "welcome")
    new_chat = welcome.get_by_role("button", name="New chat")
    await new_chat.click()
    await expect(page.get_by_role("dialog", name="New message")).to_be_visible()
    await page.keyboard.press("Escape")
    await expect(new_chat).to_be_focused()
    await welcome.get_by_role("button", name="Browse public groups").click()
    public = page.get_by_role("dialog", name="Public groups")
    await expect(public.get_by_test_id("public-group")).to_contain_text(["Open house"])
    await page.keyboard.press("Escape")
    await expect(public).to_be_hidden()

    # The sidebar entry, from the keyboard: find the group and join it.
    entry = page.get_by_role("complementary", name="Sidebar").get_by_role(
        "button", name="Browse public groups"
    )
    await entry.focus()
    await page.keyboard.press("Enter")
    await public.get_by_role("searchbox", name="Search public groups").fill("open")
    await public.get_by_role("button", name="Join Open house").click()
    await expect(public).to_be_hidden()
    await expect(page.get_by_test_id("conversation-title")).to_have_text("Open house")
    await expect(room_item(page, "Open house")).to_be_visible()
    assert dave.id in await _members(api, room, owner)
