"""Issue 5, item 13: keyboard only, ARIA labels, phone width to desktop, light and dark."""

import io
import re

from PIL import Image
from playwright.async_api import expect

from tests.e2e.helpers import message, open_room, room_item, send, shot, signed_in


async def _seed(api):
    # Fixed usernames: the avatars' colours come from them, so the screenshots stay the same.
    alice = await api.register("alice", display_name="Alice Liddell")
    bob = await api.register("bob", display_name="Bob Builder")
    carol = await api.register("carol", display_name="Carol Danvers")
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


# Each tick state's number of drawn ticks, stroke width and colour.
TICK_LOOKS = """() => Object.fromEntries(['sent', 'delivered', 'read'].map(state => {
  const tick = document.querySelector(`[data-testid=tick][data-state=${state}]`);
  const svg = tick.querySelector('svg');
  return [state, {paths: svg.querySelectorAll('path').length, color: getComputedStyle(tick).color,
                  stroke: parseFloat(getComputedStyle(svg).strokeWidth)}];
}))"""
COLOUR_EMOJI_FIRST = re.compile(r'^"Noto Color Emoji", ')


def _luminance(css: str) -> float:
    """WCAG relative luminance of an `rgb(r, g, b)` colour."""
    channels = [int(v) / 255 for v in css[css.index("(") + 1 : css.index(")")].split(",")[:3]]
    r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


async def test_delivered_and_read_ticks_differ_at_a_glance(new_page, api) -> None:
    """Issue 10, item 7: sent is one tick, delivered and read two; read ones are heavier and
    set apart from the grey in lightness, in both themes, not only in hue."""
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    dm = (await api.post("/rooms/direct", {"user_id": bob.id}, alice)).body["id"]
    read = await api.send(alice, dm, "read by Bob")
    delivered = await api.send(alice, dm, "delivered to Bob")
    await api.send(alice, dm, "only sent")
    await api.post(f"/rooms/{dm}/read", {"message_id": read["id"]}, bob)
    bob_socket = await api.ws(bob)
    await bob_socket.send("message.delivered", {"message_ids": [delivered["id"]]}, ref="d")
    await bob_socket.expect("ack")

    page = await signed_in(new_page, alice)
    await open_room(page, "Bob")
    ticks = {
        state: message(page, text).get_by_test_id("tick")
        for state, text in (
            ("read", "read by Bob"),
            ("delivered", "delivered to Bob"),
            ("sent", "only sent"),
        )
    }
    for state, tick in ticks.items():
        await expect(tick).to_have_attribute("data-state", state)
    # Read in one go: a row can be redrawn between two separate look-ups.
    looks = await page.evaluate(TICK_LOOKS)
    assert [looks[s]["paths"] for s in ("sent", "delivered", "read")] == [1, 2, 2], looks
    assert looks["read"]["stroke"] > 1.4 * looks["delivered"]["stroke"], looks

    for theme in ("light", "dark"):
        await page.evaluate("t => document.documentElement.dataset.theme = t", theme)
        looks = await page.evaluate(TICK_LOOKS)
        colors = [looks[s]["color"] for s in ("read", "delivered")]
        lighter, darker = sorted((_luminance(c) for c in colors), reverse=True)
        contrast = (lighter + 0.05) / (darker + 0.05)
        assert contrast >= 1.8, (theme, colors, contrast)


async def test_reaction_picker_emoji_in_colour(new_page, api) -> None:
    """Issue 10, item 7: the colour emoji font comes first for emoji, or system-ui (DejaVu Sans
    here, which has the emoticons block) draws 😂, 😮 and 😢 in black and white."""
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    dm = (await api.post("/rooms/direct", {"user_id": bob.id}, alice)).body["id"]
    await api.send(bob, dm, "pick a reaction")
    page = await signed_in(new_page, alice)
    await open_room(page, "Bob")
    row = message(page, "pick a reaction")
    await row.hover()
    await row.get_by_test_id("react-button").click()
    joy = page.get_by_test_id("reaction-picker").get_by_role("menuitem", name="React with 😂")
    await expect(joy).to_be_visible()
    await expect(joy).to_have_css("font-family", COLOUR_EMOJI_FIRST)
    image = Image.open(io.BytesIO(await joy.screenshot(animations="disabled"))).convert("RGB")
    colourful = [p for p in image.get_flattened_data() if max(p) - min(p) > 100]
    assert len(colourful) > 50, len(colourful)
    await joy.click()
    chip = row.get_by_test_id("reaction").locator(".reaction-emoji")
    await expect(chip).to_have_text("😂")
    await expect(chip).to_have_css("font-family", COLOUR_EMOJI_FIRST)


async def test_emoji_in_message_text_in_colour(new_page, api) -> None:
    """Running text keeps system-ui for letters, but its emoji come from the colour font (an
    @font-face limited to emoji code points), not DejaVu Sans's black-and-white glyphs."""
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    dm = (await api.post("/rooms/direct", {"user_id": bob.id}, alice)).body["id"]
    await api.send(bob, dm, "😂😮😢")
    page = await signed_in(new_page, alice)
    await open_room(page, "Bob")
    text = message(page, "😂😮😢").get_by_test_id("message-text")
    await expect(text).to_be_visible()
    image = Image.open(io.BytesIO(await text.screenshot(animations="disabled"))).convert("RGB")
    colourful = [p for p in image.get_flattened_data() if max(p) - min(p) > 100]
    assert len(colourful) > 50, len(colourful)


def _colourful_pixels(png: bytes) -> int:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    return len([p for p in image.get_flattened_data() if max(p) - min(p) > 100])


async def test_symbols_that_default_to_text_stay_text(new_page, api) -> None:
    """Review of issue 10, finding 16: only code points shown as emoji by default come from the
    colour font. ✔ ⚠ ♥ ☺ ✏ in running text stay black-and-white text; with U+FE0F they ask
    for the emoji and get it in colour; ☕ is an emoji by default, and U+FE0E makes it text."""
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    dm = (await api.post("/rooms/direct", {"user_id": bob.id}, alice)).body["id"]
    texts = {
        "text": "done ✔ careful ⚠ love ♥ hi ☺ edit ✏ coffee ☕\ufe0e",
        "emoji": "✔\ufe0f⚠\ufe0f♥\ufe0f☺\ufe0f✏\ufe0f☕",
    }
    for text in texts.values():
        await api.send(bob, dm, text)
    page = await signed_in(new_page, alice)
    await open_room(page, "Bob")
    colourful = {}
    for kind, text in texts.items():
        row = message(page, text).get_by_test_id("message-text")
        await expect(row).to_be_visible()
        colourful[kind] = _colourful_pixels(await row.screenshot(animations="disabled"))
    assert colourful["text"] == 0 and colourful["emoji"] > 300, colourful


FOCUSED = "document.activeElement.closest('[data-testid=message]')?.innerText ?? ''"


async def test_timeline_is_one_tab_stop_with_arrow_keys(new_page, api) -> None:
    """The timeline is one tab stop (roving focus): the header's last button, one Tab to the
    newest message, its own actions, then the composer; arrows, Home and End move between
    messages, Shift+F10 opens the focused one's menu, Escape goes to the composer."""
    alice, bob, _carol, _dm, group = await _seed(api)
    for i in range(30):
        await api.send(bob, group, f"filler {i}")
    page = await signed_in(new_page, alice)
    await open_room(page, "Launch plan")
    await expect(message(page, "filler 29")).to_be_visible()
    await page.get_by_test_id("group-info-button").focus()
    await page.keyboard.press("Tab")
    newest = message(page, "filler 29")
    await expect(newest).to_be_focused()
    await page.keyboard.press("ArrowUp")
    await expect(message(page, "filler 28")).to_be_focused()
    await page.keyboard.press("ArrowDown")
    await page.keyboard.press("ArrowDown")  # the end: stays
    await expect(newest).to_be_focused()
    await page.keyboard.press("Home")
    assert (await page.evaluate(FOCUSED)) != ""
    assert "filler" not in await page.evaluate(FOCUSED)  # the first loaded message
    await page.keyboard.press("End")
    await expect(newest).to_be_focused()
    # Its actions, then the composer: a handful of Tabs, not three per message.
    tabs = 0
    while not await page.get_by_test_id("composer-input").evaluate(
        "el => el === document.activeElement"
    ):
        await page.keyboard.press("Tab")
        tabs += 1
        assert tabs <= 6, await page.evaluate("document.activeElement.outerHTML.slice(0, 200)")
    # Back (Shift+Tab) lands on the message last focused, not on the list's first one.
    while not await newest.evaluate("el => el === document.activeElement"):
        await page.keyboard.press("Shift+Tab")
        tabs -= 1
        assert tabs >= -1
    await page.keyboard.press("ArrowUp")
    await page.keyboard.press("Shift+F10")
    await expect(page.get_by_role("menu", name="Message actions")).to_be_visible()
    await page.keyboard.press("Escape")  # the menu closes, the focus is back on the message
    await expect(message(page, "filler 28")).to_be_focused()
    await page.keyboard.press("Escape")
    await expect(page.get_by_test_id("composer-input")).to_be_focused()


async def test_phone_header_shows_the_group_name(new_page, api) -> None:
    """At 360 px the header's buttons leave the name room for two lines, not five letters."""
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    await api.post("/rooms", {"name": "Core Team Planning", "member_ids": [bob.id]}, alice)
    phone = {"viewport": {"width": 360, "height": 740}, "is_mobile": True, "has_touch": True}
    page = await signed_in(new_page, alice, **phone)
    await room_item(page, "Core Team Planning").tap()
    title = page.get_by_test_id("conversation-title")
    await expect(title).to_be_visible()
    whole = "el => el.scrollWidth <= el.clientWidth && el.scrollHeight <= el.clientHeight + 1"
    assert await title.evaluate(whole)
    assert await page.evaluate("() => document.documentElement.scrollWidth <= innerWidth")
    await shot(page, "phone-group-header")
