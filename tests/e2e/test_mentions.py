"""Issue 14, item 3: mentions in the browser. `@` opens a picker of the room's members
(keyboard, mouse, touch; deactivated people left out; `@room` for group admins only); the
server derives `mentions` from the text and the client highlights them (live names), marks a
message that mentions me, shows a mention badge from the server's counts, and notifies a
mention even in a muted room."""

from __future__ import annotations

import re

from playwright.async_api import Page, expect

from tests.e2e.helpers import open_room, room_item, shot, signed_in
from tests.e2e.test_notifications import HIDE, RECORD
from tests.support import Api, User

PHONE = {"viewport": {"width": 360, "height": 740}, "is_mobile": True, "has_touch": True}
NO_SIDEWAYS_SCROLL = "() => document.documentElement.scrollWidth <= innerWidth"


async def _group(api: Api) -> tuple[User, User, User, User, str, str]:
    """Alice (the first account: a server admin) with Bob, Carol and Dave in a group she
    administers; Dave's account is deactivated."""
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob Stone")
    carol = await api.register(display_name="Carol Jones")
    dave = await api.register(display_name="Dave")
    r = await api.post(
        "/rooms",
        {"name": "Design", "member_ids": [bob.id, carol.id, dave.id], "private": True},
        alice,
    )
    assert r.status == 201, r.body
    deactivated = await api.post(f"/admin/users/{dave.id}/deactivate", None, alice)
    assert deactivated.status in (200, 204), deactivated.body
    return alice, bob, carol, dave, r.body["id"], "Design"


def _options(page: Page):
    return page.get_by_test_id("mention-option")


async def _usernames(page: Page) -> list[str]:
    return await _options(page).evaluate_all("els => els.map(e => e.dataset.username)")


async def test_picker_keyboard_and_mouse_highlight_badge(new_page, api: Api) -> None:
    alice, bob, carol, _dave, room, name = await _group(api)
    page = await signed_in(new_page, alice)
    bob_page = await signed_in(new_page, bob)
    await open_room(page, name)
    box = page.get_by_test_id("composer-input")
    listbox = page.get_by_test_id("mention-list")

    # `@` lists the members but me, Dave (deactivated) left out, and @room for an admin.
    await expect(box).to_have_attribute("aria-expanded", "false")
    await box.press_sequentially("Hi @")
    await expect(listbox).to_be_visible()
    await expect(box).to_have_attribute("aria-expanded", "true")
    await expect(_options(page)).to_have_count(3)
    assert sorted(await _usernames(page)) == sorted([bob.username, carol.username, "room"])
    await expect(box).to_have_attribute("aria-controls", await listbox.get_attribute("id"))
    active = await box.get_attribute("aria-activedescendant")
    await expect(page.locator(f"#{active}")).to_have_attribute("aria-selected", "true")

    # Typing filters by display name (any word of it) and username; Down/Up move, Escape
    # closes the list and leaves the text as typed.
    await box.press_sequentially("jo")
    await expect(_options(page)).to_have_count(1)
    await expect(_options(page)).to_have_attribute("data-username", carol.username)
    await box.press("Escape")
    await expect(listbox).to_be_hidden()
    await expect(box).to_have_attribute("aria-expanded", "false")
    await expect(box).to_have_value("Hi @jo")
    await box.press("Backspace")
    await box.press("Backspace")  # back to "@": typing opens it again
    await expect(_options(page)).to_have_count(3)
    assert await _usernames(page) == [bob.username, carol.username, "room"]  # by name
    selected = _options(page).and_(page.locator("[aria-selected=true]"))
    await expect(selected).to_have_attribute("data-username", carol.username)  # kept
    for key, now in (("ArrowUp", bob), ("ArrowUp", None), ("ArrowDown", bob), ("ArrowDown", carol)):
        await box.press(key)  # moving round both ways
        await expect(selected).to_have_attribute("data-username", now.username if now else "room")
    await box.press("Enter")  # inserts the chosen one, does not send
    await expect(box).to_have_value(f"Hi @{carol.username} ")
    await expect(listbox).to_be_hidden()

    # The mouse: a click inserts the option and leaves the focus in the text box.
    await box.press_sequentially("and @st")
    await expect(_options(page)).to_have_count(1)
    await _options(page).click()
    await expect(box).to_have_value(f"Hi @{carol.username} and @{bob.username} ")
    await expect(box).to_be_focused()
    await box.press_sequentially("look")
    await box.press("Enter")

    # Bob, elsewhere: a mention badge apart from the unread count (the server's counts).
    bob_item = room_item(bob_page, name)
    await expect(bob_item.get_by_test_id("mention-badge")).to_have_text("@1")
    await expect(bob_item.get_by_test_id("unread-badge")).to_have_text("1")
    await api.send(alice, room, "no mention here")
    await expect(bob_item.get_by_test_id("unread-badge")).to_have_text("2")
    await expect(bob_item.get_by_test_id("mention-badge")).to_have_text("@1")
    assert "1 mentioning you" in (await bob_item.get_attribute("aria-label") or "")

    # The message mentioning Bob is marked as a whole; the chips show the current names,
    # the usernames in their titles.
    await open_room(bob_page, name)
    row = bob_page.get_by_test_id("message").filter(has_text="look")
    await expect(row).to_have_class(re.compile(r"\bmentions-me\b"))
    chips = row.get_by_test_id("mention")
    await expect(chips).to_have_text(["@Carol Jones", "@Bob Stone"])
    await expect(chips.nth(0)).to_have_attribute("title", f"@{carol.username}")
    plain = bob_page.get_by_test_id("message").filter(has_text="no mention here")
    await expect(plain).not_to_have_class(re.compile(r"\bmentions-me\b"))
    # Read: both badges go (the server's `unread` event after the read pointer moved).
    await expect(bob_item.get_by_test_id("mention-badge")).to_have_count(0)
    await expect(bob_item.get_by_test_id("unread-badge")).to_have_count(0)

    # A profile change shows in the chip at once (user.updated), no reload.
    assert (await api.patch("/users/me", {"display_name": "Caroline"}, carol)).status == 200
    await expect(chips).to_have_text(["@Caroline", "@Bob Stone"])
    await shot(bob_page, "mention")

    # Bob is no admin: no @room for him; text that names no member stays text.
    box_b = bob_page.get_by_test_id("composer-input")
    await box_b.press_sequentially("@ro")
    await expect(bob_page.get_by_test_id("mention-list")).to_be_hidden()
    await box_b.fill("")
    # Code keeps its text.
    await api.send(alice, room, f"ask @nobody_here or @{carol.username}, not `@{carol.username}`")
    row = bob_page.get_by_test_id("message").filter(has_text="ask")
    await expect(row.get_by_test_id("mention")).to_have_text(["@Caroline"])
    await expect(row.get_by_test_id("message-text")).to_have_text(
        f"ask @nobody_here or @Caroline, not @{carol.username}"
    )


async def test_mention_notifies_in_muted_room(new_page, api: Api) -> None:
    alice, bob, _carol, _dave, room, name = await _group(api)
    bob_page = await signed_in(new_page, bob, permissions=["notifications"])
    await bob_page.add_init_script(RECORD)
    await bob_page.reload()
    await open_room(bob_page, name)
    await bob_page.get_by_test_id("mute-toggle").click()
    await expect(bob_page.get_by_test_id("mute-toggle")).to_have_attribute("aria-pressed", "true")
    await bob_page.evaluate(HIDE)

    await api.send(alice, room, "muted: no notification")
    await api.send(alice, room, f"@{bob.username} but this one")
    await api.send(alice, room, "@room and this one")
    await bob_page.wait_for_function("() => window.__notes.length === 2")
    assert await bob_page.evaluate("window.__notes") == [
        # The body names people as the chips do, not by username.
        {"title": f"Alice mentioned you in {name}", "body": "@Bob Stone but this one"},
        {"title": f"Alice mentioned @room in {name}", "body": "@room and this one"},
    ]
    await expect(
        bob_page.get_by_test_id("message").filter(has_text="and this one").get_by_test_id("mention")
    ).to_have_text("@room")


async def test_picker_on_a_phone(new_page, api: Api) -> None:
    alice, _bob, carol, _dave, room, name = await _group(api)
    page = await signed_in(new_page, alice, **PHONE)
    await room_item(page, name).tap()
    box = page.get_by_test_id("composer-input")
    await box.press_sequentially("@")
    listbox = page.get_by_test_id("mention-list")
    await expect(listbox).to_be_in_viewport(ratio=1)
    assert await page.evaluate(NO_SIDEWAYS_SCROLL)
    await _options(page).filter(has_text="Carol Jones").tap()
    await expect(box).to_have_value(f"@{carol.username} ")
    await box.press_sequentially("hello from a phone")
    await page.get_by_test_id("send-button").tap()
    row = page.get_by_test_id("message").filter(has_text="hello from a phone")
    await expect(row.get_by_test_id("mention")).to_have_text("@Carol Jones")
    assert await page.evaluate(NO_SIDEWAYS_SCROLL)
    stored = (await api.get(f"/history/room/{room}", alice)).body["messages"][0]
    assert stored["mentions"] == [carol.id]


async def test_highlights_exactly_what_the_server_counted(new_page, api: Api) -> None:
    """The client's token rule is the server's: any case, and `@` after a letter of any
    script (Python's Unicode `\\w`) is no mention."""
    alice, bob, carol, _dave, room, name = await _group(api)
    page = await signed_in(new_page, alice)
    await open_room(page, name)
    text = f"hey @{carol.username.upper()}, café@{bob.username} and 日本@{carol.username}"
    sent = await api.send(alice, room, text)
    assert sent["mentions"] == [carol.id]  # the server: Carol (in capitals); Bob's is no token
    row = page.get_by_test_id("message").filter(has_text="hey")
    chips = row.get_by_test_id("mention")
    await expect(chips).to_have_text(["@Carol Jones"])
    assert await chips.evaluate_all("els => els.map(e => e.dataset.userId)") == sent["mentions"]
    await expect(row.get_by_test_id("message-text")).to_have_text(
        f"hey @Carol Jones, café@{bob.username} and 日本@{carol.username}"
    )
    # The room list's preview names her too (plain text, as in notifications and search).
    await expect(room_item(page, name)).to_contain_text("You: hey @Carol Jones, café@")


async def test_room_mention_refusals_fail_clearly(new_page, api: Api) -> None:
    """A non-admin's `@room` is refused for good (no Retry, Edit puts it back); one past the
    hourly limit fails at once with the server's reason and when to try again, instead of
    waiting silently for the limit to pass."""
    alice, bob, _carol, _dave, room, name = await _group(api)
    bob_page = await signed_in(new_page, bob)
    await open_room(bob_page, name)
    box = bob_page.get_by_test_id("composer-input")
    await box.fill("hey @room look")
    hint = bob_page.get_by_test_id("composer-hint")
    await expect(hint).to_have_text(
        "Only group admins can mention @room: this message would not be sent."
    )
    await box.press("Enter")
    row = bob_page.get_by_test_id("message").filter(has_text="hey")
    await expect(row.get_by_role("alert")).to_contain_text("only room admins can mention @room")
    await expect(row.get_by_test_id("retry-send")).to_have_count(0)
    await row.get_by_role("button", name="Edit").click()
    await expect(row).to_have_count(0)
    await expect(box).to_have_value("hey @room look")
    await expect(box).to_be_focused()

    for i in range(10):  # the default limit: ten an hour
        await api.send(alice, room, f"@room notice {i}")
    page = await signed_in(new_page, alice)
    await open_room(page, name)
    await page.get_by_test_id("composer-input").fill("@room one more")
    await page.get_by_test_id("composer-input").press("Enter")
    row = page.get_by_test_id("message").filter(has_text="one more")
    alert = row.get_by_role("alert")
    await expect(alert).to_contain_text(re.compile(r"try again in \d+ minutes?"))
    await expect(row.get_by_test_id("tick")).to_have_attribute("data-state", "failed")
    await expect(row.get_by_test_id("retry-send")).to_be_visible()  # it can work later
    await shot(page, "mention-room-rate-limited")
