"""Issue 5, item 4: grouping by sender and day, infinite scroll up keeping the position,
jump to latest, unread divider, read marking while visible and focused. Review 2, item 2: a
room opened again while its first page hangs."""

from playwright.async_api import expect

from tests.e2e.helpers import hold_first, message, open_room, room_item, signed_in


async def _seed(api, room, users, count):
    last = None
    for i in range(count):
        last = await api.send(users[i % len(users) if i % 7 else 0], room, f"message {i:03d}")
    return last


async def test_infinite_scroll_keeps_position_and_jump_to_latest(new_page, api) -> None:
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    room = await api.group(alice, bob)
    name = (await api.get(f"/rooms/{room}", alice)).body["name"]
    last = await _seed(api, room, [alice, bob], 130)
    await api.post(f"/rooms/{room}/read", {"message_id": last["id"]}, alice)
    page = await signed_in(new_page, alice)
    await open_room(page, name)
    await expect(message(page, "message 129")).to_be_in_viewport()
    rows = page.get_by_test_id("message")
    await expect(rows).to_have_count(40)

    # Scroll to the top: an older page is prepended and the message that was on top stays put.
    top = message(page, "message 090")
    before = await page.get_by_test_id("message-list").evaluate(
        """el => { el.scrollTop = 0;
                   const m = [...el.querySelectorAll('[data-testid=message]')][0];
                   const text = m.querySelector('[data-testid=message-text]').innerText;
                   return [text, m.getBoundingClientRect().top]; }"""
    )
    assert before[0] == "message 090"
    await expect(rows).to_have_count(80)
    after = await top.bounding_box()
    assert after is not None
    assert abs(after["y"] - before[1]) < 3, (before, after)  # no jump
    await expect(message(page, "message 089")).to_be_attached()

    jump = page.get_by_test_id("jump-latest")
    await expect(jump).to_be_visible()
    await jump.click()
    await expect(message(page, "message 129")).to_be_in_viewport()
    await expect(jump).to_be_hidden()

    # Keep scrolling up until the start of history.
    for _ in range(5):
        await page.get_by_test_id("message-list").evaluate("el => { el.scrollTop = 0; }")
        if await rows.count() == 130:
            break
        await page.wait_for_timeout(300)
    await expect(rows).to_have_count(130)
    await expect(page.get_by_text("This is the very beginning of the group.")).to_be_visible()


async def test_grouping_unread_divider_and_read_marking(new_page, api) -> None:
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    dm = (await api.post("/rooms/direct", {"user_id": bob.id}, alice)).body["id"]
    await api.send(alice, dm, "are you there?")
    await api.send(bob, dm, "yes")
    await api.send(bob, dm, "just got back")
    await api.send(bob, dm, "what's up")

    page = await signed_in(new_page, alice)
    await expect(room_item(page, "Bob").get_by_test_id("unread-badge")).to_have_text("3")
    await open_room(page, "Bob")
    # One day divider; Bob's three messages form one group (one header), after the divider.
    await expect(page.get_by_test_id("day-divider")).to_have_text(["Today"])
    await expect(page.get_by_test_id("message-sender")).to_have_text(["Alice", "Bob"])
    await expect(message(page, "just got back")).to_have_class("msg grouped")
    divider = page.get_by_test_id("unread-divider")
    await expect(divider).to_be_visible()
    order = await page.locator("[data-testid=unread-divider], [data-testid=message]").evaluate_all(
        """els => els.map(e => e.dataset.testid === 'unread-divider'
                ? 'NEW' : e.querySelector('[data-testid=message-text]').innerText)"""
    )
    assert order.index("NEW") == 1, order
    # Visible and focused: read on the server too.
    await expect(room_item(page, "Bob").get_by_test_id("unread-badge")).to_have_count(0)
    rooms = (await api.get("/rooms", alice)).body["rooms"]
    assert rooms[0]["unread_count"] == 0

    # While the window is not focused, new messages are not marked read.
    await page.evaluate(
        "() => { document.hasFocus = () => false; window.dispatchEvent(new Event('blur')); }"
    )
    await api.send(bob, dm, "hello?")
    await expect(message(page, "hello?")).to_be_visible()
    await expect(room_item(page, "Bob").get_by_test_id("unread-badge")).to_have_text("1")
    await page.evaluate(
        "() => { delete document.hasFocus; window.dispatchEvent(new Event('focus')); }"
    )
    await expect(room_item(page, "Bob").get_by_test_id("unread-badge")).to_have_count(0)


async def test_room_opened_again_while_its_first_page_is_in_flight(new_page, api) -> None:
    """Review 2, item 2: Bob, Carol, Bob again while Bob's first page hangs. Only the latest
    load of a room lands: the stale page that comes in last neither fails nor replaces it."""
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    carol = await api.register(display_name="Carol")
    rooms = {}
    for user in (bob, carol):
        rooms[user.id] = (await api.post("/rooms/direct", {"user_id": user.id}, alice)).body["id"]
        last = await api.send(user, rooms[user.id], f"hello from {user.id}")
        await api.post(f"/rooms/{rooms[user.id]}/read", {"message_id": last["id"]}, alice)
    page = await signed_in(new_page, alice)
    # Every load that replaces a room's window, and how it ended.
    await page.evaluate(
        """() => { const store = window.__fs.store; const reset = store.resetWindow;
            window.resets = [];
            store.resetWindow = function (...args) {
                const done = reset.apply(this, args);
                window.resets.push(done.then(() => 'ok', (err) => String(err)));
                return done; }; }"""
    )
    held = await hold_first(page, f"**/history/room/{rooms[bob.id]}?*")
    await room_item(page, "Bob").click()
    stale_route = await held()
    stale = await stale_route.fetch()  # Bob's page as it is now...
    await open_room(page, "Carol")
    await expect(message(page, f"hello from {carol.id}")).to_be_visible()
    await api.send(bob, rooms[bob.id], "newer")  # ...is stale now
    await open_room(page, "Bob")
    await expect(message(page, "newer")).to_be_visible()

    await stale_route.fulfill(response=stale)
    assert await page.evaluate("Promise.all(window.resets)") == ["ok", "ok", "ok"]
    await expect(message(page, "newer")).to_be_visible()
    texts = await page.evaluate(
        "id => window.__fs.store.messagesOf(id).map(m => m.text)", rooms[bob.id]
    )
    assert texts == [f"hello from {bob.id}", "newer"], texts
    await expect(page.get_by_test_id("toast")).to_have_count(0)


async def test_focus_moved_while_the_room_loads_stays_there(new_page, api) -> None:
    """Opening a room focuses the composer once its messages are in, but not when the focus
    went to another field meanwhile (here Ctrl+K to search while the page hangs)."""
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    dm = (await api.post("/rooms/direct", {"user_id": bob.id}, alice)).body["id"]
    last = await api.send(bob, dm, "hi")
    await api.post(f"/rooms/{dm}/read", {"message_id": last["id"]}, alice)
    page = await signed_in(new_page, alice)
    held = await hold_first(page, f"**/history/room/{dm}?*")
    await room_item(page, "Bob").click()
    page_route = await held()
    await page.keyboard.press("Control+k")
    search = page.get_by_test_id("search-input")
    await expect(search).to_be_focused()
    await page_route.continue_()
    await expect(message(page, "hi")).to_be_visible()
    await expect(search).to_be_focused()
    # Without a detour the composer gets the focus.
    await open_room(page, "Bob")
    await expect(page.get_by_test_id("composer-input")).to_be_focused()
