"""Issue 5, item 13: keyboard only, ARIA labels, phone width to desktop, light and dark."""

from playwright.async_api import expect

from tests.e2e.helpers import message, open_room, room_item, send, shot, signed_in


async def _seed(api):
    alice = await api.register(display_name="Alice Liddell")
    bob = await api.register(display_name="Bob Builder")
    carol = await api.register(display_name="Carol Danvers")
    dm = (await api.post("/rooms/direct", {"user_id": bob.id}, alice)).body["id"]
    group = (
        await api.post("/rooms", {"name": "Launch plan", "member_ids": [bob.id, carol.id]}, alice)
    ).body["id"]
    await api.send(bob, group, "Morning! Is the release branch cut?")
    await api.send(alice, group, "Yes — cut at 9:00, tagging v2.4 now")
    await api.send(carol, group, "QA sign-off is in the tracker ✅")
    msg = await api.send(carol, group, "Changelog draft is ready for review")
    await api.request(
        "PUT", f"/messages/{msg['id']}/reactions/%F0%9F%91%8D", token=bob.access_token
    )
    await api.send(bob, dm, "Lunch at 12:30?")
    return alice, bob, carol, dm, group


async def test_keyboard_only_flow(new_page, api) -> None:
    alice, *_ = await _seed(api)
    page = await signed_in(new_page, alice)
    # Tab from the top reaches the room list; Enter opens a room and focuses the composer.
    await page.get_by_test_id("search-input").focus()
    for _ in range(8):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.dataset.testid") == "room-item":
            break
    await page.keyboard.press("Enter")
    await expect(page.get_by_test_id("composer-input")).to_be_focused()
    first = await page.get_by_test_id("conversation-title").inner_text()
    await page.keyboard.press("Alt+ArrowDown")
    await expect(page.get_by_test_id("conversation-title")).not_to_have_text(first)
    await page.keyboard.type("typed with the keyboard only")
    await page.keyboard.press("Enter")
    await expect(message(page, "typed with the keyboard only")).to_be_visible()
    # Ctrl+K focuses search.
    await page.keyboard.press("Control+k")
    await expect(page.get_by_test_id("search-input")).to_be_focused()
    # Every button has an accessible name.
    unnamed = await page.evaluate(
        """() => [...document.querySelectorAll('button')].filter(b =>
              !(b.getAttribute('aria-label') || b.textContent.trim())).map(b => b.outerHTML)"""
    )
    assert unnamed == []


async def test_screens_light_dark_and_phone(new_page, api) -> None:
    alice, *_ = await _seed(api)
    page = await signed_in(new_page, alice, viewport={"width": 1280, "height": 760})
    await open_room(page, "Launch plan")
    await expect(message(page, "Changelog draft is ready for review")).to_be_visible()
    await page.get_by_test_id("composer-input").fill("Reviewing it now")
    await shot(page, "rooms-and-conversation")
    bg = "getComputedStyle(document.body).backgroundColor"
    assert await page.evaluate(bg) == "rgb(255, 255, 255)"
    await page.get_by_test_id("theme-toggle").click()
    await expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    assert await page.evaluate(bg) == "rgb(27, 29, 35)"
    await page.mouse.move(700, 620)
    await page.wait_for_timeout(300)  # let the colour transitions finish
    await shot(page, "dark-mode")
    await page.reload()  # the choice is kept
    await expect(page.locator("html")).to_have_attribute("data-theme", "dark")

    # The system preference is followed when nothing was chosen.
    dark = await signed_in(new_page, alice, color_scheme="dark")
    assert await dark.evaluate(bg) == "rgb(27, 29, 35)"

    # Phone width: the list, then the conversation full screen with a back button.
    phone = await signed_in(
        new_page, alice, viewport={"width": 390, "height": 780}, is_mobile=True, has_touch=True
    )
    await expect(phone.get_by_test_id("room-list")).to_be_visible()
    await expect(phone.get_by_test_id("conversation")).to_be_hidden()
    assert await phone.evaluate("document.documentElement.scrollWidth") <= 390
    await expect(room_item(phone, "Launch plan")).to_be_visible()
    right = await phone.get_by_test_id("room-list").evaluate(
        "el => Math.max(...[...el.querySelectorAll('*')].map(e => e.getBoundingClientRect().right))"
    )
    assert right <= 390
    await shot(phone, "phone-room-list")
    await room_item(phone, "Launch plan").tap()
    await expect(phone.get_by_test_id("room-list")).to_be_hidden()
    await expect(phone.get_by_test_id("conversation-title")).to_have_text("Launch plan")
    await send(phone, "From my phone")
    await expect(message(phone, "From my phone")).to_be_visible()
    width = await phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390  # nothing overflows sideways
    await shot(phone, "phone-conversation")
    await phone.get_by_role("button", name="Back to conversations").tap()
    await expect(phone.get_by_test_id("room-list")).to_be_visible()
