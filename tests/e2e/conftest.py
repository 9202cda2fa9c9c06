"""Browser tests: Playwright driving Debian's Chromium against a real server on localhost
(a secure context, so notifications and media work)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from fastsock.app import Server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]
# Assertions wait for what the user would see; a loaded 2-core CI machine needs more than
# Playwright's default 5 s now and then.
expect.set_options(timeout=15_000)

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@pytest.fixture
def web_server(server: Server) -> Server:
    """The shared per-test server (tests/conftest.py), named for what the browser talks to."""
    return server


@pytest.fixture
def base_url(web_server: Server) -> str:
    return f"http://localhost:{web_server.port}"


@pytest.fixture
async def new_page(browser: Browser, base_url: str) -> AsyncIterator:
    """`await new_page()` -> a Page in its own browser context (its own user session)."""
    contexts: list[BrowserContext] = []

    async def make(**context_options: object) -> Page:
        context = await browser.new_context(base_url=base_url, **context_options)
        contexts.append(context)
        page = await context.new_page()
        return page

    yield make
    for context in contexts:
        await context.close()
