"""Issue 5, item 11: reconnect UX (banner with countdown, backoff), messages written offline
queued and sent exactly once after reconnect, resume and resync without gaps or doubles."""

import json

from playwright.async_api import expect

from tests.e2e.helpers import LOGIN, TIMEOUT, dm_pair, message, open_room, send
from tests.support import PASSWORD


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
