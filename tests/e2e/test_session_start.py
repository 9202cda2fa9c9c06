"""Review of issue 10, finding 5: a sign-in the server cannot complete (GET /config answers
503) says so and tries again, still signed in, instead of showing the login screen; nothing of
that session runs on meanwhile (no socket), and a start or connect overtaken by a stop
starts nothing."""

import json

from playwright.async_api import Route, expect

from tests.e2e.helpers import LOGIN, TIMEOUT, freeze_time, signed_in, until
from tests.support import PASSWORD, Api

SOCKET = "window.__fs.store.socket"
UNAVAILABLE = {"error": {"code": "unavailable", "message": "the server is restarting"}}


async def _unavailable(route: Route) -> None:
    await route.fulfill(status=503, content_type="application/json", body=json.dumps(UNAVAILABLE))


async def test_a_start_the_server_refuses_says_so_and_tries_again(new_page, api: Api) -> None:
    alice = await api.register(display_name="Alice")
    page = await new_page()
    page.set_default_timeout(TIMEOUT)
    sockets = []
    page.on("websocket", lambda ws: sockets.append(ws))
    await page.route("**/config", _unavailable)
    await freeze_time(page)  # the retries wait for the test
    await page.goto("/")
    await page.evaluate(LOGIN, [alice.username, PASSWORD])
    await page.reload()

    screen = page.get_by_test_id("unavailable")
    text = page.get_by_test_id("unavailable-text")
    await expect(text).to_have_text(
        "Couldn't reach the server (the server is restarting). "
        "You are still signed in; trying again in 2 s."
    )
    await expect(page.get_by_test_id("unavailable-retry")).to_be_focused()
    await expect(page.get_by_test_id("auth-screen")).to_have_count(0)
    assert await page.evaluate("Boolean(localStorage.getItem('fs.refresh'))")
    assert await page.evaluate(f"{SOCKET}.state") == "idle"
    assert await page.evaluate("window.__fs.store.me") is None

    # By itself, later and later.
    await page.clock.run_for(2_000)
    await expect(text).to_contain_text("trying again in 4 s.")

    # The server answers again: "Try again now" signs in, with one socket.
    await page.unroute("**/config")
    await page.get_by_test_id("unavailable-retry").click()
    await expect(page.get_by_test_id("app")).to_be_visible()
    await expect(screen).to_have_count(0)
    await until(page, f"{SOCKET}.state === 'open'")
    assert len(sockets) == 1


async def test_a_start_overtaken_by_a_stop_starts_nothing(new_page, api: Api) -> None:
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    await api.post("/rooms/direct", {"user_id": bob.id}, alice)
    page = await signed_in(new_page, alice)
    await until(page, f"{SOCKET}.state === 'open'")
    outcome = await page.evaluate(
        """async () => {
            const store = window.__fs.store;
            const me = store.me;
            store.stop();
            const started = store.start(me);
            store.stop();  // logged out while the rooms load
            return started.then((value) => ({ value }), (err) => ({ error: err.message }));
        }"""
    )
    assert outcome == {"value": False}
    assert await page.evaluate(f"{SOCKET}.state") == "idle"


async def test_a_connect_overtaken_by_a_stop_opens_no_socket(new_page, api: Api) -> None:
    page = await signed_in(new_page, await api.register())
    await until(page, f"{SOCKET}.state === 'open'")
    sockets = []
    page.on("websocket", lambda ws: sockets.append(ws))
    # Each connect() waits for the access token first; only the last one may open a socket.
    await page.evaluate(
        f"() => {{ const s = {SOCKET}; s.stop(); s.start(); s.stop(); s.start(); }}"
    )
    await until(page, f"{SOCKET}.state === 'open'")
    assert len(sockets) == 1
