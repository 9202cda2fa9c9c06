"""Issue 5, item 11: reconnect UX (banner with countdown, backoff), messages written offline
queued and sent exactly once after reconnect, resume and resync without gaps or doubles.
Issue 10, item 3: the backoff is capped at 10 s, the server coming back is noticed by a probe
(and a tab coming back into view, or the network, retries at once), and other people's
presence and typing are not shown as they were while the connection is down.
Review of issue 10 (findings 6, 8): at most one probe per wait, none after a few answers while
the socket still fails; after a resync everyone's presence is fetched again, not only the first
50 people on screen."""

import asyncio
import json
import re
from dataclasses import replace

from playwright.async_api import Page, WebSocketRoute, expect

from fastsock.app import Server
from tests.e2e.helpers import (
    LOGIN,
    TIMEOUT,
    dm_pair,
    freeze_time,
    message,
    open_room,
    room_item,
    send,
    set_visibility,
    signed_in,
    until,
)
from tests.support import PASSWORD, Api

SOCKET = "window.__fs.store.socket"
COUNTDOWN = re.compile(r"Disconnected — reconnecting in (\d+)s")
# Counts the page's GET /healthz probes, sent and answered (or failed).
COUNT_PROBES = """() => {
  window.__probes = { sent: 0, settled: 0 };
  const fetch0 = window.fetch;
  window.fetch = (url, options) => {
    if (!String(url).endsWith('/healthz')) return fetch0(url, options);
    window.__probes.sent += 1;
    return fetch0(url, options).finally(() => { window.__probes.settled += 1; });
  };
}"""


async def wait_out(page: Page) -> None:
    """Move the page's clock on, a quarter of a second at a time, each probe settled before
    the next step, until this wait is over (a probe or the backoff reconnected; a refused
    attempt may already be waiting again)."""
    attempt = await page.evaluate(f"{SOCKET}.attempt")
    over = f"{SOCKET}.state !== 'waiting' || {SOCKET}.attempt !== {attempt}"
    for _ in range(60):  # more than the longest wait, 10 s
        await page.clock.run_for(250)
        await until(page, "window.__probes.sent === window.__probes.settled")
        if await page.evaluate(f"() => {over}"):
            return
    raise AssertionError("still waiting to reconnect after 15 s")


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
    await page.evaluate(COUNT_PROBES)
    text = page.get_by_test_id("banner-text")
    await web_server.stop()
    # Attempt after refused attempt: enough of them for an uncapped backoff to pass 10 s.
    for attempt in range(1, 8):
        await until(page, f"{SOCKET}.state === 'waiting' && {SOCKET}.attempt === {attempt}")
        countdown = COUNTDOWN.fullmatch(await text.text_content() or "")
        assert countdown and int(countdown.group(1)) <= 10, await text.text_content()
        await wait_out(page)  # the next attempt starts
    # One probe per wait at most (none in the first two, under 2 s): not one every 1-3 s.
    assert await page.evaluate("window.__probes.sent") <= 5

    await until(page, f"{SOCKET}.state === 'waiting' && {SOCKET}.attempt === 8")
    retry_at = await page.evaluate(f"{SOCKET}.retryAt")
    back = Server(replace(web_server.settings, port=web_server.port))
    await back.start()
    try:
        await wait_out(page)
        # Before the backoff ran out: the probe noticed the server and reconnected.
        assert await page.evaluate("Date.now()") < retry_at
        await expect(text).to_have_text("Back online")
        assert await page.evaluate(f"{SOCKET}.state") == "open"
    finally:
        await back.stop()


async def test_no_probing_on_and_on_while_the_server_answers_but_the_socket_fails(
    new_page, api
) -> None:
    """A proxy that refuses WebSockets: /healthz answers, every socket closes at once. Three
    answers say a probe cannot help; from then on only the backoff's attempts go out."""
    page = await signed_in(new_page, await api.register())
    await until(page, f"{SOCKET}.state === 'open'")
    await freeze_time(page)
    await page.evaluate(COUNT_PROBES)

    async def refuse(ws: WebSocketRoute) -> None:
        await ws.close(code=1011, reason="WebSockets are not allowed here")

    await page.route_web_socket("**/ws", refuse)
    await page.evaluate(f"{SOCKET}.simulateDrop()")
    for attempt in range(1, 11):  # about a minute and a half of attempts
        await until(page, f"{SOCKET}.state === 'waiting' && {SOCKET}.attempt === {attempt}")
        await wait_out(page)
    assert await page.evaluate("window.__probes") == {"sent": 3, "settled": 3}


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


async def test_after_a_resync_presence_is_fetched_for_everyone_on_screen(
    new_page, api: Api
) -> None:
    """Bob is Alice's 56th conversation, far down the list: after a resync every profile held
    is fetched again (a few at a time, the people on screen first), his presence with it."""
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    await api.post("/rooms/direct", {"user_id": bob.id}, alice)  # the oldest: last in the list
    others = await asyncio.gather(*(api.register(display_name=f"Pat {i}") for i in range(55)))
    for other in others:
        await api.post("/rooms/direct", {"user_id": other.id}, alice)
    bob_socket = await api.ws(bob)  # Bob is online all along
    page = await signed_in(new_page, alice)
    await until(page, f"{SOCKET}.state === 'open'")
    await freeze_time(page)  # nothing periodic refreshes anyone meanwhile
    dot = room_item(page, "Bob").locator(".presence")
    await expect(dot).to_have_class(re.compile(r"\bonline\b"))

    await page.context.set_offline(True)
    await expect(dot).to_have_class(re.compile(r"\bunknown\b"))
    await page.evaluate(f"{SOCKET}.session = 'gone'")  # the server answers "resync"
    await page.context.set_offline(False)
    await expect(dot).to_have_class(re.compile(r"\bonline\b"))
    bob_socket.close()
