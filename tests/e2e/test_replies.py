"""Issue 14, item 4: replies in the browser. Reply from the message menu, the R key or a swipe
on a touch screen; the composer's "Replying to" bar (Escape cancels); the reply's quote of
the original (plain text, "deleted message" once deleted) jumps to it: scrolled to when
loaded, else the history around it is loaded and paging goes on from there, each message
once. A reply typed offline keeps its original through the outbox."""

from __future__ import annotations

import re
import uuid

from playwright.async_api import Page, expect

from tests.e2e.helpers import dm_pair, message, open_room, room_item, shot, signed_in
from tests.e2e.test_touch import Finger
from tests.support import Api, User

PHONE = {"viewport": {"width": 360, "height": 740}, "is_mobile": True, "has_touch": True}
NO_SIDEWAYS_SCROLL = "() => document.documentElement.scrollWidth <= innerWidth"
# Every message row's id, in order (a message shown twice would show here twice).
IDS = "els => els.map(e => e.dataset.id)"


def _quote(page: Page, reply_text: str):
    return message(page, reply_text).get_by_test_id("reply-quote")


async def _reply_via_rest(api: Api, user: User, room: str, text: str, original: str) -> dict:
    r = await api.post(
        f"/rooms/{room}/messages",
        {"client_msg_id": uuid.uuid4().hex, "text": text, "reply_to_id": original},
        user,
    )
    assert r.status in (200, 201), r.body
    return r.body


async def test_reply_from_menu_and_key_and_jump(new_page, api: Api) -> None:
    alice, bob, dm, page, bob_page = await dm_pair(new_page, api)
    original = await api.send(bob, dm, "Which **colour** for the logo?")
    await api.send(bob, dm, "something else")
    row = message(page, "Which colour for the logo?")
    bar = page.get_by_test_id("reply-bar")
    box = page.get_by_test_id("composer-input")

    # The menu's Reply: the bar names the original (its text without markup).
    await row.hover()
    await row.get_by_test_id("message-actions").click()
    await page.get_by_test_id("menu-reply").click()
    await expect(bar).to_be_visible()
    await expect(page.get_by_test_id("reply-bar-text")).to_have_text(
        "Replying to Bob: Which colour for the logo?"
    )
    await expect(box).to_be_focused()
    await box.press("Escape")  # cancels the reply
    await expect(bar).to_be_hidden()

    # The keyboard: R with the focus on the message's actions.
    await row.get_by_test_id("reply-button").focus()
    await page.keyboard.press("r")
    await expect(bar).to_be_visible()
    await expect(box).to_be_focused()
    await box.fill("Blue, I think")
    await box.press("Enter")
    await expect(bar).to_be_hidden()

    # Both sides show the quote above the reply; the stored message points at the original.
    for p in (page, bob_page):
        await expect(_quote(p, "Blue, I think")).to_have_text(
            re.compile(r"^Bob\s*Which colour for the logo\?$")
        )
    stored = (await api.get(f"/history/room/{dm}?limit=1", alice)).body["messages"][0]
    assert stored["reply_to"]["id"] == original["id"]
    await shot(bob_page, "reply")

    # The quote jumps to the original when it is loaded: scrolled to, highlighted, focused.
    target = message(bob_page, "Which colour for the logo?")
    await bob_page.get_by_test_id("message-list").evaluate("el => { el.scrollTop = 1e9; }")
    await _quote(bob_page, "Blue, I think").press("Enter")
    await expect(target).to_have_class(re.compile(r"\bhighlight\b"))
    await expect(target).to_be_focused()
    await expect(target).to_be_in_viewport()

    # A reply's original edited then deleted: the quote follows, "deleted message" at last.
    r = await api.patch(f"/messages/{original['id']}", {"text": "Which colour, really?"}, bob)
    assert r.status == 200, r.body
    await expect(_quote(page, "Blue, I think")).to_contain_text("Which colour, really?")
    assert (await api.delete(f"/messages/{original['id']}", bob)).status in (200, 204)
    deleted = _quote(page, "Blue, I think").locator("em")
    await expect(deleted).to_have_text("deleted message")
    # Loaded fresh from the server (reply_to resolved when read), the same.
    await page.reload()
    await open_room(page, "Bob")
    await expect(_quote(page, "Blue, I think").locator("em")).to_have_text("deleted message")
    # No Reply for a deleted message.
    await expect(page.get_by_test_id("tombstone")).to_have_count(1)
    await expect(
        page.get_by_test_id("message")
        .filter(has=page.get_by_test_id("tombstone"))
        .get_by_test_id("reply-button")
    ).to_have_count(0)


async def test_jump_far_back_loads_history_around(new_page, api: Api) -> None:
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    dm = (await api.post("/rooms/direct", {"user_id": bob.id}, alice)).body["id"]
    ids = [(await api.send(bob, dm, "the far original"))["id"]]
    for i in range(160):
        ids.append((await api.send(bob, dm, f"filler {i:03d}"))["id"])
    ids.append((await _reply_via_rest(api, alice, dm, "answering that", ids[0]))["id"])
    read = await api.post(f"/rooms/{dm}/read", {"message_id": ids[-1]}, alice)
    assert read.status == 200, read.body
    page = await signed_in(new_page, alice)
    await open_room(page, "Bob")
    await expect(message(page, "answering that")).to_be_visible()
    await expect(message(page, "the far original")).to_have_count(0)  # not loaded

    async with page.expect_request(re.compile(rf"around={ids[0]}")):
        await _quote(page, "answering that").click()
    target = message(page, "the far original")
    await expect(target).to_be_in_viewport()
    await expect(target).to_have_class(re.compile(r"\bhighlight\b"))
    await expect(message(page, "answering that")).to_have_count(0)  # the window moved there
    await expect(page.get_by_test_id("jump-latest")).to_be_visible()

    # Paging newer from there brings every message once, in order, up to the reply.
    rows = page.get_by_test_id("message")
    for _ in range(30):
        if await message(page, "answering that").count():
            break
        count = await rows.count()
        await page.get_by_test_id("message-list").evaluate("el => { el.scrollTop = 1e9; }")
        await page.wait_for_function(
            "n => document.querySelectorAll('[data-testid=message]').length !== n", arg=count
        )
    assert await rows.evaluate_all(IDS) == ids

    # Sending after the jump: the message goes at the end, after the reply, once.
    await page.get_by_test_id("composer-input").fill("and one more")
    await page.get_by_test_id("composer-input").press("Enter")
    await expect(message(page, "and one more")).to_have_count(1)
    shown = await rows.evaluate_all(IDS)
    assert shown[: len(ids)] == ids and len(shown) == len(ids) + 1


async def test_reply_typed_offline_keeps_its_original(new_page, api: Api) -> None:
    alice, bob, dm, page, bob_page = await dm_pair(new_page, api)
    original = await api.send(bob, dm, "are you there?")
    row = message(page, "are you there?")
    await expect(row).to_be_visible()
    await page.context.set_offline(True)
    await row.hover()
    await row.get_by_test_id("reply-button").click()
    await page.get_by_test_id("composer-input").fill("yes, offline")
    await page.get_by_test_id("composer-input").press("Enter")
    pending = message(page, "yes, offline")
    await expect(pending.get_by_test_id("reply-quote")).to_contain_text("are you there?")
    outbox = await page.evaluate(f"JSON.parse(localStorage.getItem('fs.outbox.{alice.id}'))")
    assert [o["reply_to"]["id"] for o in outbox] == [original["id"]]

    # The tab goes away before it is sent; the next one sends it from the outbox.
    context = page.context
    await page.close()
    await context.set_offline(False)
    again = await context.new_page()
    await again.goto("/")
    await expect(_quote(bob_page, "yes, offline")).to_contain_text("are you there?")
    stored = (await api.get(f"/history/room/{dm}?limit=1", alice)).body["messages"][0]
    assert stored["text"] == "yes, offline" and stored["reply_to"]["id"] == original["id"]


async def test_swipe_to_reply_on_a_phone(new_page, api: Api) -> None:
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    dm = (await api.post("/rooms/direct", {"user_id": bob.id}, alice)).body["id"]
    long_text = "a rather long message from Bob " * 8
    await api.send(bob, dm, long_text.strip())
    page = await signed_in(new_page, alice, **PHONE)
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text))
    await room_item(page, "Bob").tap()
    row = message(page, long_text.strip())
    await expect(row).to_be_visible()
    finger = Finger(await page.context.new_cdp_session(page))
    box = await row.get_by_test_id("message-text").bounding_box()
    assert box is not None
    x, y = box["x"] + 20, box["y"] + box["height"] / 2
    # A mostly vertical move is scrolling: no reply.
    await finger.down(x, y)
    await finger.move(x + 15, y + 60)
    await finger.move(x + 30, y + 120)
    await finger.up()
    await expect(page.get_by_test_id("reply-bar")).to_be_hidden()
    # A swipe to the right replies.
    await finger.down(x, y)
    for dx in (15, 40, 70, 90):
        await finger.move(x + dx, y + 3)
    await finger.up()
    await expect(page.get_by_test_id("reply-bar")).to_be_visible()
    # The swipe's end cancels the click only when the browser lets it (no intervention).
    assert not [t for t in console if "Ignored attempt to cancel" in t], console
    assert await page.evaluate(NO_SIDEWAYS_SCROLL)
    await page.get_by_test_id("composer-input").fill("swiped")
    await page.get_by_test_id("composer-input").press("Enter")
    quote = _quote(page, "swiped")
    await expect(quote).to_be_visible()
    # The quote of a long original stays within the phone's width (one elided line).
    assert await quote.evaluate("el => el.getBoundingClientRect().right <= innerWidth")
    assert await page.evaluate(NO_SIDEWAYS_SCROLL)
    # The reply bar's cancel button.
    await message(page, "swiped").get_by_test_id("message-actions").dispatch_event("click")
    await page.get_by_test_id("menu-reply").dispatch_event("click")
    await expect(page.get_by_test_id("reply-bar")).to_be_visible()
    await page.get_by_test_id("reply-cancel").dispatch_event("click")
    await expect(page.get_by_test_id("reply-bar")).to_be_hidden()


async def test_quotes_and_reply_bar_name_mentioned_people(new_page, api: Api) -> None:
    """A quote and the "Replying to" bar show the people a text mentions by name, as its
    chips do, not as raw @usernames; other @words stay."""
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob Builder")
    carol = await api.register(display_name="Carol Chen")
    room = (
        await api.post("/rooms", {"name": "Core", "member_ids": [bob.id, carol.id]}, alice)
    ).body["id"]
    text = f"@{carol.username} please look @{bob.username}. cc @nobody_here"
    original = await api.send(alice, room, text)
    await _reply_via_rest(api, bob, room, "on it", original["id"])
    page = await signed_in(new_page, bob)
    await open_room(page, "Core")
    named = "@Carol Chen please look @Bob Builder. cc @nobody_here"
    await expect(_quote(page, "on it")).to_contain_text(named)
    await page.get_by_test_id("message").filter(has_text="please look").first.click(button="right")
    await page.get_by_test_id("menu-reply").click()
    await expect(page.get_by_test_id("reply-bar-text")).to_have_text(f"Replying to Alice: {named}")
