"""Issue 5, item 2: the room list (DMs and groups, previews, live unread badges, newest first)
and starting a DM from a user search."""

from playwright.async_api import expect

from tests.e2e.helpers import open_room, room_item, send, shot, signed_in


async def test_room_list_orders_previews_and_counts_unread_live(new_page, api) -> None:
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    dm = (await api.post("/rooms/direct", {"user_id": bob.id}, alice)).body["id"]
    group = await api.group(alice, bob)
    group_name = (await api.get(f"/rooms/{group}", alice)).body["name"]
    await api.send(bob, dm, "hey, lunch?")
    await api.send(bob, group, "standup in 5")

    page = await signed_in(new_page, alice)
    names = page.get_by_test_id("room-name")
    await expect(names).to_have_text([group_name, "Bob"])  # newest activity first
    await expect(room_item(page, "Bob").get_by_test_id("room-preview")).to_have_text("hey, lunch?")
    await expect(room_item(page, group_name).get_by_test_id("room-preview")).to_have_text(
        "Bob: standup in 5"
    )
    await expect(room_item(page, "Bob").get_by_test_id("unread-badge")).to_have_text("1")
    await expect(page).to_have_title("(2) FastSock")

    # A new DM message moves the DM to the top and increments its badge live.
    await api.send(bob, dm, "I'm starving")
    await expect(room_item(page, "Bob").get_by_test_id("unread-badge")).to_have_text("2")
    await expect(names).to_have_text(["Bob", group_name])
    await expect(page).to_have_title("(3) FastSock")

    # Opening it clears the badge (read while visible and focused).
    await open_room(page, "Bob")
    await expect(room_item(page, "Bob").get_by_test_id("unread-badge")).to_have_count(0)
    await expect(page).to_have_title("(1) FastSock")
    await send(page, "pizza?")
    await expect(room_item(page, "Bob").get_by_test_id("room-preview")).to_have_text("You: pizza?")
    await shot(page, "conversation")


async def test_start_a_dm_from_a_user_search(new_page, api) -> None:
    alice = await api.register(display_name="Alice")
    await api.register(username="zed_" + alice.username[:6], display_name="Zed Shaw")
    page = await signed_in(new_page, alice)
    await page.get_by_test_id("new-dm").click()
    dialog = page.get_by_role("dialog", name="New message")
    await dialog.get_by_role("combobox").fill("zed")
    await expect(dialog.get_by_test_id("member-option")).to_have_count(1)
    await dialog.get_by_role("combobox").press("Enter")
    await expect(dialog).to_be_hidden()
    await expect(page.get_by_test_id("conversation-title")).to_have_text("Zed Shaw")
    await expect(room_item(page, "Zed Shaw")).to_be_visible()
