"""User text is rendered as text: no markup from messages, names or search results ever
becomes DOM, and the client code has no innerHTML, inline script or prompt()-style dialogs."""

import re
from pathlib import Path

from playwright.async_api import expect

from tests.e2e.helpers import message, open_room, signed_in

WEB = Path(__file__).resolve().parents[2] / "fastsock" / "web"
EVIL = '<img src=x onerror="window.__pwned=1"><b>bold</b>'


async def test_markup_in_user_text_is_shown_verbatim(new_page, api) -> None:
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="<i>Bob</i><script>window.__pwned=1</script>")
    dm = (await api.post("/rooms/direct", {"user_id": bob.id}, alice)).body["id"]
    await api.send(bob, dm, EVIL)
    page = await signed_in(new_page, alice)
    await open_room(page, "<i>Bob</i><script>window.__pwned=1</script>")
    row = message(page, EVIL)
    await expect(row).to_be_visible()
    assert await row.locator("img:not(.avatar img), b, i, script").count() == 0
    search = page.get_by_test_id("search-input")
    await search.fill("bold")
    await search.press("Enter")
    await expect(page.get_by_test_id("search-result-text")).to_have_text(EVIL)
    assert await page.evaluate("window.__pwned") is None


def test_client_code_never_builds_markup_from_strings() -> None:
    for path in (WEB / "js").rglob("*.js"):
        code = path.read_text()
        for banned in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"):
            assert banned not in code, f"{path.name} uses {banned}"
        assert not re.search(r"\b(prompt|alert|confirm)\(", code), f"{path.name} uses a dialog"
    html = (WEB / "index.html").read_text()
    assert "style=" not in html and "<style" not in html
    assert re.findall(r"<script[^>]*>", html) == ['<script type="module" src="/static/js/main.js">']
