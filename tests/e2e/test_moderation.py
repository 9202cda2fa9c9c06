"""Issue 14, item 7, in the browser: a group admin makes a member an admin, removes a member
(who then cannot rejoin the public group, and is told why) and lets them back in; a server
admin deactivates an account, whose open tab drops to the login screen saying so."""

from playwright.async_api import expect

from tests.e2e.helpers import room_item, shot, signed_in
from tests.support import PASSWORD

REMOVED = "you were removed from this group; an admin can let you back"


async def test_promote_remove_and_let_back_in(new_page, api) -> None:
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    carol = await api.register(display_name="Carol")
    r = await api.post(
        "/rooms", {"name": "Crew", "member_ids": [bob.id, carol.id], "private": False}, alice
    )
    room = r.body["id"]
    page = await signed_in(new_page, alice)
    carol_page = await signed_in(new_page, carol)
    await room_item(page, "Crew").click()
    await page.get_by_role("button", name="Group details").click()
    details = page.get_by_role("dialog", name="Group details")
    bob_row = details.get_by_test_id("member-row").filter(has_text="Bob")

    await details.get_by_role("button", name="Make Bob an admin").click()
    await expect(bob_row).to_contain_text("Admin")
    await expect(details.get_by_role("button", name="Remove Bob as admin")).to_be_visible()
    roles = {
        m["user_id"]: m["role"] for m in (await api.get(f"/rooms/{room}", bob)).body["members"]
    }
    assert roles[bob.id] == "admin"

    await details.get_by_role("button", name="Remove Carol").click()
    confirm = page.get_by_role("dialog", name="Remove Carol from Crew?")
    await expect(confirm).to_contain_text("cannot rejoin it until an admin lets them back in")
    await confirm.get_by_role("button", name="Remove").click()
    removed = details.get_by_role("list", name="Removed members")
    await expect(removed.get_by_test_id("banned-row")).to_have_count(1)
    await expect(removed.get_by_role("button", name="Let Carol back in")).to_be_visible()
    await expect(room_item(carol_page, "Crew")).to_have_count(0)
    await shot(page, "moderation-removed-members")

    # Carol tries to rejoin: the server's reason shows.
    await (
        carol_page.get_by_role("complementary", name="Sidebar")
        .get_by_role("button", name="Browse public groups")
        .click()
    )
    public = carol_page.get_by_role("dialog", name="Public groups")
    await public.get_by_role("button", name="Join Crew").click()
    await expect(public).to_contain_text(REMOVED)

    await removed.get_by_role("button", name="Let Carol back in").click()
    await expect(removed.get_by_test_id("banned-row")).to_have_count(0)
    await public.get_by_role("button", name="Join Crew").click()
    await expect(carol_page.get_by_test_id("conversation-title")).to_have_text("Crew")


async def test_a_server_admin_deactivates_an_account_and_its_tab_signs_out(new_page, api) -> None:
    alice = await api.register(display_name="Alice")  # the first account: a server admin
    bob = await api.register(display_name="Bob")
    await api.post("/rooms", {"name": "Ops", "member_ids": [bob.id], "private": True}, alice)
    await api.post("/rooms/direct", {"user_id": bob.id}, alice)
    page = await signed_in(new_page, alice)
    bob_page = await signed_in(new_page, bob)
    await expect(room_item(bob_page, "Ops")).to_be_visible()

    await room_item(page, "Ops").click()
    await page.get_by_role("button", name="Group details").click()
    details = page.get_by_role("dialog", name="Group details")
    await details.get_by_role("button", name="Deactivate the account of Bob").click()
    confirm = page.get_by_role("dialog", name="Deactivate the account of Bob?")
    await expect(confirm).to_contain_text("signed out everywhere at once")
    await confirm.get_by_role("button", name="Deactivate").click()

    # Bob's open tab drops to the login screen at once, and says why.
    await expect(bob_page.get_by_test_id("auth-screen")).to_be_visible()
    await expect(bob_page.get_by_test_id("auth-error")).to_contain_text("deactivated")
    bob_row = details.get_by_test_id("member-row").filter(has_text="Bob")
    await expect(bob_row).to_contain_text("Bob (deactivated)")
    await expect(room_item(page, "Bob (deactivated)")).to_be_visible()  # the DM's name
    await shot(page, "moderation-deactivated")
    await bob_page.get_by_label("Username").fill(bob.username)
    await bob_page.get_by_label("Password").fill(PASSWORD)
    await bob_page.get_by_role("button", name="Log in", exact=True).last.click()
    await expect(bob_page.get_by_test_id("auth-error")).to_have_text(
        "This account is deactivated. Ask a server admin to reactivate it."
    )

    await details.get_by_role("button", name="Reactivate the account of Bob").click()
    await expect(bob_row).not_to_contain_text("(deactivated)")
    await bob_page.get_by_role("button", name="Log in", exact=True).last.click()
    await expect(bob_page.get_by_test_id("app")).to_be_visible()
