"""Issue 10, item 6: logging out in one tab signs out every tab of that login at once (they
share the refresh token: the server closes their sockets with 4401, and the browser tells the
other tabs that the token is gone); the same person signed in elsewhere stays signed in.
Review of issue 10: another login in one tab signs the others out too, and no tab ever goes on
with another login's token (finding 15); logging out forgets the drafts and unsent messages
(finding 21)."""

import json

from playwright.async_api import Page, WebSocketRoute, expect

from tests.e2e.helpers import (
    TIMEOUT,
    dm_pair,
    freeze_time,
    message,
    open_room,
    send,
    signed_in,
)
from tests.support import Api

LOCAL_TEXT = """() => Object.keys(localStorage).filter(
    (key) => key.startsWith('fs.draft.') || key.startsWith('fs.outbox.')).sort()"""


async def log_out(page: Page) -> None:
    await page.get_by_test_id("profile-button").click()
    await page.get_by_test_id("logout").click()
    await expect(page.get_by_test_id("auth-screen")).to_be_visible()


async def test_logging_out_in_one_tab_signs_out_the_other_tabs_not_other_devices(
    new_page, api: Api
) -> None:
    alice, bob, dm, page, bob_page = await dm_pair(new_page, api)
    second_tab = await page.context.new_page()
    second_tab.set_default_timeout(TIMEOUT)
    await second_tab.goto("/")
    await open_room(second_tab, "Bob")
    laptop = await signed_in(new_page, alice)  # another browser: a login of its own
    await open_room(laptop, "Bob")

    await log_out(page)

    await expect(second_tab.get_by_test_id("auth-screen")).to_be_visible()
    await expect(second_tab.get_by_test_id("composer-input")).to_have_count(0)
    # The laptop carries on, sending and receiving.
    await send(laptop, "still here on the laptop")
    await expect(message(bob_page, "still here on the laptop")).to_have_count(1)
    await send(bob_page, "hello laptop")
    await expect(message(laptop, "hello laptop")).to_have_count(1)
    texts = [m["text"] for m in (await api.get(f"/history/room/{dm}", bob)).body["messages"]]
    assert texts == ["hello laptop", "still here on the laptop"]


async def test_another_tab_signs_out_at_once_even_if_its_socket_says_nothing(
    new_page, api: Api
) -> None:
    *_, page, _ = await dm_pair(new_page, api, bob_opens=False)
    second_tab = await page.context.new_page()
    second_tab.set_default_timeout(TIMEOUT)

    def mute_server_close(ws) -> None:
        server = ws.connect_to_server()
        server.on_close(lambda code, reason: None)  # the page never hears of the 4401

    await second_tab.route_web_socket("**/ws", mute_server_close)
    await second_tab.goto("/")
    await open_room(second_tab, "Bob")
    await freeze_time(second_tab)

    await log_out(page)

    # Only the browser's storage event can have told it.
    await expect(second_tab.get_by_test_id("auth-screen")).to_be_visible()


async def test_a_tab_whose_login_was_ended_elsewhere_signs_out(new_page, api: Api) -> None:
    *_, page, _ = await dm_pair(new_page, api, bob_opens=False)
    await freeze_time(page)
    refresh_token = await page.evaluate("localStorage.getItem('fs.refresh')")
    access = await api.post("/auth/refresh", {"refresh_token": refresh_token})
    assert access.status == 200, access.body
    # Another tab of this browser logs out (its storage is not this page's here): only the
    # server's 4401 close reaches the page, whose refresh is then refused.
    r = await api.request(
        "POST",
        "/auth/logout",
        {"refresh_token": access.body["refresh_token"]},
        token=access.body["access_token"],
    )
    assert r.status == 204, r.body
    await expect(page.get_by_test_id("auth-screen")).to_be_visible()


async def test_another_login_in_another_tab_signs_this_tab_out(new_page, api: Api) -> None:
    *_, page, _ = await dm_pair(new_page, api, bob_opens=False)  # Alice's
    carol = await api.register(display_name="Carol")
    await freeze_time(page)  # nothing periodic refreshes the token meanwhile
    # Another tab of this browser, left on the login screen from before Alice logged in: only
    # its storage changes reach the page.
    other_tab = await page.context.new_page()
    await other_tab.goto("/static/favicon.svg")

    # It rotates the shared token (what a tab of the same login does): nothing changes here.
    await other_tab.evaluate(
        """async () => {
            const r = await fetch('/auth/refresh', {
                method: 'POST', headers: {'Content-Type': 'application/json'},
                body: JSON.stringify({refresh_token: localStorage.getItem('fs.refresh')}),
            });
            localStorage.setItem('fs.refresh', (await r.json()).refresh_token);
        }"""
    )
    await send(page, "still Alice after the rotation")
    tick = message(page, "still Alice after the rotation").get_by_test_id("tick")
    await expect(tick).to_have_attribute("data-state", "sent")

    # Carol logs in there: her token replaces Alice's, never removed. The page follows: it is
    # Carol's browser now (it used to carry on as Alice, and refresh with Carol's token).
    await other_tab.evaluate(
        "token => localStorage.setItem('fs.refresh', token)", carol.refresh_token
    )
    await expect(page.get_by_test_id("profile-button")).to_contain_text("Carol")
    await expect(page.get_by_test_id("room-item")).to_have_count(0)  # not Alice's rooms


async def test_a_tab_never_refreshes_with_another_logins_token(new_page, api: Api) -> None:
    *_, page, _ = await dm_pair(new_page, api, bob_opens=False)  # Alice's
    carol = await api.register(display_name="Carol")
    # Carol's token replaced the login's in storage and the page was not told (as if it had
    # missed the event): its next refresh must not carry on as Alice with Carol's token.
    await page.evaluate("token => localStorage.setItem('fs.refresh', token)", carol.refresh_token)
    await page.evaluate(
        "async () => (await import('/static/js/api.js')).refreshAccess().catch(() => null)"
    )
    await expect(page.get_by_test_id("profile-button")).to_contain_text("Carol")
    await expect(page.get_by_test_id("room-item")).to_have_count(0)


def _no_send_acknowledged(ws: WebSocketRoute) -> None:
    server = ws.connect_to_server()

    def from_page(raw: str | bytes) -> None:
        if json.loads(raw)["type"] != "message.send":  # lost on the way: never answered
            server.send(raw)

    ws.on_message(from_page)


async def test_logging_out_forgets_drafts_and_unsent_messages(new_page, api: Api) -> None:
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    dm = (await api.post("/rooms/direct", {"user_id": bob.id}, alice)).body["id"]
    page = await signed_in(new_page, alice, ws_route=_no_send_acknowledged)
    await open_room(page, "Bob")
    await send(page, "never acknowledged")
    row = message(page, "never acknowledged")
    await expect(row.get_by_test_id("tick")).to_have_attribute("data-state", "sending")
    await page.get_by_test_id("composer-input").fill("half written")
    assert await page.evaluate(LOCAL_TEXT) == [f"fs.draft.{alice.id}.{dm}", f"fs.outbox.{alice.id}"]
    await page.get_by_test_id("theme-toggle").click()  # a preference, not text: it stays

    await log_out(page)
    assert await page.evaluate(LOCAL_TEXT) == []
    assert await page.evaluate("localStorage.getItem('fs.theme')") is not None
