"""Issue 14, item 8: "Seen by" rows in groups: small avatars under the latest message each
member has read, moving live as read events arrive, capped with "+N"; none in a DM."""

from playwright.async_api import Locator, Page, expect

from tests.e2e.helpers import message, open_room, send, shot, signed_in, until
from tests.support import Api, User


def seen_under(page: Page, text: str) -> Locator:
    """The "Seen by" row right under the message with `text` (none if the next row is not one)."""
    return message(page, text).locator("xpath=following-sibling::*[1][@data-testid='seen-by']")


async def read(api: Api, user: User, room: str, message_id: str) -> None:
    r = await api.post(f"/rooms/{room}/read", {"message_id": message_id}, user)
    assert r.status == 200, r.body


AT_BOTTOM = (
    "(l => l.scrollHeight - l.scrollTop - l.clientHeight <= 2)"
    "(document.querySelector('[data-testid=message-list]'))"
)


async def test_seen_by_moves_live_with_each_read(new_page, api) -> None:
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    carol = await api.register(display_name="Carol")
    dave = await api.register(display_name="Dave")
    group = (
        await api.post(
            "/rooms", {"name": "Design", "member_ids": [bob.id, carol.id, dave.id]}, alice
        )
    ).body["id"]
    # Enough history to scroll: the list must stay at its end as rows come and go.
    for i in range(25):
        await api.send(alice, group, f"earlier {i}")
    ids = {t: (await api.send(alice, group, t))["id"] for t in ("plan", "draft", "final")}
    page = await signed_in(new_page, alice, viewport={"width": 1100, "height": 640})
    await open_room(page, "Design")
    await expect(message(page, "final")).to_be_visible()
    await expect(page.get_by_test_id("seen-by")).to_have_count(0)  # nobody has read yet

    await read(api, carol, group, ids["plan"])
    row = seen_under(page, "plan")
    await expect(row).to_have_attribute("aria-label", "Seen by Carol")
    await expect(row).to_have_attribute("title", "Seen by Carol")
    await expect(row.get_by_test_id("seen-by-avatar")).to_have_count(1)
    await expect(row.locator(f"[data-user='{carol.id}']")).to_have_text("C")

    await read(api, dave, group, ids["plan"])
    await expect(row).to_have_attribute("aria-label", "Seen by Carol and Dave")
    await expect(row.get_by_test_id("seen-by-avatar")).to_have_count(2)

    # Dave reads further: his avatar moves under "final" (once, nowhere else), at the end of
    # the list, which stays scrolled to its end.
    await read(api, dave, group, ids["final"])
    await expect(seen_under(page, "final")).to_have_attribute("aria-label", "Seen by Dave")
    await expect(row).to_have_attribute("aria-label", "Seen by Carol")
    await expect(
        page.locator(f"[data-testid=seen-by-avatar][data-user='{dave.id}']")
    ).to_have_count(1)
    await until(page, AT_BOTTOM)

    # Sending a message counts as having seen it: Bob's avatar goes under his own message.
    await api.send(bob, group, "looks good")
    await expect(seen_under(page, "looks good")).to_have_attribute("aria-label", "Seen by Bob")
    await until(page, AT_BOTTOM)
    await expect(page.get_by_test_id("seen-by")).to_have_count(3)  # plan, final, looks good
    await shot(page, "seen-by")


async def test_seen_by_caps_avatars_with_a_count(new_page, api) -> None:
    alice = await api.register(display_name="Alice")
    readers = [await api.register(display_name=f"Reader {n}") for n in range(1, 8)]
    body = {"name": "All hands", "member_ids": [r.id for r in readers]}
    group = (await api.post("/rooms", body, alice)).body["id"]
    last = await api.send(alice, group, "all hands at 3")
    page = await signed_in(new_page, alice)
    await open_room(page, "All hands")
    await expect(message(page, "all hands at 3")).to_be_visible()

    for reader in readers:
        await read(api, reader, group, last["id"])
    row = seen_under(page, "all hands at 3")
    await expect(row).to_have_attribute("aria-label", "Seen by Reader 1, Reader 2 and 5 others")
    await expect(row.get_by_test_id("seen-by-avatar")).to_have_count(5)
    await expect(row.get_by_test_id("seen-by-more")).to_have_text("+2")
    names = ", ".join(f"Reader {n}" for n in range(1, 7))
    await expect(row).to_have_attribute("title", f"Seen by {names} and Reader 7")


async def test_seen_by_in_groups_only_not_in_dms(new_page, api) -> None:
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    carol = await api.register(display_name="Carol")
    dm = (await api.post("/rooms/direct", {"user_id": bob.id}, alice)).body["id"]
    group = (
        await api.post("/rooms", {"name": "Trio", "member_ids": [bob.id, carol.id]}, alice)
    ).body["id"]
    in_dm = await api.send(alice, dm, "just us")
    in_group = await api.send(alice, group, "all of us")
    page = await signed_in(new_page, alice)

    await open_room(page, "Trio")
    await read(api, bob, group, in_group["id"])
    await expect(seen_under(page, "all of us")).to_have_attribute("aria-label", "Seen by Bob")

    await open_room(page, "Bob")
    await read(api, bob, dm, in_dm["id"])
    # The tick says Read (the event arrived), and no row repeats it.
    await expect(message(page, "just us").get_by_test_id("tick")).to_have_attribute(
        "data-state", "read"
    )
    await expect(page.get_by_test_id("seen-by")).to_have_count(0)
    await send(page, "still just us")
    await expect(message(page, "still just us")).to_be_visible()
    await expect(page.get_by_test_id("seen-by")).to_have_count(0)


async def test_seen_by_row_above_keeps_what_is_read_in_place(new_page, api) -> None:
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    group = (await api.post("/rooms", {"name": "Long", "member_ids": [bob.id]}, alice)).body["id"]
    sent = [await api.send(alice, group, f"line {i}") for i in range(40)]
    page = await signed_in(new_page, alice, viewport={"width": 1100, "height": 640})
    await open_room(page, "Long")
    await expect(message(page, "line 39")).to_be_visible()
    # Scrolled up: "line 15" at the top of the list, rows above it out of sight.
    await message(page, "line 15").evaluate("el => el.scrollIntoView({block: 'start'})")
    await until(page, f"!{AT_BOTTOM}")
    top = "el => Math.round(el.getBoundingClientRect().top)"
    before = await message(page, "line 15").evaluate(top)
    await read(api, bob, group, sent[5]["id"])  # a row appears above what is being read
    await expect(seen_under(page, "line 5")).to_have_attribute("aria-label", "Seen by Bob")
    assert await message(page, "line 15").evaluate(top) == before
