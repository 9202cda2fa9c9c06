"""Issue 10, item 1: a room opens at the first unread message whatever the number of unread
messages (older history above, newer below, both loaded by scrolling), and the list never
stays short with a spinner nothing can trigger. Review 2: a live message during the last
newer page (item 3), unread until the end was shown (4), paging per room and Retry (9)."""

import asyncio
import re

from playwright.async_api import Page, Route, expect

from tests.e2e.helpers import hold_first, message, open_room, room_item, send, signed_in
from tests.support import Api, User

# The rows in order, "NEW" for the unread divider.
ORDER = """els => els.map(e => e.dataset.testid === 'unread-divider'
    ? 'NEW' : e.querySelector('[data-testid=message-text]').innerText)"""
ROWS = "[data-testid=unread-divider], [data-testid=message]"


async def _seed(api: Api, sender: User, room: str, start: int, stop: int) -> dict:
    last = {}
    for i in range(start, stop):
        last = await api.send(sender, room, f"message {i:03d}")
    return last


async def _dm(api: Api) -> tuple[User, User, str]:
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    dm = (await api.post("/rooms/direct", {"user_id": bob.id}, alice)).body["id"]
    return alice, bob, dm


async def _order(page: Page) -> list[str]:
    return await page.locator(ROWS).evaluate_all(ORDER)


async def _settled(page: Page) -> None:
    """No loading spinner left on screen (one stuck there is the bug)."""
    for loader in await page.get_by_test_id("history-loader").all():
        await expect(loader).not_to_be_in_viewport()


async def _scroll(page: Page, to: str, until: str) -> None:
    """Scroll the list to its top or bottom again and again until `until` is loaded."""
    target = message(page, until)
    rows = page.get_by_test_id("message")
    script = "el => { el.scrollTop = 0; }" if to == "top" else "el => { el.scrollTop = 1e9; }"
    for _ in range(30):
        if await target.count():
            break
        count = await rows.count()
        await page.get_by_test_id("message-list").evaluate(script)
        await page.wait_for_function(
            "([n, text]) => document.querySelectorAll('[data-testid=message]').length !== n"
            " || [...document.querySelectorAll('[data-testid=message-text]')]"
            ".some(e => e.innerText === text)",
            arg=[count, until],
        )
    await target.scroll_into_view_if_needed()
    await expect(target).to_be_in_viewport()


async def test_all_unread_opens_at_the_first_message(new_page, api) -> None:
    alice, bob, dm = await _dm(api)
    await _seed(api, bob, dm, 0, 45)
    page = await signed_in(new_page, alice)
    await expect(room_item(page, "Bob").get_by_test_id("unread-badge")).to_have_text("45")
    await open_room(page, "Bob")

    divider = page.get_by_test_id("unread-divider")
    await expect(divider).to_be_in_viewport()
    await expect(message(page, "message 000")).to_be_in_viewport()
    assert (await _order(page))[:2] == ["NEW", "message 000"]
    await expect(
        page.get_by_text("This is the beginning of your direct message history.")
    ).to_be_visible()
    await _settled(page)
    # Not read yet: the newest messages have not been shown.
    await expect(room_item(page, "Bob").get_by_test_id("unread-badge")).to_have_text("45")

    await _scroll(page, "bottom", until="message 044")
    await _settled(page)
    assert (await _order(page)) == ["NEW"] + [f"message {i:03d}" for i in range(45)]
    await expect(room_item(page, "Bob").get_by_test_id("unread-badge")).to_have_count(0)


async def test_five_hundred_unread(new_page, api) -> None:
    alice, bob, dm = await _dm(api)
    await _seed(api, bob, dm, 0, 500)
    page = await signed_in(new_page, alice)
    # The server counts up to 100: the list, its label and the title say "99+".
    item = room_item(page, "Bob")
    await expect(item.get_by_test_id("unread-badge")).to_have_text("99+")
    await expect(item).to_have_attribute("aria-label", re.compile(r"^Bob, 99\+ unread\. "))
    await expect(page).to_have_title("(99+) FastSock")
    await open_room(page, "Bob")

    await expect(page.get_by_test_id("unread-divider")).to_be_in_viewport()
    await expect(message(page, "message 000")).to_be_in_viewport()
    assert (await _order(page))[:2] == ["NEW", "message 000"]
    await _settled(page)
    # Newer pages come by scrolling down, one at a time, below what is being read.
    rows = page.get_by_test_id("message")
    await expect(rows).to_have_count(40)
    await page.get_by_test_id("message-list").evaluate("el => { el.scrollTop = 1e9; }")
    await expect(rows).to_have_count(80)
    await expect(message(page, "message 039")).to_be_in_viewport()
    # And "Jump to latest" goes to the end at once.
    await _scroll(page, "bottom", until="message 100")
    await _settled(page)
    await page.get_by_test_id("jump-latest").click()
    await expect(message(page, "message 499")).to_be_in_viewport()
    await expect(room_item(page, "Bob").get_by_test_id("unread-badge")).to_have_count(0)
    await _settled(page)


async def test_history_and_unread(new_page, api) -> None:
    """A page and a half of unread messages after 100 read ones: the divider sits between
    the two, the read history loads above, the rest of the unread below."""
    alice, bob, dm = await _dm(api)
    last_read = await _seed(api, bob, dm, 0, 100)
    await api.post(f"/rooms/{dm}/read", {"message_id": last_read["id"]}, alice)
    await _seed(api, bob, dm, 100, 160)
    page = await signed_in(new_page, alice)
    await open_room(page, "Bob")

    await expect(page.get_by_test_id("unread-divider")).to_be_in_viewport()
    await expect(message(page, "message 100")).to_be_in_viewport()
    order = await _order(page)
    at = order.index("NEW")
    assert order[at - 1 : at + 2] == ["message 099", "NEW", "message 100"], order
    await _settled(page)

    await _scroll(page, "top", until="message 000")
    await expect(
        page.get_by_text("This is the beginning of your direct message history.")
    ).to_be_visible()
    await _scroll(page, "bottom", until="message 159")
    await _settled(page)
    assert (await _order(page)) == (
        [f"message {i:03d}" for i in range(100)]
        + ["NEW"]
        + [f"message {i:03d}" for i in range(100, 160)]
    )


async def test_reply_before_reading_to_the_end(new_page, api) -> None:
    """Sending from a room opened at its first unread message jumps to the newest messages,
    the reply at the end, even when that page was read before the reply was stored."""
    alice, bob, dm = await _dm(api)
    await _seed(api, bob, dm, 0, 200)
    page = await signed_in(new_page, alice)
    await open_room(page, "Bob")
    await expect(message(page, "message 000")).to_be_in_viewport()

    stale = (await api.get(f"/history/room/{dm}?limit=40", alice)).body  # without the reply

    async def stale_latest(route: Route) -> None:
        await page.wait_for_function("() => window.__fs.store.pending.size === 0")  # acked
        await route.fulfill(json=stale)

    await page.route(re.compile(r"/history/room/\w+\?limit=\d+$"), stale_latest)
    await send(page, "on my way")
    await expect(message(page, "on my way")).to_be_in_viewport()
    order = await _order(page)
    assert order[-2:] == ["message 199", "on my way"], order
    assert "message 100" not in order  # one jump, not every page in between
    assert "NEW" not in order  # the first unread message is not in this window
    await expect(room_item(page, "Bob").get_by_test_id("unread-badge")).to_have_count(0)


async def test_a_few_unread_after_history(new_page, api) -> None:
    alice, bob, dm = await _dm(api)
    last_read = await _seed(api, bob, dm, 0, 100)
    await api.post(f"/rooms/{dm}/read", {"message_id": last_read["id"]}, alice)
    await _seed(api, bob, dm, 100, 103)
    page = await signed_in(new_page, alice)
    await open_room(page, "Bob")

    await expect(message(page, "message 102")).to_be_in_viewport()
    order = await _order(page)
    assert order[-5:] == ["message 099", "NEW", "message 100", "message 101", "message 102"], order
    await _settled(page)
    await expect(room_item(page, "Bob").get_by_test_id("unread-badge")).to_have_count(0)
    await _scroll(page, "top", until="message 000")


async def test_tall_window_fills_itself(new_page, api) -> None:
    """Nothing unread, short rows and a tall window: the first pages do not fill it, so no
    scroll event can ask for more; they load anyway until the list scrolls."""
    alice, bob, dm = await _dm(api)
    last = await _seed(api, bob, dm, 0, 200)
    await api.post(f"/rooms/{dm}/read", {"message_id": last["id"]}, alice)
    page = await signed_in(new_page, alice, viewport={"width": 1280, "height": 2600})

    # History pages wait until the room's details (read pointers) are applied, so that no
    # later render of the list happens to ask for the next page: the list must do it itself.
    async def after_details(route: Route) -> None:
        await page.wait_for_function("id => window.__fs.store.details.has(id)", arg=dm)
        await route.continue_()

    await page.route("**/history/room/**", after_details)
    await open_room(page, "Bob")
    await expect(message(page, "message 199")).to_be_in_viewport()
    await _settled(page)
    scrolls = await page.get_by_test_id("message-list").evaluate(
        "el => el.scrollHeight > el.clientHeight + 300"
    )
    assert scrolls


async def test_short_room(new_page, api) -> None:
    """Fewer messages than a page, read or not: no spinner at all."""
    alice, bob, dm = await _dm(api)
    await _seed(api, bob, dm, 0, 5)
    page = await signed_in(new_page, alice)
    await open_room(page, "Bob")
    await expect(message(page, "message 004")).to_be_visible()
    assert (await _order(page)) == ["NEW"] + [f"message {i:03d}" for i in range(5)]
    await expect(page.get_by_test_id("history-loader")).to_have_count(0)
    await page.reload()
    await open_room(page, "Bob")
    await expect(message(page, "message 004")).to_be_visible()
    assert (await _order(page)) == [f"message {i:03d}" for i in range(5)]
    await expect(page.get_by_test_id("history-loader")).to_have_count(0)


async def test_live_message_during_the_last_newer_page(new_page, api) -> None:
    """Review 2, item 3: a message arriving while the last page of newer messages is in
    flight, with the page read on the server before it was stored: it is in neither the page
    nor the window (which did not reach the newest message yet) unless the window keeps it."""
    alice, bob, dm = await _dm(api)
    await _seed(api, bob, dm, 0, 45)
    page = await signed_in(new_page, alice)
    await open_room(page, "Bob")
    await expect(message(page, "message 000")).to_be_in_viewport()
    await _settled(page)

    held = await hold_first(page, re.compile(r"/history/room/\w+\?after="))
    await page.get_by_test_id("message-list").evaluate("el => { el.scrollTop = 1e9; }")
    route = await held()
    newer = await route.fetch()  # the server reads the last page now...
    await api.send(bob, dm, "live while paging")  # ...then the message is stored
    # Its frame is in (the room list shows it) before the page.
    await expect(room_item(page, "Bob").get_by_test_id("room-preview")).to_have_text(
        re.compile("live while paging")
    )
    await route.fulfill(response=newer)

    await _scroll(page, "bottom", until="live while paging")
    assert (await _order(page))[-2:] == ["message 044", "live while paging"]
    await _settled(page)
    await expect(room_item(page, "Bob").get_by_test_id("unread-badge")).to_have_count(0)


async def test_read_only_once_the_end_was_shown(new_page, api) -> None:
    """Review 2, item 4: every unread message fits in the first page, but not on screen (the
    room opens at the first of them): the room stays unread until scrolled to its end."""
    alice, bob, dm = await _dm(api)
    last_read = await _seed(api, bob, dm, 0, 60)
    await api.post(f"/rooms/{dm}/read", {"message_id": last_read["id"]}, alice)
    for i in range(35):
        await api.send(bob, dm, f"unread {i:03d}\nsecond line\nthird line")
    page = await signed_in(new_page, alice)
    badge = room_item(page, "Bob").get_by_test_id("unread-badge")
    await expect(badge).to_have_text("35")
    await open_room(page, "Bob")

    await expect(page.get_by_test_id("unread-divider")).to_be_in_viewport()
    last = page.get_by_test_id("message").filter(has_text="unread 034")
    await expect(last).to_be_attached()  # the whole tail is loaded, below the fold
    await expect(last).not_to_be_in_viewport()
    await expect(badge).to_have_text("35")  # the render that placed the divider read nothing
    assert (await api.get("/rooms", alice)).body["rooms"][0]["unread_count"] == 35

    await page.get_by_test_id("message-list").evaluate("el => { el.scrollTop = 1e9; }")
    await expect(last).to_be_in_viewport()
    await expect(badge).to_have_count(0)
    for _ in range(200):  # the server has it too (bounded: 10 s)
        if (await api.get("/rooms", alice)).body["rooms"][0]["unread_count"] == 0:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the room is still unread on the server")


async def test_a_slow_page_elsewhere_holds_nothing_up(new_page, api) -> None:
    """Review 2, item 9: an older page of one room in flight does not keep another room from
    paging; a page that failed offers "Retry" instead of a spinner nothing restarts."""
    alice, bob, dm = await _dm(api)
    carol = await api.register(display_name="Carol")
    dm_carol = (await api.post("/rooms/direct", {"user_id": carol.id}, alice)).body["id"]
    for sender, room in ((bob, dm), (carol, dm_carol)):
        last = await _seed(api, sender, room, 0, 120)
        await api.post(f"/rooms/{room}/read", {"message_id": last["id"]}, alice)
    page = await signed_in(new_page, alice)
    rows = page.get_by_test_id("message")

    held = await hold_first(page, re.compile(rf"/history/room/{dm}\?before="))
    await open_room(page, "Bob")
    await expect(message(page, "message 119")).to_be_in_viewport()
    await page.get_by_test_id("message-list").evaluate("el => { el.scrollTop = 0; }")
    bobs_page = await held()  # Bob's older page hangs

    refused = await hold_first(page, re.compile(rf"/history/room/{dm_carol}\?before="))
    await open_room(page, "Carol")
    await expect(message(page, "message 119")).to_be_in_viewport()
    await page.get_by_test_id("message-list").evaluate("el => { el.scrollTop = 0; }")
    await (await refused()).fulfill(
        status=503, json={"error": {"code": "unavailable", "message": "try later"}}
    )
    retry = page.get_by_test_id("history-retry")
    await expect(retry).to_be_visible()
    await expect(page.get_by_text("Couldn't load older messages: try later")).to_be_visible()
    await retry.click()
    await expect(rows).to_have_count(80)
    await expect(retry).to_have_count(0)
    await bobs_page.continue_()
