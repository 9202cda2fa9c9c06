"""Issue 14, item 6: room history lines. Membership, settings and moderation changes of a
group show in its timeline as centred one-line entries worded from each viewer's side, with
names kept live; they never count as unread, never notify and place no "New" divider or "Seen
by" row, and the room list previews them in words."""

import re

from playwright.async_api import Page, expect

from tests.e2e.helpers import message, open_room, room_item, shot
from tests.e2e.test_notifications import HIDE, _page
from tests.support import Api


def lines(page: Page):  # type: ignore[no-untyped-def]
    return page.get_by_test_id("system-line-text")


async def test_lines_are_worded_for_each_viewer_and_never_unread(new_page, api: Api) -> None:
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    carol = await api.register(display_name="Carol")
    dave = await api.register(display_name="Dave")
    r = await api.post("/rooms", {"name": "Team", "member_ids": [carol.id], "private": True}, alice)
    room = r.body["id"]
    page = await _page(new_page, alice)
    await open_room(page, "Team")
    # Bob is away (hidden tab, notifications allowed) and has nothing open.
    bob_page = await _page(new_page, bob, permissions=["notifications"])
    await bob_page.evaluate(HIDE)

    assert (await api.post(f"/rooms/{room}/members", {"user_ids": [bob.id]}, alice)).status == 200
    assert (await api.patch(f"/rooms/{room}", {"name": "Crew"}, alice)).status == 200
    assert (await api.patch(f"/rooms/{room}", {"private": False}, alice)).status == 200
    await api.send(alice, room, "Welcome aboard")
    assert (await api.post(f"/rooms/{room}/join", None, dave)).status == 200
    assert (await api.delete(f"/rooms/{room}/members/{carol.id}", carol)).status == 204

    expected_alice = [
        "You added Bob",
        "You renamed the group from Team to Crew",
        "You made the group public",
        "Dave joined",
        "Carol left",
    ]
    await expect(lines(page)).to_have_text(expected_alice)
    # Centred, muted entries: no sender row, no actions, no ticks.
    entry = page.get_by_test_id("system-line").first
    await expect(entry.locator("time")).to_be_visible()
    # A run of lines shows its time once: on the first of the three before the message and
    # on the first of the two after it.
    await expect(page.get_by_test_id("system-line").locator("time")).to_have_count(2)
    await expect(page.get_by_test_id("system-line").nth(1)).to_have_attribute(
        "aria-label", re.compile(r"^You renamed the group from Team to Crew, \d")
    )
    await expect(entry.get_by_test_id("tick")).to_have_count(0)
    await entry.hover()
    await expect(entry.get_by_role("button")).to_have_count(0)
    # The message after Alice's own line still starts with her name: lines stand alone.
    welcome = message(page, "Welcome aboard")
    await expect(welcome.get_by_test_id("message-sender")).to_have_text("Alice")
    await expect(room_item(page, "Crew")).to_contain_text("Carol left")
    # Acting is not reading: no "Seen by" for the actors (Dave, Carol); Bob, away, read nothing.
    await expect(page.get_by_test_id("seen-by")).to_have_count(0)
    await shot(page, "system-lines")

    # Bob's list: the room, previewed in words; of the seven entries only the message is
    # unread, and only the message notified.
    item = room_item(bob_page, "Crew")
    await expect(item).to_contain_text("Carol left")
    await expect(item.get_by_test_id("unread-badge")).to_have_text("1")
    await expect(bob_page).to_have_title("(1) FastSock")
    notes = await bob_page.evaluate("window.__notes")
    assert [n["body"] for n in notes] == ["Welcome aboard"], notes

    await open_room(bob_page, "Crew")
    await expect(lines(bob_page)).to_have_text(
        [
            "Alice added you",
            "Alice renamed the group from Team to Crew",
            "Alice made the group public",
            "Dave joined",
            "Carol left",
        ]
    )
    # The "New" divider stands before the first unread message, not before the lines.
    await expect(
        bob_page.locator("[data-testid=unread-divider] + [data-testid=message]")
    ).to_have_count(1)
    # Names are the live profiles: a new display name shows at once.
    assert (await api.patch("/users/me", {"display_name": "Alicia"}, alice)).status == 200
    await expect(lines(bob_page).first).to_have_text("Alicia added you")

    # Moderation: a new admin, a removal and letting the removed member back.
    r = await api.patch(f"/rooms/{room}/members/{bob.id}", {"role": "admin"}, alice)
    assert r.status == 200, r.body
    await expect(lines(bob_page).last).to_have_text("Alicia made you an admin")
    await expect(lines(page).last).to_have_text("You made Bob an admin")
    assert (await api.delete(f"/rooms/{room}/members/{bob.id}", alice)).status == 204
    # Admins are told that a removal bans; Dave, no admin, reads just what happened.
    await expect(lines(page).last).to_have_text(
        "You removed Bob (they can't rejoin until an admin lets them back in)"
    )
    dave_page = await _page(new_page, dave)
    await open_room(dave_page, "Crew")
    await expect(lines(dave_page).last).to_have_text("Alicia removed Bob")
    assert (await api.delete(f"/rooms/{room}/bans/{bob.id}", alice)).status == 204
    await expect(lines(page).last).to_have_text("You let Bob back in")
    assert len(await bob_page.evaluate("window.__notes")) == 1


async def test_seen_by_leaves_out_who_joined_after_a_message(new_page, api: Api) -> None:
    """A member's pointer starts at the newest message when they join: "Seen by" does not show
    them under it, by their join time, even when their join line is not loaded (a window
    opened at my first unread message that stops short of it)."""
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    carol = await api.register(display_name="Carol")
    dave = await api.register(display_name="Dave")
    r = await api.post("/rooms", {"name": "Team", "member_ids": [bob.id, carol.id]}, alice)
    room = r.body["id"]
    first = await api.send(alice, room, "m00")
    assert (await api.post(f"/rooms/{room}/read", {"message_id": first["id"]}, alice)).status == 200
    # A page (40) of Bob's, unread by me: my window ends at m40, just before Dave's join line.
    ids = [(await api.send(bob, room, f"m{n:02d}"))["id"] for n in range(1, 41)]
    r = await api.post(f"/rooms/{room}/read", {"message_id": ids[19]}, carol)
    assert r.status == 200, r.body
    assert (await api.post(f"/rooms/{room}/members", {"user_ids": [dave.id]}, alice)).status == 200

    page = await _page(new_page, alice)
    await open_room(page, "Team")
    seen = message(page, "m40").locator("xpath=following-sibling::*[1]")
    # Carol's pointer, from the room view, is shown: the room view is in.
    carol_seen = message(page, "m20").locator("xpath=following-sibling::*[1]")
    await expect(carol_seen).to_have_attribute("aria-label", "Seen by Carol")
    await expect(lines(page)).to_have_count(0)  # Dave's join line lies beyond the window
    await expect(seen).to_have_attribute("aria-label", "Seen by Bob")
