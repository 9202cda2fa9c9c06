"""Issue 14, item 9: the composer keeps an unsent draft per room (state/drafts.js) across room
switches and reloads, for the signed-in user only. Sending clears it, logging out forgets
them all, a room the user is no longer in loses its draft, and their number and size are
bounded. Drafts are written at most every 500 ms while typing: the tests that need the last
keystrokes hold the page's clock (Playwright's), so only a flush can have written them."""

import json

from playwright.async_api import Page, expect

from tests.e2e.helpers import (
    LOGIN,
    alice_and_bob,
    freeze_time,
    hold_first,
    message,
    open_room,
    room_item,
    shot,
    signed_in,
    until,
)
from tests.support import PASSWORD, Api, User

DRAFTS = """() => Object.fromEntries(Object.keys(localStorage)
    .filter((key) => key.startsWith('fs.draft.'))
    .map((key) => [key, JSON.parse(localStorage.getItem(key)).text]))"""
CURSOR_AT_END = "el => el.selectionStart === el.value.length && el.selectionEnd === el.value.length"


async def _group(api: Api, owner: User, name: str, *members: User) -> str:
    r = await api.post("/rooms", {"name": name, "member_ids": [m.id for m in members]}, owner)
    assert r.status == 201, r.body
    return str(r.body["id"])


async def _switch_user(page: Page, user: User) -> None:
    """Another account signs in on this browser profile (the last one's login ended without a
    logout, so its drafts stay)."""
    await page.evaluate(LOGIN, [user.username, PASSWORD])
    await page.reload()
    await expect(page.get_by_test_id("app")).to_be_visible()


async def test_a_draft_follows_its_room_across_switches(new_page, api: Api) -> None:
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    carol = await api.register(display_name="Carol")
    bob_dm = (await api.post("/rooms/direct", {"user_id": bob.id}, alice)).body["id"]
    carol_dm = (await api.post("/rooms/direct", {"user_id": carol.id}, alice)).body["id"]
    page = await signed_in(new_page, alice)
    box = page.get_by_test_id("composer-input")
    await open_room(page, "Bob")
    await freeze_time(page)

    await box.press_sequentially("note for Bob")
    await open_room(page, "Carol")
    await expect(box).to_have_value("")
    await box.press_sequentially("for Carol")
    await open_room(page, "Bob")

    await expect(box).to_have_value("note for Bob")
    assert await box.evaluate(CURSOR_AT_END)
    assert await page.evaluate(DRAFTS) == {
        f"fs.draft.{alice.id}.{bob_dm}": "note for Bob",
        f"fs.draft.{alice.id}.{carol_dm}": "for Carol",
    }
    carol_item = room_item(page, "Carol")
    await expect(carol_item.get_by_test_id("room-preview")).to_have_text("Draft: for Carol")
    await expect(carol_item.get_by_test_id("draft-mark")).to_have_text("Draft:")
    assert "Draft: for Carol" in (await carol_item.get_attribute("aria-label") or "")
    await shot(page, "drafts")


async def test_drafts_survive_a_reload(new_page, api: Api) -> None:
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    carol = await api.register(display_name="Carol")
    await api.post("/rooms/direct", {"user_id": bob.id}, alice)
    await api.post("/rooms/direct", {"user_id": carol.id}, alice)
    page = await signed_in(new_page, alice)
    box = page.get_by_test_id("composer-input")
    await open_room(page, "Carol")
    await box.fill("line one for Carol\nline two")
    await open_room(page, "Bob")
    await freeze_time(page)
    await box.press_sequentially("typed just before the reload")

    await page.reload()  # the last keystrokes' write was pending: the page going away did it
    await page.clock.resume()
    await expect(room_item(page, "Bob").get_by_test_id("room-preview")).to_have_text(
        "Draft: typed just before the reload"
    )
    await expect(room_item(page, "Carol").get_by_test_id("room-preview")).to_have_text(
        "Draft: line one for Carol"
    )
    await open_room(page, "Bob")
    await expect(box).to_have_value("typed just before the reload")
    assert await box.evaluate(CURSOR_AT_END)
    await open_room(page, "Carol")
    await expect(box).to_have_value("line one for Carol\nline two")
    assert await box.evaluate(CURSOR_AT_END)


async def test_sending_clears_the_draft(new_page, api: Api) -> None:
    alice, _, _ = await alice_and_bob(api)
    page = await signed_in(new_page, alice)
    box = page.get_by_test_id("composer-input")
    await open_room(page, "Bob")
    await freeze_time(page)
    await box.press_sequentially("sent at once")  # a write still pending when it is sent
    await box.press("Enter")
    await expect(message(page, "sent at once")).to_be_visible()
    assert await page.evaluate(DRAFTS) == {}
    await page.clock.run_for(2000)  # the pending write's time comes: it writes nothing back
    assert await page.evaluate(DRAFTS) == {}
    await expect(room_item(page, "Bob").get_by_test_id("draft-mark")).to_have_count(0)
    await page.reload()
    await page.clock.resume()
    await open_room(page, "Bob")
    await expect(message(page, "sent at once")).to_be_visible()
    await expect(box).to_have_value("")


async def test_another_account_on_this_browser_never_sees_the_drafts(new_page, api: Api) -> None:
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    await _group(api, alice, "Planning", bob)
    page = await signed_in(new_page, alice)
    box = page.get_by_test_id("composer-input")
    await open_room(page, "Planning")
    await box.fill("alice's secret plan")
    await expect(room_item(page, "Planning").get_by_test_id("draft-mark")).to_be_visible()

    await _switch_user(page, bob)
    await expect(room_item(page, "Planning").get_by_test_id("room-preview")).to_have_text(
        "No messages yet"
    )
    await open_room(page, "Planning")
    await expect(box).to_have_value("")
    await box.fill("bob's own note")

    await _switch_user(page, alice)  # her drafts wait for her, and Bob's for him
    await open_room(page, "Planning")
    await expect(box).to_have_value("alice's secret plan")
    await _switch_user(page, bob)
    await open_room(page, "Planning")
    await expect(box).to_have_value("bob's own note")


async def test_logging_out_forgets_the_drafts_in_every_tab(new_page, api: Api) -> None:
    alice, bob, _ = await alice_and_bob(api)
    await _group(api, alice, "Planning", bob)
    page = await signed_in(new_page, alice)
    box = page.get_by_test_id("composer-input")
    await open_room(page, "Planning")
    await box.fill("for the group")
    await open_room(page, "Bob")
    await box.fill("for Bob")
    other_tab = await page.context.new_page()
    await other_tab.goto("/")
    await open_room(other_tab, "Bob")
    # Typed only once the draft is back in the box, as a person would.
    await expect(other_tab.get_by_test_id("composer-input")).to_have_value("for Bob")
    await freeze_time(other_tab)
    await other_tab.get_by_test_id("composer-input").press_sequentially(" and more")
    assert len(await page.evaluate(DRAFTS)) == 2

    await page.get_by_test_id("profile-button").click()
    await page.get_by_test_id("logout").click()
    await expect(page.get_by_test_id("auth-screen")).to_be_visible()
    # The other tab signs out too, and its pending write does not bring one back.
    await expect(other_tab.get_by_test_id("auth-screen")).to_be_visible()
    assert await page.evaluate(DRAFTS) == {}

    await _switch_user(page, alice)
    await expect(page.get_by_test_id("draft-mark")).to_have_count(0)
    await open_room(page, "Bob")
    await expect(box).to_have_value("")


async def test_a_draft_written_while_logging_out_is_forgotten_too(new_page, api: Api) -> None:
    """Another tab keeps typing while a logout is under way: it signs out as soon as the login
    leaves storage (before the server has answered), and what it wrote before is purged."""
    alice, _, _ = await alice_and_bob(api)
    page = await signed_in(new_page, alice)
    other_tab = await page.context.new_page()
    await other_tab.goto("/")
    await open_room(other_tab, "Bob")
    refreshed = await hold_first(page, "**/auth/refresh")
    logged_out = await hold_first(page, "**/auth/logout")
    await page.get_by_test_id("profile-button").click()
    await page.get_by_test_id("logout").click()

    # The logging-out tab has purged and is fetching a fresh access token; the other types.
    refresh = await refreshed()
    await other_tab.get_by_test_id("composer-input").press_sequentially("typed meanwhile")
    await until(other_tab, "Object.keys(localStorage).some((k) => k.startsWith('fs.draft.'))")
    await refresh.continue_()
    # The login left storage before the logout request: the other tab signs out already.
    logout = await logged_out()
    await expect(other_tab.get_by_test_id("auth-screen")).to_be_visible()
    await logout.continue_()
    await expect(page.get_by_test_id("auth-screen")).to_be_visible()
    assert await page.evaluate(DRAFTS) == {}


async def test_a_room_the_user_is_no_longer_in_loses_its_draft(new_page, api: Api) -> None:
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    design = await _group(api, bob, "Design", alice)
    ops = await _group(api, bob, "Ops", alice)
    dm = (await api.post("/rooms/direct", {"user_id": bob.id}, alice)).body["id"]
    page = await signed_in(new_page, alice)
    box = page.get_by_test_id("composer-input")
    await open_room(page, "Ops")
    await box.fill("for ops")
    await open_room(page, "Bob")
    await box.fill("for Bob")
    await open_room(page, "Design")
    await freeze_time(page)
    await box.press_sequentially("for design")  # its last write still pending
    kept = {f"fs.draft.{alice.id}.{ops}", f"fs.draft.{alice.id}.{design}"}
    assert kept <= set(await page.evaluate(DRAFTS))

    # Removed while here: the draft goes, and the pending write does not bring it back.
    removed = await api.delete(f"/rooms/{design}/members/{alice.id}", bob)
    assert removed.status == 204, removed.body
    await expect(room_item(page, "Design")).to_have_count(0)
    await open_room(page, "Bob")
    await expect(box).to_have_value("for Bob")
    assert f"fs.draft.{alice.id}.{design}" not in await page.evaluate(DRAFTS)

    # Removed while away: the draft goes at the next start.
    await page.goto("about:blank")
    removed = await api.delete(f"/rooms/{ops}/members/{alice.id}", bob)
    assert removed.status == 204, removed.body
    await page.goto("/")
    await page.clock.resume()
    await expect(page.get_by_test_id("app")).to_be_visible()
    await expect(room_item(page, "Ops")).to_have_count(0)
    assert list(await page.evaluate(DRAFTS)) == [f"fs.draft.{alice.id}.{dm}"]


async def test_drafts_are_bounded_in_number_and_size(new_page, api: Api) -> None:
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    older = [await _group(api, bob, f"Group {i}", alice) for i in range(50)]
    newest = await _group(api, bob, "Newest", alice)
    page = await signed_in(new_page, alice)
    # Fifty drafts already, written one after the other (Group 0's the longest ago).
    await page.evaluate(
        """([prefix, rooms]) => rooms.forEach((room, i) => localStorage.setItem(
            prefix + room, JSON.stringify({text: `draft ${i}`, at: 1000 + i})))""",
        [f"fs.draft.{alice.id}.", older],
    )
    await page.reload()
    box = page.get_by_test_id("composer-input")
    await open_room(page, "Newest")

    await box.fill("one more")
    await until(page, f"localStorage.getItem('fs.draft.{alice.id}.{newest}') !== null")
    drafts = await page.evaluate(DRAFTS)
    assert len(drafts) == 50
    assert f"fs.draft.{alice.id}.{older[0]}" not in drafts
    assert drafts[f"fs.draft.{alice.id}.{older[1]}"] == "draft 1"

    await box.fill("x" * 25_000)  # over the message limit too: the box says so
    await until(
        page,
        f"JSON.parse(localStorage.getItem('fs.draft.{alice.id}.{newest}')).text.length === 20000",
    )
    stored = json.loads(
        await page.evaluate(f"localStorage.getItem('fs.draft.{alice.id}.{newest}')")
    )
    assert stored["text"] == "x" * 20_000


async def test_the_room_list_shows_a_short_preview_and_renders_only_when_it_changes(
    new_page, api: Api
) -> None:
    """A draft's first line is clipped in the room list and its label (a pasted megabyte is
    not read out); typing that leaves what the list shows as it was re-renders nothing; no
    cut splits a character in two."""
    alice, _, _ = await alice_and_bob(api)
    page = await signed_in(new_page, alice)
    await open_room(page, "Bob")
    renders = await page.evaluate(
        """() => {
            const s = window.__fs.store;
            let n = 0;
            s.on('rooms', () => { n += 1; });
            for (const text of ['first line', 'first line\\nmore', 'first line\\nmore still'])
                s.saveDraft(s.currentRoom, text);
            return n;
        }"""
    )
    assert renders == 1

    smile = "\U0001f600"  # two UTF-16 units
    long_line = "y" * 99 + smile + "z" * 5000
    await page.evaluate(
        "(text) => { const s = window.__fs.store; s.saveDraft(s.currentRoom, text); }", long_line
    )
    item = room_item(page, "Bob")
    await expect(item.get_by_test_id("room-preview")).to_have_text("Draft: " + "y" * 99 + "…")
    label = await item.get_attribute("aria-label") or ""
    assert label.endswith("Draft: " + "y" * 99 + "…"), label[-200:]

    await page.evaluate(
        "(text) => { const s = window.__fs.store; s.saveDraft(s.currentRoom, text); }",
        "x" * 19_999 + smile,
    )
    stored = await page.evaluate("() => window.__fs.store.draft(window.__fs.store.currentRoom)")
    assert stored == "x" * 19_999


async def test_a_page_going_out_of_view_writes_its_draft(new_page, api: Api) -> None:
    """A mobile browser may end a hidden page without `pagehide`: hiding writes the draft."""
    alice, _, _ = await alice_and_bob(api)
    page = await signed_in(new_page, alice)
    await open_room(page, "Bob")
    await freeze_time(page)
    await page.get_by_test_id("composer-input").press_sequentially("typed before hiding")
    assert list((await page.evaluate(DRAFTS)).values()) == ["t"]  # the first keystroke only
    await page.evaluate(
        """() => {
            Object.defineProperty(document, 'hidden', { value: true, configurable: true });
            document.dispatchEvent(new Event('visibilitychange'));
        }"""
    )
    assert list((await page.evaluate(DRAFTS)).values()) == ["typed before hiding"]


async def test_tabs_show_each_others_drafts(new_page, api: Api) -> None:
    """A draft written in one tab shows in the other's room list and composer, so typing
    there goes on from it instead of overwriting it."""
    alice, _, _ = await alice_and_bob(api)
    first = await signed_in(new_page, alice)
    second = await first.context.new_page()
    await second.goto("/")
    await open_room(first, "Bob")
    await open_room(second, "Bob")
    await first.get_by_test_id("composer-input").fill("from the first tab")

    await expect(room_item(second, "Bob").get_by_test_id("room-preview")).to_have_text(
        "Draft: from the first tab"
    )
    box = second.get_by_test_id("composer-input")
    await expect(box).to_have_value("from the first tab")
    # Typing there goes on from it: a letter typed and taken back leaves it as it was.
    stored = "Object.values((" + DRAFTS + ")())[0]"
    await box.press("End")
    await box.press("x")
    await until(first, f"{stored} === 'from the first tabx'")
    await box.press("Backspace")
    await until(first, f"{stored} === 'from the first tab'")
    await expect(room_item(first, "Bob").get_by_test_id("room-preview")).to_have_text(
        "Draft: from the first tab"
    )


FILL_STORAGE = """() => {
    for (const size of [262144, 1024, 1]) {
        try { for (let i = 0; ; i++) localStorage.setItem(`junk.${size}.${i}`, 'q'.repeat(size)); }
        catch { /* full at this size */ }
    }
}"""


async def test_full_storage_gives_up_drafts_and_never_stops_a_send(new_page, api: Api) -> None:
    """Storage full: the oldest draft makes room for the outbox; with none left, the message is
    sent and shown all the same."""
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    carol = await api.register(display_name="Carol")
    room = (await api.post("/rooms/direct", {"user_id": bob.id}, alice)).body["id"]
    await api.post("/rooms/direct", {"user_id": carol.id}, alice)
    page = await signed_in(new_page, alice)
    await open_room(page, "Carol")
    await page.get_by_test_id("composer-input").fill("c" * 5000)
    await open_room(page, "Bob")
    await page.evaluate(FILL_STORAGE)

    kept = await page.evaluate(
        """(room) => {
            const s = window.__fs.store;
            s.pending.set('probe', {client_msg_id: 'probe', room_id: room, text: 'x'.repeat(2000),
                                    attachments: [], created_at: '', state: 'failed'});
            s.persistOutbox();
            const kept = localStorage.getItem(s.outboxKey()) !== null;
            s.pending.delete('probe');
            s.persistOutbox();
            return kept;
        }""",
        room,
    )
    assert kept
    assert await page.evaluate(DRAFTS) == {}  # Carol's draft made room
    await expect(room_item(page, "Carol").get_by_test_id("draft-mark")).to_have_count(0)

    await page.evaluate(FILL_STORAGE)
    box = page.get_by_test_id("composer-input")
    await box.fill("sent with storage full")
    await box.press("Enter")
    await expect(message(page, "sent with storage full")).to_be_visible()
    await until(page, "window.__fs.store.pending.size === 0")
    history = (await api.get(f"/history/room/{room}", bob)).body["messages"]
    assert [m["text"] for m in history] == ["sent with storage full"]
