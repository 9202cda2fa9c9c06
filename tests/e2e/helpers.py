"""Shared helpers for the browser tests: sign a page in as a user created over REST, find
rooms and messages by their stable selectors, control the page's clock, save screenshots."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from playwright.async_api import Locator, Page, Route, WebSocketRoute, expect

from tests.e2e.conftest import SCREENSHOTS
from tests.support import PASSWORD, Api, User

LOGIN = """async ([username, password]) => {
  const r = await fetch('/auth/login', {
    method: 'POST',
    headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({username, password}),
  });
  localStorage.setItem('fs.refresh', (await r.json()).refresh_token);
}"""

TIMEOUT = 10_000


async def signed_in(
    new_page,
    user: User,
    *,
    ws_route: Callable[[WebSocketRoute], object] | None = None,
    fake_clock: bool = False,
    **context_options: object,
) -> Page:
    """A page in a fresh context, logged in as `user` (a login session of its own, stored the
    way the app stores it; the reload then restores it like any reload), showing the app.
    `ws_route` handles its WebSockets (`page.route_web_socket`) from the first one on;
    `fake_clock`: its timers are Playwright's from the start (running in real time until
    `freeze_time`, which then holds every one of them, the app's first ones too)."""
    page = await new_page(**context_options)
    page.set_default_timeout(TIMEOUT)
    if ws_route is not None:
        await page.route_web_socket("**/ws", ws_route)
    if fake_clock:
        await page.clock.install()
    await page.goto("/")
    await page.evaluate(LOGIN, [user.username, PASSWORD])
    await page.reload()
    await expect(page.get_by_test_id("app")).to_be_visible()
    return page


class DmPair(NamedTuple):
    alice: User
    bob: User
    dm: str
    page: Page  # Alice's
    bob_page: Page


async def alice_and_bob(api: Api) -> tuple[User, User, str]:
    """Alice and Bob (by those display names) and their DM's id."""
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    dm = (await api.post("/rooms/direct", {"user_id": bob.id}, alice)).body["id"]
    return alice, bob, dm


async def dm_pair(new_page, api: Api, *, bob_opens: bool = True) -> DmPair:
    """Alice and Bob with a DM, each signed in on a page; Alice has the DM open (and Bob too,
    unless `bob_opens` is false)."""
    alice, bob, dm = await alice_and_bob(api)
    page = await signed_in(new_page, alice)
    bob_page = await signed_in(new_page, bob)
    await open_room(page, "Bob")
    if bob_opens:
        await open_room(bob_page, "Alice")
    return DmPair(alice, bob, dm, page, bob_page)


def room_item(page: Page, name: str) -> Locator:
    return page.get_by_test_id("room-item").filter(
        has=page.get_by_test_id("room-name").get_by_text(name, exact=True)
    )


async def open_room(page: Page, name: str) -> None:
    await room_item(page, name).click()
    await expect(page.get_by_test_id("conversation-title")).to_have_text(name)


def message(page: Page, text: str) -> Locator:
    return page.get_by_test_id("message").filter(
        has=page.get_by_test_id("message-text").get_by_text(text, exact=True)
    )


async def send(page: Page, text: str) -> None:
    box = page.get_by_test_id("composer-input")
    await box.fill(text)
    await box.press("Enter")


async def until(page: Page, condition: str) -> None:
    """Wait (bounded) until a JavaScript condition on the page holds."""
    await page.wait_for_function(f"() => {condition}", polling=50, timeout=TIMEOUT)


async def freeze_time(page: Page) -> None:
    """From now on the page's clock (Date, timers) moves only by `page.clock.run_for`: no
    backoff, probe, ping, retry or periodic refresh fires unless the test says so."""
    await page.clock.install()
    await page.clock.pause_at(time.time() + 1)


async def set_visibility(page: Page, state: str) -> None:
    """The tab hidden or shown, as the browser reports it (`visibilitychange`)."""
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


async def hold_first(page: Page, url: str | re.Pattern[str]) -> Callable[[], Awaitable[Route]]:
    """The first request of the page to `url` waits until the test answers it; later ones go
    through. Returns a function that waits (bounded) for that request's route."""
    held: asyncio.Future[Route] = asyncio.get_running_loop().create_future()

    async def handle(route: Route) -> None:
        if held.done():
            await route.continue_()
        else:
            held.set_result(route)

    await page.route(url, handle)
    return lambda: asyncio.wait_for(asyncio.shield(held), TIMEOUT / 1000)


async def shot(page: Page, name: str, **options: object) -> None:
    """Save a screenshot in docs/screenshots (`options` go to `page.screenshot`)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), **options)  # type: ignore[arg-type]
