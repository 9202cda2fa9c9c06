"""Issue 14, item 7, in the browser: a group admin makes a member an admin, removes a member
(who then cannot rejoin the public group, and is told why) and lets them back in; a server
admin deactivates an account, whose open tab drops to the login screen saying so."""

import uuid

from playwright.async_api import Locator, Page, expect

from tests.e2e.helpers import message, open_room, room_item, shot, signed_in
from tests.support import PASSWORD

REMOVED = "You were removed from Crew. An admin can let you back in."
PHONE = {"viewport": {"width": 360, "height": 740}, "is_mobile": True, "has_touch": True}


async def member_action(page: Page, details: Locator, name: str, action: str) -> None:
    """A member's action, from the menu behind their row's button."""
    await details.get_by_role("button", name=f"Actions for {name}").click()
    await (
        page.get_by_role("menu", name=f"Actions for {name}")
        .get_by_role("menuitem", name=action)
        .click()
    )


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
    await open_room(carol_page, "Crew")  # open when she is removed: told by whom and from what
    await room_item(page, "Crew").click()
    await page.get_by_role("button", name="Group details").click()
    details = page.get_by_role("dialog", name="Group details")
    bob_row = details.get_by_test_id("member-row").filter(has_text="Bob")

    await member_action(page, details, "Bob", "Make admin")
    await expect(bob_row).to_contain_text("Admin")
    # The focus comes back to Bob's menu button, which now offers the opposite.
    await expect(details.get_by_role("button", name="Actions for Bob")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("menuitem", name="Remove admin")).to_be_focused()
    await page.keyboard.press("Escape")
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
    # Told who removed her (the event's actor_id).
    await expect(carol_page.get_by_test_id("toast")).to_have_text("Alice removed you from Crew.")
    await shot(page, "moderation-removed-members")

    # Carol tries to rejoin: the refusal is an alert on the group's own row, whose button no
    # longer offers to join.
    browse = carol_page.get_by_role("complementary", name="Sidebar").get_by_role(
        "button", name="Browse public groups"
    )
    await browse.click()
    public = carol_page.get_by_role("dialog", name="Public groups")
    await public.get_by_role("button", name="Join Crew").click()
    crew = public.get_by_test_id("public-group").filter(has_text="Crew")
    await expect(crew.get_by_role("alert")).to_have_text(REMOVED)
    refused = crew.get_by_role("button", name="Can't join Crew")
    await expect(refused).to_have_attribute("aria-disabled", "true")
    await expect(refused).to_be_focused()
    await carol_page.keyboard.press("Enter")  # does nothing more: the alert stays
    await expect(crew.get_by_role("alert")).to_have_text(REMOVED)
    await shot(carol_page, "moderation-rejoin-refused")

    await removed.get_by_role("button", name="Let Carol back in").click()
    await expect(removed.get_by_test_id("banned-row")).to_have_count(0)
    await carol_page.keyboard.press("Escape")
    await browse.click()
    await public.get_by_role("button", name="Join Crew").click()
    await expect(carol_page.get_by_test_id("conversation-title")).to_have_text("Crew")
    await expect(carol_page.get_by_test_id("conversation-title")).to_be_visible()
    # Leaving (here from another tab) is worded as her own doing.
    assert (await api.delete(f"/rooms/{room}/members/{carol.id}", carol)).status == 204
    await expect(carol_page.get_by_test_id("toast").last).to_have_text("You left Crew.")


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
    await member_action(page, details, "Bob", "Deactivate account")
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

    # No promoting a deactivated account; its account can be reactivated.
    await details.get_by_role("button", name="Actions for Bob (deactivated)").click()
    menu = page.get_by_role("menu", name="Actions for Bob (deactivated)")
    await expect(menu.get_by_role("menuitem")).to_have_text(["Reactivate account"])
    await menu.get_by_role("menuitem", name="Reactivate account").click()
    await expect(bob_row).not_to_contain_text("(deactivated)")
    await bob_page.get_by_role("button", name="Log in", exact=True).last.click()
    await expect(bob_page.get_by_test_id("app")).to_be_visible()


async def test_deactivated_people_are_marked_wherever_named(new_page, api) -> None:
    alice = await api.register(display_name="Alice")  # the first account: a server admin
    bob = await api.register(display_name="Bob")
    room = (
        await api.post("/rooms", {"name": "Ops", "member_ids": [bob.id], "private": True}, alice)
    ).body["id"]
    await api.post("/rooms/direct", {"user_id": bob.id}, alice)
    original = await api.send(bob, room, "from bob")
    r = await api.post(
        f"/rooms/{room}/messages",
        {
            "client_msg_id": uuid.uuid4().hex,
            "text": f"@{bob.username} ok",
            "reply_to_id": original["id"],
        },
        alice,
    )
    assert r.status == 201, r.body
    page = await signed_in(new_page, alice)
    await open_room(page, "Ops")
    reply = page.get_by_test_id("message").filter(has_text="ok")
    await expect(reply.get_by_test_id("mention")).to_have_text("@Bob")

    r = await api.post(f"/admin/users/{bob.id}/deactivate", None, alice)
    assert r.status in (200, 204), r.body
    # Live (user.updated): the sender, the quote, the chip and "Seen by" all say so.
    sender = message(page, "from bob").get_by_test_id("message-sender")
    await expect(sender).to_have_text("Bob (deactivated)")
    await expect(reply.get_by_test_id("mention")).to_have_text("@Bob (deactivated)")
    await expect(reply.get_by_test_id("reply-quote")).to_contain_text("Bob (deactivated)")
    await expect(page.get_by_test_id("seen-by")).to_have_attribute(
        "aria-label", "Seen by Bob (deactivated)"
    )

    # The DM: a note where the composer was; nobody can read what would be sent.
    await open_room(page, "Bob (deactivated)")
    note = page.get_by_test_id("composer-closed")
    await expect(note).to_have_text(
        "This account is deactivated: they can't log in or read new messages."
    )
    await expect(page.get_by_test_id("composer-input")).to_be_hidden()
    await shot(page, "moderation-deactivated-dm")
    assert (await api.post(f"/admin/users/{bob.id}/reactivate", None, alice)).status in (200, 204)
    await expect(page.get_by_test_id("composer-input")).to_be_visible()
    await expect(note).to_be_hidden()


async def test_group_details_on_a_phone(new_page, api) -> None:
    """A server admin's member list on a 360 px phone: one line per member (name, role,
    Remove, and a menu for the rarer actions), no second scroll box inside the dialog."""
    alice = await api.register(display_name="Alice")
    people = [await api.register(display_name=f"Member {i}") for i in range(6)]
    await api.post(
        "/rooms", {"name": "Big", "member_ids": [p.id for p in people], "private": True}, alice
    )
    page = await signed_in(new_page, alice, **PHONE)
    await room_item(page, "Big").tap()
    await page.get_by_role("button", name="Group details").tap()
    details = page.get_by_role("dialog", name="Group details")
    rows = details.get_by_test_id("member-row")
    await expect(rows).to_have_count(7)
    heights = await rows.evaluate_all("els => els.map(e => e.getBoundingClientRect().height)")
    assert max(heights) < 56, heights  # one line each: no wrapped row of buttons
    await expect(details.get_by_role("button", name="Deactivate account")).to_have_count(0)
    members = details.get_by_test_id("member-list")
    assert await members.evaluate("el => el.scrollHeight <= el.clientHeight + 1")
    await details.get_by_role("button", name="Actions for Member 3").tap()
    menu = page.get_by_role("menu", name="Actions for Member 3")
    await expect(menu).to_be_in_viewport(ratio=1)
    await expect(menu.get_by_role("menuitem")).to_have_text(["Make admin", "Deactivate account"])
    await shot(page, "moderation-phone-member-menu")


async def test_login_refusals_other_than_deactivation_say_what_they_are(new_page, api) -> None:
    """Only the server's "deactivated" refusal reads as one: another 403 (a proxy, a future
    rule) shows the server's own message."""
    await api.register(display_name="Alice")
    page = await new_page()
    await page.route(
        "**/auth/login",
        lambda route: route.fulfill(
            status=403,
            json={"error": {"code": "forbidden", "message": "sign-ins are paused for maintenance"}},
        ),
    )
    await page.goto("/")
    await page.get_by_label("Username").fill("someone")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in", exact=True).last.click()
    await expect(page.get_by_test_id("auth-error")).to_have_text(
        "sign-ins are paused for maintenance"
    )
