"""Issue 10, item 4: a phone. The composer's placeholder shows whole; touch screens get a
long-press menu (real touch events through CDP) instead of the hover toolbar, which a tap
used to leave over the message's text."""

from playwright.async_api import CDPSession, Locator, Page, expect

from tests.e2e.helpers import message, room_item, signed_in
from tests.support import Api

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
# Longer than the long press (message.js): a page timer started after the finger went down
# with a longer delay runs after the long-press timer would have (timers run in deadline
# order), so once it has run, a menu that is still absent was not going to open.
PAST_LONG_PRESS = "() => new Promise(r => setTimeout(r, 800))"


class Finger:
    """One finger on the touch screen, as real touch events (Input.dispatchTouchEvent)."""

    def __init__(self, cdp: CDPSession) -> None:
        self.cdp = cdp

    async def down(self, x: float, y: float) -> None:
        await self.touch("touchStart", x, y)

    async def move(self, x: float, y: float) -> None:
        await self.touch("touchMove", x, y)

    async def up(self) -> None:
        await self.cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})

    async def touch(self, kind: str, x: float, y: float) -> None:
        await self.cdp.send(
            "Input.dispatchTouchEvent", {"type": kind, "touchPoints": [{"x": x, "y": y}]}
        )


async def _center(target: Locator) -> tuple[float, float]:
    text = target.get_by_test_id("message-text")
    await expect(text).to_be_in_viewport()
    while (box := await text.bounding_box()) is None:  # the row was redrawn meanwhile
        await expect(text).to_be_in_viewport()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


async def _phone(new_page, api: Api) -> tuple[Page, Finger]:
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    dm = (await api.post("/rooms/direct", {"user_id": bob.id}, alice)).body["id"]
    for text in ("first from Bob", "second from Bob", "third from Bob"):
        await api.send(bob, dm, text)
    await api.send(alice, dm, "mine")
    page = await signed_in(new_page, alice, **PHONE)
    await room_item(page, "Bob").tap()
    await expect(message(page, "mine")).to_be_visible()
    return page, Finger(await page.context.new_cdp_session(page))


async def test_placeholder_not_clipped(new_page, api) -> None:
    page, _ = await _phone(new_page, api)
    box = page.get_by_test_id("composer-input")
    await expect(box).to_have_value("")
    # The whole placeholder line fits in the box (it was opened while hidden: 0 px tall).
    fits = "el => el.clientHeight >= el.scrollHeight && el.scrollWidth <= el.clientWidth"
    assert await box.evaluate(fits)


async def test_long_press_menu(new_page, api) -> None:
    page, finger = await _phone(new_page, api)
    menu = page.get_by_test_id("context-menu")
    mine = message(page, "mine")
    bobs = message(page, "second from Bob")

    # A tap: no toolbar over the text, no menu.
    await finger.down(*await _center(bobs))
    await finger.up()
    await page.evaluate(PAST_LONG_PRESS)
    await expect(bobs.get_by_test_id("message-actions")).to_be_hidden()
    await expect(bobs.get_by_test_id("react-button")).to_be_hidden()
    await expect(menu).to_have_count(0)

    # A long press on my message: every action. Lifting the finger clicks nothing.
    await finger.down(*await _center(mine))
    await expect(menu).to_be_visible()
    await expect(mine).to_have_class("msg mine pressed")
    await finger.up()
    items = menu.get_by_role("menuitem")
    await expect(items).to_have_text(["Add reaction", "Copy text", "Edit", "Delete"])
    await expect(page.get_by_test_id("reaction-picker")).to_have_count(0)
    # Dismissed by a touch elsewhere.
    await page.get_by_test_id("conversation-title").tap()
    await expect(menu).to_have_count(0)
    await expect(mine).to_have_class("msg mine")

    # Someone else's message: react (the picker hangs from the row), no edit or delete.
    await finger.down(*await _center(bobs))
    await expect(menu).to_be_visible()
    await finger.up()
    await expect(items).to_have_text(["Add reaction", "Copy text"])
    await menu.get_by_test_id("menu-react").tap()
    picker = page.get_by_test_id("reaction-picker")
    await expect(picker).to_be_visible()
    row, popup = await bobs.bounding_box(), await picker.bounding_box()
    assert row and popup and abs(popup["y"] - (row["y"] + row["height"] + 4)) < 2, (row, popup)
    await picker.get_by_role("menuitem", name="React with 👍").tap()
    await expect(bobs.get_by_test_id("reaction")).to_have_attribute("aria-pressed", "true")

    # Edit and delete from the long-press menu.
    await finger.down(*await _center(mine))
    await expect(menu).to_be_visible()
    await finger.up()
    await menu.get_by_test_id("menu-edit").tap()
    await expect(page.get_by_test_id("edit-input")).to_be_focused()
    await page.get_by_test_id("edit-input").fill("mine, edited")
    await page.get_by_test_id("edit-save").tap()
    edited = message(page, "mine, edited")
    await expect(edited.get_by_test_id("edited")).to_be_visible()
    await finger.down(*await _center(edited))
    await expect(menu).to_be_visible()
    await finger.up()
    await menu.get_by_test_id("menu-delete").tap()
    await page.get_by_test_id("confirm-dialog").get_by_role("button", name="Delete").tap()
    await expect(page.get_by_test_id("tombstone")).to_have_count(1)


async def test_scrolling_cancels_the_long_press(new_page, api) -> None:
    page, finger = await _phone(new_page, api)
    x, y = await _center(message(page, "second from Bob"))
    await finger.down(x, y)
    await finger.move(x, y - 40)  # the finger drags: a scroll
    await page.evaluate(PAST_LONG_PRESS)
    await expect(page.get_by_test_id("context-menu")).to_have_count(0)
    await finger.up()
    # Still held but barely moving (a finger is never still): that is a long press.
    await finger.down(x, y)
    await finger.move(x + 3, y + 2)
    await expect(page.get_by_test_id("context-menu")).to_be_visible()
    await finger.up()
