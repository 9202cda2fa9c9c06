"""Issue 14, item 5: live profiles. Bob changes his name, status and avatar; Alice sees each
change at once (the room list, the conversation header, the timeline's names), without a
reload, and so does Bob's other tab. Alice's clock is frozen: no periodic refresh can stand
in for the `user.updated` event."""

import re

from playwright.async_api import Page, expect

from tests.e2e.attachments_data import png_bytes
from tests.e2e.helpers import (
    alice_and_bob,
    freeze_time,
    hold_first,
    message,
    open_room,
    room_item,
    signed_in,
    until,
)
from tests.support import Api

SOCKET = "window.__fs.store.socket"


async def _save_profile(
    page: Page, *, name: str | None = None, status: str | None = None, picture: bytes = b""
) -> None:
    """The page's own profile dialog: fill what is given, save, wait for it to close."""
    await page.get_by_test_id("profile-button").click()
    dialog = page.get_by_role("dialog", name="Your profile")
    if name is not None:
        await dialog.get_by_label("Display name").fill(name)
    if status is not None:
        await dialog.get_by_label("Status message").fill(status)
    if picture:
        await dialog.get_by_test_id("avatar-input").set_input_files(
            {"name": "me.png", "mimeType": "image/png", "buffer": picture}
        )
    await dialog.get_by_test_id("profile-save").click()
    await expect(dialog).to_have_count(0)


async def test_name_status_and_avatar_changes_show_at_once(new_page, api: Api) -> None:
    alice, bob, dm = await alice_and_bob(api)
    await api.send(bob, dm, "hello from bob")
    # Bob first, so that Alice's page learns nothing from his coming online.
    bob_page = await signed_in(new_page, bob)
    bob_other_tab = await signed_in(new_page, bob)
    page = await signed_in(new_page, alice, fake_clock=True)
    await open_room(page, "Bob")
    row = message(page, "hello from bob")
    await expect(row.get_by_test_id("message-sender")).to_have_text("Bob")
    await until(page, f"{SOCKET}.state === 'open'")
    await freeze_time(page)
    await page.evaluate("window.__notReloaded = true")

    await _save_profile(bob_page, name="Bobby Tables", status="Out to lunch")
    await expect(room_item(page, "Bobby Tables")).to_be_visible()
    await expect(page.get_by_test_id("conversation-title")).to_have_text("Bobby Tables")
    await expect(page.get_by_test_id("conversation-subtitle")).to_contain_text("Out to lunch")
    await expect(row.get_by_test_id("message-sender")).to_have_text("Bobby Tables")
    await expect(bob_other_tab.get_by_test_id("profile-button")).to_contain_text("Bobby Tables")

    await _save_profile(bob_page, picture=png_bytes(120, 120))
    blob = re.compile("^blob:")
    await expect(room_item(page, "Bobby Tables").locator(".avatar img")).to_have_attribute(
        "src", blob
    )
    await expect(row.locator(".avatar img")).to_have_attribute("src", blob)
    await expect(bob_other_tab.get_by_test_id("profile-button").locator("img")).to_have_attribute(
        "src", blob
    )
    await _save_profile(bob_page, status="Back at my desk")
    await expect(page.get_by_test_id("conversation-subtitle")).to_contain_text("Back at my desk")
    assert await page.evaluate("window.__notReloaded === true")


async def test_held_presence_is_never_overwritten_by_an_older_view(new_page, api: Api) -> None:
    """A profile's `online` was read when the server sent it: neither a `user.updated` nor a
    fetch answered after a `presence` event takes back what that event said."""
    alice, bob, _ = await alice_and_bob(api)
    bob_ws = await api.ws(bob)
    page = await signed_in(new_page, alice)
    await until(page, f"{SOCKET}.state === 'open'")
    bob_online = f"window.__fs.store.user('{bob.id}')?.online"
    await until(page, f"{bob_online} === true")
    frame = "(type, data) => window.__fs.store.onFrame({type, data})"

    # A fetch under way when Bob goes offline: its answer (online) comes after.
    held = await hold_first(page, f"**/users/{bob.id}")
    await page.evaluate(f"() => {{ window.__fs.store.fetchUser('{bob.id}', {{ maxAge: 0 }}); }}")
    answer = await held()
    await page.evaluate(f"(id) => ({frame})('presence', {{user_id: id, online: false}})", bob.id)
    await answer.continue_()
    await until(page, f"!window.__fs.store.userPending.has('{bob.id}')")
    assert await page.evaluate(bob_online) is False

    # An announcement sent before that presence event, with Bob's name changed.
    view = await page.evaluate(f"({{...window.__fs.store.user('{bob.id}')}})")
    await page.evaluate(
        f"(user) => ({frame})('user.updated', {{user}})",
        view | {"display_name": "Robert", "online": True},
    )
    await expect(room_item(page, "Robert")).to_be_visible()
    assert await page.evaluate(bob_online) is False
    bob_ws.close()


async def test_a_profile_as_it_was_renders_nothing(new_page, api: Api) -> None:
    """A fetch or an announcement that changes nothing re-renders no one."""
    alice, bob, _ = await alice_and_bob(api)
    page = await signed_in(new_page, alice)
    await expect(room_item(page, "Bob")).to_be_visible()
    renders = await page.evaluate(
        """(id) => {
            const s = window.__fs.store;
            let n = 0;
            s.on('users', () => { n += 1; });
            s.setUser({ ...s.user(id) });
            s.setUser({ ...s.user(id), display_name: 'Robert' });
            return n;
        }""",
        bob.id,
    )
    assert renders == 1


async def test_someone_who_comes_to_share_a_room_again_is_fetched_again(new_page, api: Api) -> None:
    """Carol changed her name while she shared no room with Alice (no one told Alice): when
    she starts a conversation with Alice, Alice's page fetches her profile again."""
    alice = await api.register(display_name="Alice")
    carol = await api.register(display_name="Carol")
    r = await api.post("/rooms", {"name": "Group", "member_ids": [carol.id]}, alice)
    group = r.body["id"]
    await api.send(carol, group, "hello from carol")
    page = await signed_in(new_page, alice)
    await until(page, f"{SOCKET}.state === 'open'")
    await open_room(page, "Group")
    await expect(message(page, "hello from carol").get_by_test_id("message-sender")).to_have_text(
        "Carol"
    )
    await freeze_time(page)
    assert (await api.delete(f"/rooms/{group}/members/{carol.id}", carol)).status == 204
    assert (await api.patch("/users/me", {"display_name": "Caroline"}, carol)).status == 200
    await api.post("/rooms/direct", {"user_id": alice.id}, carol)
    await expect(room_item(page, "Caroline")).to_be_visible()


async def test_a_change_missed_during_an_outage_shows_after_the_resync(new_page, api: Api) -> None:
    """A resync replays no `user.updated`: the profiles held are fetched again."""
    alice, bob, _ = await alice_and_bob(api)
    page = await signed_in(new_page, alice)
    await until(page, f"{SOCKET}.state === 'open'")
    await expect(room_item(page, "Bob")).to_be_visible()
    await freeze_time(page)
    await page.context.set_offline(True)
    assert (await api.patch("/users/me", {"display_name": "Robert"}, bob)).status == 200
    await page.evaluate(f"{SOCKET}.session = 'gone'")  # the server answers "resync"
    await page.context.set_offline(False)
    await expect(room_item(page, "Robert")).to_be_visible()
