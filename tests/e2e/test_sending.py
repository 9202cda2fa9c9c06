"""Issue 5, item 5: Sending -> Sent -> Delivered -> Read ticks with tooltips (groups: who read),
retry for failed sends (drafts: test_drafts.py)."""

import json

from playwright.async_api import expect

from tests.e2e.helpers import LOGIN, message, open_room, room_item, send, signed_in
from tests.support import PASSWORD


async def test_ticks_progress_to_read_when_the_other_user_opens_the_room(new_page, api) -> None:
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    await api.post("/rooms/direct", {"user_id": bob.id}, alice)
    page = await signed_in(new_page, alice)
    await open_room(page, "Bob")
    await send(page, "first, while Bob is away")
    tick = message(page, "first, while Bob is away").get_by_test_id("tick")
    await expect(tick).to_have_attribute("data-state", "sent")
    await expect(tick).to_have_attribute("title", "Sent")

    # Bob comes online: his client confirms delivery of what it fetches.
    bob_page = await signed_in(new_page, bob)
    await expect(room_item(bob_page, "Alice").get_by_test_id("unread-badge")).to_have_text("1")
    await bob_page.get_by_test_id("room-item").first.focus()  # keep the DM closed
    await send(page, "second")
    await expect(message(page, "second").get_by_test_id("tick")).to_have_attribute(
        "data-state", "delivered"
    )
    await expect(tick).to_have_attribute("data-state", "delivered")
    await expect(tick).to_have_attribute("title", "Delivered")

    await open_room(bob_page, "Alice")
    await expect(tick).to_have_attribute("data-state", "read")
    await expect(tick).to_have_attribute("title", "Read")
    await expect(message(page, "second").get_by_test_id("tick")).to_have_attribute(
        "data-state", "read"
    )


async def test_group_read_tooltip_names_readers(new_page, api) -> None:
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    carol = await api.register(display_name="Carol")
    room = await api.group(alice, bob, carol)
    name = (await api.get(f"/rooms/{room}", alice)).body["name"]
    page = await signed_in(new_page, alice)
    await open_room(page, name)
    await send(page, "team, read this")
    tick = message(page, "team, read this").get_by_test_id("tick")
    await expect(tick).to_have_attribute("data-state", "sent")
    bob_page = await signed_in(new_page, bob)
    await open_room(bob_page, name)
    await expect(tick).to_have_attribute("title", "Delivered · Read by Bob")
    carol_page = await signed_in(new_page, carol)
    await open_room(carol_page, name)
    await expect(tick).to_have_attribute("data-state", "read")
    await expect(tick).to_have_attribute("title", "Read · Read by Bob and Carol")


async def test_a_failed_send_offers_retry(new_page, api) -> None:
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    await api.post("/rooms/direct", {"user_id": bob.id}, alice)
    page = await new_page()
    refuse = {"on": True}

    def route(ws) -> None:
        server = ws.connect_to_server()

        def from_page(raw) -> None:
            frame = json.loads(raw)
            if frame["type"] == "message.send" and refuse["on"]:
                refuse["on"] = False
                error = {"code": "unavailable", "message": "the database is unavailable"}
                ws.send(json.dumps({"type": "error", "ref": frame["ref"], "data": error}))
                return
            server.send(raw)

        ws.on_message(from_page)

    await page.route_web_socket("**/ws", route)
    await page.goto("/")
    await page.evaluate(LOGIN, [alice.username, PASSWORD])
    await page.reload()
    await open_room(page, "Bob")
    await send(page, "will this arrive?")
    row = page.get_by_test_id("message").filter(has_text="will this arrive?")
    await expect(row.get_by_test_id("tick")).to_have_attribute("data-state", "failed")
    await expect(row.get_by_role("alert")).to_contain_text("Not sent — the database is unavailable")
    await row.get_by_test_id("retry-send").click()
    await expect(row.get_by_test_id("tick")).to_have_attribute("data-state", "sent")
    history = (await api.get("/rooms", bob)).body["rooms"][0]["last_message"]
    assert history["text"] == "will this arrive?"
