"""Issue 10, item 6: logging out in one tab signs out every tab of that login at once (they
share the refresh token: the server closes their sockets with 4401, and the browser tells the
other tabs that the token is gone); the same person signed in elsewhere stays signed in."""

import time

from playwright.async_api import Page, expect

from tests.e2e.helpers import TIMEOUT, dm_pair, message, open_room, send, signed_in
from tests.support import Api


async def freeze_time(page: Page) -> None:
    """No timer fires in the page from now on: nothing periodic (the 30 s profile refresh)
    can stumble on the revoked login instead of what the test is about."""
    await page.clock.install()
    await page.clock.pause_at(time.time() + 1)


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
