"""Issue 5, item 1: register, log in, stay logged in across reloads (silent refresh-token
rotation), log out."""

from playwright.async_api import expect

from tests.e2e.helpers import TIMEOUT, shot
from tests.support import PASSWORD


async def test_register_reload_logout_and_login(new_page, api) -> None:
    page = await new_page()
    page.set_default_timeout(TIMEOUT)
    await page.goto("/")
    await expect(page.get_by_test_id("auth-screen")).to_be_visible()
    await shot(page, "login")

    await page.get_by_role("tab", name="Create account").click()
    await page.get_by_label("Username").fill("carol")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_label("Display name (optional)").fill("Carol Danvers")
    await page.get_by_role("button", name="Create account", exact=True).click()
    await expect(page.get_by_test_id("profile-button")).to_contain_text("Carol Danvers")
    first_token = await page.evaluate("localStorage.getItem('fs.refresh')")
    assert first_token

    # A reload keeps the session: the refresh token is rotated silently.
    await page.reload()
    await expect(page.get_by_test_id("profile-button")).to_contain_text("Carol Danvers")
    rotated = await page.evaluate("localStorage.getItem('fs.refresh')")
    assert rotated and rotated != first_token
    # The access token stays in memory only.
    stored = await page.evaluate("Object.keys(localStorage)")
    assert stored == ["fs.refresh"]

    await page.get_by_test_id("profile-button").click()
    await page.get_by_test_id("logout").click()
    await expect(page.get_by_test_id("auth-screen")).to_be_visible()
    assert await page.evaluate("localStorage.getItem('fs.refresh')") is None
    # The old refresh token was revoked on the server.
    assert (await api.post("/auth/refresh", {"refresh_token": rotated})).status == 401

    await page.get_by_label("Username").fill("carol")
    await page.get_by_label("Password").fill("wrong password!")
    await page.get_by_role("button", name="Log in", exact=True).click()
    await expect(page.get_by_test_id("auth-error")).to_have_text("Wrong username or password.")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_label("Password").press("Enter")
    await expect(page.get_by_test_id("profile-button")).to_contain_text("Carol Danvers")
