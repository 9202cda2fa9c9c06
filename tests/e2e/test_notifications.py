"""Issue 5, item 10: browser notifications while the tab is hidden or unfocused (permission
asked from a user gesture, per-room mute), title badge with the unread total. Issue 10, item 7:
a blocked permission keeps the bell, saying why and how to allow notifications."""

from collections.abc import Awaitable, Callable

from playwright.async_api import Page, expect

from tests.e2e.helpers import LOGIN, TIMEOUT, open_room, room_item, shot
from tests.support import PASSWORD

RECORD = """
window.__notes = [];
const Real = window.Notification;
class Recorded extends Real {
  constructor(title, options) {
    super(title, options);
    window.__notes.push({title, body: options && options.body});
  }
}
window.Notification = Recorded;
"""
HIDE = """() => {
  Object.defineProperty(document, 'visibilityState', {value: 'hidden', configurable: true});
  Object.defineProperty(document, 'hidden', {value: true, configurable: true});
  document.hasFocus = () => false;
  document.dispatchEvent(new Event('visibilitychange'));
}"""


async def _site_settings(page: Page) -> Callable[[str], Awaitable[None]]:
    """Sets the browser's own notification permission for the app's origin, as the site
    settings would ("denied", "granted" or "prompt"); Playwright can only grant, so over CDP.
    The session stays attached (it ends with the page): detaching it drops the setting."""
    cdp = await page.context.new_cdp_session(page)
    context_id = (await cdp.send("Target.getTargetInfo"))["targetInfo"]["browserContextId"]
    origin = await page.evaluate("location.origin")

    async def set_permission(setting: str) -> None:
        await cdp.send(
            "Browser.setPermission",
            {
                "permission": {"name": "notifications"},
                "setting": setting,
                "origin": origin,
                "browserContextId": context_id,
            },
        )

    return set_permission


async def _page(new_page, user, **options):
    page = await new_page(**options)
    page.set_default_timeout(TIMEOUT)
    await page.add_init_script(RECORD)
    await page.goto("/")
    await page.evaluate(LOGIN, [user.username, PASSWORD])
    await page.reload()
    await expect(page.get_by_test_id("app")).to_be_visible()
    return page


async def test_notification_while_hidden_respects_mute_and_title_badge(new_page, api) -> None:
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    dm = (await api.post("/rooms/direct", {"user_id": bob.id}, alice)).body["id"]
    page = await _page(new_page, alice, permissions=["notifications"])
    # Permission already granted: no need for the enable button.
    await expect(page.get_by_test_id("notifications-button")).to_be_hidden()
    await open_room(page, "Bob")
    await page.evaluate(HIDE)

    await api.send(bob, dm, "ping from Bob")
    await page.wait_for_function("() => window.__notes.length === 1")
    assert await page.evaluate("window.__notes") == [{"title": "Bob", "body": "ping from Bob"}]
    # Hidden: not marked read, so the title shows the unread total.
    await expect(page).to_have_title("(1) FastSock")
    await expect(room_item(page, "Bob").get_by_test_id("unread-badge")).to_have_text("1")

    # Muted rooms stay quiet.
    await page.get_by_test_id("mute-toggle").click()
    await expect(page.get_by_test_id("mute-toggle")).to_have_attribute("aria-pressed", "true")
    await api.send(bob, dm, "second ping")
    await expect(page).to_have_title("(2) FastSock")
    assert await page.evaluate("window.__notes.length") == 1
    # The mute is kept locally across reloads.
    await page.reload()
    await open_room(page, "Bob")
    await expect(page.get_by_test_id("mute-toggle")).to_have_attribute("aria-pressed", "true")


async def test_permission_is_requested_from_a_click(new_page, api) -> None:
    alice = await api.register()
    page = await _page(new_page, alice)
    button = page.get_by_role("button", name="Enable desktop notifications")
    await expect(button).to_be_visible()
    await page.evaluate(
        """() => { window.__asked = 0;
                   Notification.requestPermission = async () => {
                     window.__asked++;
                     return 'granted';
                   };
                 }"""
    )
    assert await page.evaluate("window.__asked") == 0  # never asked without a gesture
    await button.click()
    assert await page.evaluate("window.__asked") == 1


async def test_blocked_permission_keeps_the_bell_and_explains(new_page, api) -> None:
    alice = await api.register()
    page = await new_page()
    page.set_default_timeout(TIMEOUT)
    await page.goto("/")
    set_permission = await _site_settings(page)
    await set_permission("denied")  # blocked before the app starts
    await page.wait_for_function("() => Notification.permission === 'denied'")
    await page.evaluate(LOGIN, [alice.username, PASSWORD])
    await page.reload()

    bell = page.get_by_test_id("notifications-button")
    await expect(bell).to_be_visible()
    await expect(bell).to_have_accessible_name("Notifications blocked: how to allow them")
    await expect(bell).to_have_attribute(
        "title", "Your browser blocks notifications from this site. Click to see how to allow them."
    )
    await bell.click()
    dialog = page.get_by_role("dialog", name="Notifications are blocked")
    await expect(dialog).to_contain_text("Site settings")
    await expect(dialog).to_contain_text(await page.evaluate("location.host"))
    await shot(page, "notifications-blocked", animations="disabled")
    await dialog.get_by_role("button", name="OK").click()
    await expect(dialog).to_be_hidden()
    await expect(bell).to_be_focused()

    # Allowed in the site settings: the bell goes away without a reload; reset to "ask":
    # it offers to enable them again.
    await set_permission("granted")
    await expect(bell).to_be_hidden()
    await set_permission("prompt")
    await expect(bell).to_have_accessible_name("Enable desktop notifications")
