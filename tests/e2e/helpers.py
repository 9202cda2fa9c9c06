"""Shared helpers for the browser tests: sign a page in as a user created over REST, find
rooms and messages by their stable selectors, save screenshots."""

from __future__ import annotations

from typing import NamedTuple

from playwright.async_api import Locator, Page, expect

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


async def signed_in(new_page, user: User, **context_options: object) -> Page:
    """A page in a fresh context, logged in as `user` (a login session of its own, stored the
    way the app stores it; the reload then restores it like any reload), showing the app."""
    page = await new_page(**context_options)
    page.set_default_timeout(TIMEOUT)
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


async def dm_pair(new_page, api: Api, *, bob_opens: bool = True) -> DmPair:
    """Alice and Bob with a DM, each signed in on a page; Alice has the DM open (and Bob too,
    unless `bob_opens` is false)."""
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    dm = (await api.post("/rooms/direct", {"user_id": bob.id}, alice)).body["id"]
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


async def shot(page: Page, name: str, **options: object) -> None:
    """Save a screenshot in docs/screenshots (`options` go to `page.screenshot`)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), **options)  # type: ignore[arg-type]
