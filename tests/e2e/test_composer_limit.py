"""Issue 10, item 2: text over the 4,000-character limit is kept as typed or pasted (no
maxlength cutting it), counted the way the server counts (code points of the trimmed text),
shown with a counter and an over-limit message, and not sent until it fits."""

import json

from playwright.async_api import Page, expect

from tests.e2e.helpers import message, open_room, signed_in
from tests.support import Api, User

CLIPBOARD = ["clipboard-read", "clipboard-write"]
# The theme's error colour, resolved.
DANGER = """() => { const probe = document.createElement('span');
  probe.style.color = 'var(--danger)'; document.body.append(probe);
  const color = getComputedStyle(probe).color; probe.remove(); return color; }"""


async def _alice_with_dm(new_page, api: Api) -> tuple[Page, User, str, list[dict]]:
    """Alice's page with her DM with Bob open, and the `message.send` frames it sends."""
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    dm = (await api.post("/rooms/direct", {"user_id": bob.id}, alice)).body["id"]
    sent: list[dict] = []

    def record(payload: str | bytes) -> None:
        frame = json.loads(payload)
        if frame.get("type") == "message.send":
            sent.append(frame["data"])

    async def recording_page(**options: object) -> Page:
        page = await new_page(**options)
        page.on("websocket", lambda ws: ws.on("framesent", record))
        return page

    page = await signed_in(recording_page, alice, permissions=CLIPBOARD)
    await open_room(page, "Bob")
    return page, alice, dm, sent


async def _paste(page: Page, text: str) -> None:
    """A real paste (Ctrl+V) from the clipboard into the composer."""
    await page.evaluate("t => navigator.clipboard.writeText(t)", text)
    await page.get_by_test_id("composer-input").focus()
    await page.keyboard.press("Control+V")


async def _sent(page: Page, text: str) -> None:
    """The message shows and the server has acknowledged it (its tick is past "sending")."""
    tick = message(page, text).get_by_test_id("tick")
    await expect(tick).to_have_attribute("data-state", "sent")


async def _history(api: Api, user: User, room: str) -> list[str]:
    return [m["text"] for m in (await api.get(f"/history/room/{room}", user)).body["messages"]]


async def test_paste_over_the_limit_is_kept_and_not_sent(new_page, api) -> None:
    page, alice, dm, sent = await _alice_with_dm(new_page, api)
    box = page.get_by_test_id("composer-input")
    over = page.get_by_test_id("composer-over")
    count = page.get_by_test_id("composer-count")
    send_button = page.get_by_test_id("send-button")
    text = "".join(f"{i:04d}|" for i in range(820))  # 4,100 characters, each slice distinct
    assert len(text) == 4100

    await _paste(page, text)
    await expect(box).to_have_value(text)  # nothing cut
    await expect(over).to_have_text("100 characters over the limit")
    await expect(over).to_have_attribute("aria-live", "polite")
    await expect(box).to_have_attribute("aria-describedby", await over.get_attribute("id"))
    await expect(box).to_have_attribute("aria-invalid", "true")
    await expect(count).to_have_text("4,100 / 4,000")
    assert await over.evaluate("el => getComputedStyle(el).color") == await page.evaluate(DANGER)
    await expect(send_button).to_be_disabled()
    await expect(send_button).to_have_attribute(
        "title", "Too long to send: 100 characters over the limit"
    )

    # Enter refuses: the text stays (no row appears, no frame leaves: checked once the
    # message that fits has been sent and acknowledged, below).
    await box.press("Enter")
    await expect(box).to_have_value(text)

    # Deleting the last 100 characters makes it fit: it is sent whole, exactly.
    await box.evaluate("el => el.setSelectionRange(4000, 4100)")
    await box.press("Backspace")
    await expect(over).to_have_text("")
    await expect(count).to_have_text("4,000 / 4,000")
    await expect(box).not_to_have_attribute("aria-invalid", "true")
    await expect(send_button).to_be_enabled()
    await box.press("Enter")
    await _sent(page, text[:4000])
    await expect(box).to_have_value("")
    await expect(page.get_by_test_id("message")).to_have_count(1)
    assert await _history(api, alice, dm) == [text[:4000]]
    assert [frame["text"] for frame in sent] == [text[:4000]]


async def test_counted_like_the_server(new_page, api) -> None:
    """Code points of the trimmed text: 👍 is one character (two UTF-16 units), ❤️ two
    (the heart and a variation selector), surrounding whitespace none."""
    page, alice, dm, _ = await _alice_with_dm(new_page, api)
    box = page.get_by_test_id("composer-input")
    over = page.get_by_test_id("composer-over")
    count = page.get_by_test_id("composer-count")

    await box.fill("a" * 3499)
    await expect(count).to_have_text("")
    await box.fill("a" * 3500)
    await expect(count).to_have_text("3,500 / 4,000")
    await box.fill("")

    await _paste(page, "❤️" * 2001)
    await expect(over).to_have_text("2 characters over the limit")
    await box.fill("")
    await _paste(page, "👍" * 4001)
    await expect(over).to_have_text("1 character over the limit")
    await box.fill("")
    await _paste(page, "  " + "a" * 4000 + "\n\n")
    await expect(count).to_have_text("4,000 / 4,000")
    await expect(over).to_have_text("")
    await box.fill("")

    thumbs = "👍" * 4000  # 8,000 UTF-16 units
    await _paste(page, thumbs)
    await expect(box).to_have_value(thumbs)
    await expect(count).to_have_text("4,000 / 4,000")
    await expect(over).to_have_text("")
    await box.press("Enter")
    await _sent(page, thumbs)
    assert await _history(api, alice, dm) == [thumbs]


async def test_an_edit_over_the_limit_is_kept_and_not_saved(new_page, api) -> None:
    """The inline editor has the same limit: the text stays, the state says by how much, and
    neither Enter nor Save sends it; cut back to the limit it saves."""
    page, alice, dm, _ = await _alice_with_dm(new_page, api)
    await api.send(alice, dm, "short")
    row = message(page, "short")
    await row.hover()
    await row.get_by_test_id("message-actions").click()
    await page.get_by_test_id("menu-edit").click()
    editor = page.get_by_test_id("edit-input")
    text = "é" * 4001
    await editor.fill(text)
    await expect(page.get_by_test_id("edit-over")).to_have_text("1 character over the limit")
    await expect(page.get_by_test_id("edit-count")).to_have_text("4,001 / 4,000")
    await expect(page.get_by_test_id("edit-save")).to_be_disabled()
    await editor.press("Enter")
    await expect(editor).to_have_value(text)  # still editing, nothing cut
    await editor.press("Backspace")
    await expect(page.get_by_test_id("edit-over")).to_have_text("")
    await editor.press("Enter")
    await expect(editor).to_have_count(0)
    await expect(message(page, "é" * 4000)).to_be_visible()
