"""Issue 5, item 11: reconnect UX (banner with countdown, backoff), messages written offline
queued and sent exactly once after reconnect, resume and resync without gaps or doubles.
Issue 10, item 3: the backoff is capped at 10 s, the server coming back is noticed by a probe
(and a tab coming back into view, or the network, retries at once), and other people's
presence and typing are not shown as they were while the connection is down."""

import json
import re
import time
from dataclasses import replace

from playwright.async_api import Page, expect

from fastsock.app import Server
from tests.e2e.helpers import (
    LOGIN,
    TIMEOUT,
    dm_pair,
    message,
    open_room,
    room_item,
    send,
    signed_in,
)
from tests.support import PASSWORD

SOCKET = "window.__fs.store.socket"
COUNTDOWN = re.compile(r"Disconnected — reconnecting in (\d+)s")


async def until(page: Page, condition: str) -> None:
    """Wait (bounded) until a JavaScript condition on the page holds."""
    await page.wait_for_function(f"() => {condition}", polling=50, timeout=TIMEOUT)


async def freeze_time(page: Page) -> None:
    """From now on the page's clock (Date, timers) moves only by `page.clock.run_for`: no
    backoff, probe or expiry timer fires unless the test says so."""
    await page.clock.install()
    await page.clock.pause_at(time.time() + 1)


async def set_visibility(page: Page, state: str) -> None:
    await page.evaluate(
        """state => {
            const define = (name, value) =>
                Object.defineProperty(document, name, {value, configurable: true});
            define('visibilityState', state);
            define('hidden', state === 'hidden');
            document.dispatchEvent(new Event('visibilitychange'));
        }""",
        state,
    )


async def test_offline_messages_arrive_exactly_once_after_reconnect(new_page, api) -> None:
    alice, bob, dm, page, bob_page = await dm_pair(new_page, api)
    banner = page.get_by_test_id("connection-banner")
    await expect(banner).to_be_hidden()

    await page.context.set_offline(True)
    await expect(banner).to_contain_text("Disconnected")
    await send(page, "typed offline 1")
    await send(page, "typed offline 2")
    for text in ("typed offline 1", "typed offline 2"):
        await expect(message(page, text).get_by_test_id("tick")).to_have_attribute(
            "data-state", "sending"
        )
    await api.send(bob, dm, "sent by Bob meanwhile")

    await page.context.set_offline(False)
    await expect(page.get_by_test_id("banner-text")).to_have_text("Back online")
    for text in ("typed offline 1", "typed offline 2", "sent by Bob meanwhile"):
        await expect(message(page, text)).to_have_count(1)
        await expect(message(bob_page, text)).to_have_count(1)
    await expect(message(page, "typed offline 2").get_by_test_id("tick")).to_have_attribute(
        "data-state", "read"
    )
    await expect(banner).to_be_hidden(timeout=5000)
    history = (await api.get(f"/history/room/{dm}", alice)).body["messages"]
    texts = [m["text"] for m in history]
    assert texts.count("typed offline 1") == 1 and texts.count("typed offline 2") == 1


async def test_dropped_socket_shows_countdown_then_resumes(new_page, api) -> None:
    *_, page, bob_page = await dm_pair(new_page, api)
    banner = page.get_by_test_id("connection-banner")
    await page.evaluate("window.__fs.store.socket.simulateDrop()")
    await expect(banner).to_contain_text(
        __import__("re").compile(r"Disconnected — reconnecting in \ds|Reconnecting…")
    )
    await send(page, "written during the drop")
    await expect(page.get_by_test_id("banner-text")).to_have_text("Back online")
    await expect(message(bob_page, "written during the drop")).to_have_count(1)
    await expect(message(page, "written during the drop")).to_have_count(1)


async def test_resync_fetches_missed_changes_without_doubles(new_page, api) -> None:
    _, bob, dm, page, bob_page = await dm_pair(new_page, api)
    early = await api.send(bob, dm, "before the outage")
    await expect(message(page, "before the outage")).to_be_visible()
    # Lose the connection and make the session unknown to the server: it answers "resync".
    await page.context.set_offline(True)
    await page.evaluate("window.__fs.store.socket.session = 'gone'")
    await api.send(bob, dm, "missed while away")
    await api.patch(f"/messages/{early['id']}", {"text": "before the outage (fixed)"}, bob)
    await send(page, "queued reply")
    await page.context.set_offline(False)
    await expect(message(page, "missed while away")).to_have_count(1)
    await expect(page.get_by_test_id("message-text").filter(has_text="(fixed)")).to_have_count(1)
    await expect(message(page, "before the outage")).to_have_count(0)
    await expect(message(bob_page, "queued reply")).to_have_count(1)
    await expect(message(page, "queued reply")).to_have_count(1)


async def test_unanswered_sends_survive_a_reload(new_page, api) -> None:
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    dm = (await api.post("/rooms/direct", {"user_id": bob.id}, alice)).body["id"]
    page = await new_page()
    page.set_default_timeout(TIMEOUT)
    swallow = {"on": True}

    def route(ws) -> None:
        server = ws.connect_to_server()

        def from_page(raw) -> None:
            if swallow["on"] and json.loads(raw)["type"] == "message.send":
                return  # lost on the way: no answer ever comes
            server.send(raw)

        ws.on_message(from_page)

    await page.route_web_socket("**/ws", route)
    await page.goto("/")
    await page.evaluate(LOGIN, [alice.username, PASSWORD])
    await page.reload()
    await open_room(page, "Bob")
    await send(page, "sent just before closing the tab")
    row = message(page, "sent just before closing the tab")
    await expect(row.get_by_test_id("tick")).to_have_attribute("data-state", "sending")
    swallow["on"] = False
    await page.reload()
    await open_room(page, "Bob")
    await expect(row.get_by_test_id("tick")).to_have_attribute("data-state", "sent")
    texts = [m["text"] for m in (await api.get(f"/history/room/{dm}", bob)).body["messages"]]
    assert texts == ["sent just before closing the tab"]


async def test_expired_token_close_refreshes_and_resumes(new_page, api) -> None:
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    dm = (await api.post("/rooms/direct", {"user_id": bob.id}, alice)).body["id"]
    page = await new_page()
    page.set_default_timeout(TIMEOUT)
    sockets = []

    def route(ws) -> None:
        ws.connect_to_server()  # frames pass through both ways
        sockets.append(ws)

    await page.route_web_socket("**/ws", route)
    await page.goto("/")
    await page.evaluate(LOGIN, [alice.username, PASSWORD])
    await page.reload()
    await open_room(page, "Bob")
    await expect(page.get_by_test_id("composer-input")).to_be_visible()
    before = await page.evaluate("localStorage.getItem('fs.refresh')")
    # What the server does when the socket's access token expires.
    await sockets[-1].close(code=4401, reason="token expired")
    await api.send(bob, dm, "sent while the token was renewed")
    await expect(message(page, "sent while the token was renewed")).to_have_count(1)
    assert len(sockets) == 2
    assert await page.evaluate("localStorage.getItem('fs.refresh')") != before  # rotated
    await expect(page.get_by_test_id("connection-banner")).to_be_hidden()


async def test_the_backoff_is_capped_and_a_probe_reconnects_once_the_server_is_back(
    new_page, api, web_server: Server
) -> None:
    alice = await api.register(display_name="Alice")
    page = await signed_in(new_page, alice)
    # Connected: a socket still on its way in would outlive the server's stop.
    await until(page, f"{SOCKET}.state === 'open'")
    await freeze_time(page)
    text = page.get_by_test_id("banner-text")
    await web_server.stop()
    # Attempt after refused attempt: enough of them for an uncapped backoff to pass 10 s.
    for attempt in range(1, 8):
        await until(page, f"{SOCKET}.state === 'waiting' && {SOCKET}.attempt === {attempt}")
        countdown = COUNTDOWN.fullmatch(await text.text_content() or "")
        assert countdown and int(countdown.group(1)) <= 10, await text.text_content()
        await page.clock.run_for(10_000)  # the whole backoff: the next attempt starts

    await until(page, f"{SOCKET}.state === 'waiting' && {SOCKET}.attempt === 8")
    back = Server(replace(web_server.settings, port=web_server.port))
    await back.start()
    try:
        # The next probe is at most 3 s away; the backoff at the cap waits at least 5 s. So
        # only the probe can have reconnected.
        await page.clock.run_for(3_000)
        await expect(text).to_have_text("Back online")
        assert await page.evaluate(f"{SOCKET}.state") == "open"
    finally:
        await back.stop()


async def test_a_tab_coming_back_into_view_reconnects_at_once(new_page, api) -> None:
    page = await signed_in(new_page, await api.register())
    await until(page, f"{SOCKET}.state === 'open'")
    await freeze_time(page)
    await page.evaluate(f"{SOCKET}.simulateDrop()")
    await expect(page.get_by_test_id("banner-text")).to_have_text(COUNTDOWN)
    await set_visibility(page, "hidden")
    await set_visibility(page, "visible")
    await expect(page.get_by_test_id("banner-text")).to_have_text("Back online")


async def test_the_network_coming_back_reconnects_at_once(new_page, api) -> None:
    page = await signed_in(new_page, await api.register())
    await until(page, f"{SOCKET}.state === 'open'")
    await freeze_time(page)
    await page.evaluate(f"{SOCKET}.simulateDrop()")  # not offline: a backoff is running
    await expect(page.get_by_test_id("banner-text")).to_have_text(COUNTDOWN)
    await page.evaluate("window.dispatchEvent(new Event('online'))")
    await expect(page.get_by_test_id("banner-text")).to_have_text("Back online")


async def test_presence_and_typing_are_unknown_while_disconnected(new_page, api) -> None:
    *_, page, bob_page = await dm_pair(new_page, api)
    await freeze_time(page)  # Bob's typing line cannot expire by itself (7 s) meanwhile
    dots = [room_item(page, "Bob").locator(".presence"), page.locator(".conv-header .presence")]
    subtitle = page.get_by_test_id("conversation-subtitle")
    typing = page.get_by_test_id("typing-indicator")
    for dot in dots:
        await expect(dot).to_have_class(re.compile(r"\bonline\b"))
    await expect(subtitle).to_have_text("Online")
    await bob_page.get_by_test_id("composer-input").press_sequentially("on my way")
    await expect(typing).to_have_text("Bob is typing…")

    for outcome in ("ok", "resync"):
        await page.context.set_offline(True)
        await expect(typing).to_have_text("")
        for dot in dots:
            await expect(dot).to_have_class(re.compile(r"\bunknown\b"))
        await expect(subtitle).to_have_text("")
        if outcome == "resync":
            await page.evaluate(f"{SOCKET}.session = 'gone'")  # the server answers "resync"
        await page.context.set_offline(False)
        await until(page, f"{SOCKET}.state === 'open'")
        for dot in dots:
            await expect(dot).to_have_class(re.compile(r"\bonline\b"))
        await expect(subtitle).to_have_text("Online")
