"""Issue 14, item 8: the ticks of every loaded message come from one request per room (the
members' read and delivered pointers in `GET /rooms/{id}`), not one receipts request per
message; live `message.delivered` events move them on, and a reload shows the same."""

from __future__ import annotations

import asyncio
import json
import re
from urllib.parse import urlparse

from playwright.async_api import Page, Request, WebSocket, expect

from tests.e2e.helpers import message, open_room, signed_in, until
from tests.support import Api, User

RECEIPTS = re.compile(r"^/messages/[^/]+/receipts$")
COUNT = 45  # more than a page (40): the window holds notes 06-45


def note(n: int) -> str:
    return f"note {n:02d}"


class Requests:
    """The app's HTTP request paths, and a reload that waits until its start-up is over: the
    socket's `ready` and the room list fetched after it (the resync on a first connection,
    which refetches the details of open rooms), so only the room's own opening follows."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.paths: list[str] = []
        self.ready = asyncio.Event()
        self.synced = asyncio.Event()
        page.on("request", self._request)
        page.on("requestfinished", self._finished)
        page.on("websocket", self._socket)

    def _request(self, request: Request) -> None:
        self.paths.append(urlparse(request.url).path)

    def _finished(self, request: Request) -> None:
        if self.ready.is_set() and urlparse(request.url).path == "/rooms":
            self.synced.set()

    def _socket(self, ws: WebSocket) -> None:
        def frame(payload: str | bytes) -> None:
            if isinstance(payload, str) and json.loads(payload).get("type") == "ready":
                self.ready.set()

        ws.on("framereceived", frame)

    async def reload(self) -> None:
        self.ready.clear()
        self.synced.clear()
        await self.page.reload()
        await asyncio.wait_for(self.synced.wait(), 10)
        self.paths.clear()


async def expect_ticks(page: Page, read: range, delivered: range, sent: range) -> None:
    for numbers, state in ((read, "read"), (delivered, "delivered"), (sent, "sent")):
        for n in (numbers[0], numbers[-1]):  # each state's first and last message
            tick = message(page, note(n)).get_by_test_id("tick")
            await expect(tick).to_have_attribute("data-state", state)
    counts = {"read": len(read), "delivered": len(delivered), "sent": len(sent)}
    await until(
        page,
        "(c => Object.entries(c).every(([s, n]) => "
        f"document.querySelectorAll(`[data-testid=tick][data-state=${{s}}]`).length === n))"
        f"({json.dumps(counts)})",
    )


async def confirm(api: Api, user: User, message_id: str) -> None:
    ws = await api.ws(user)
    frame = await ws.request("message.delivered", {"message_ids": [message_id]})
    assert frame["type"] == "ack", frame
    ws.close()


async def test_one_room_request_gives_every_tick(new_page, api) -> None:
    alice = await api.register(display_name="Alice")
    bob, carol, dave = [await api.register(display_name=n) for n in ("Bob", "Carol", "Dave")]
    body = {"name": "Crew", "member_ids": [bob.id, carol.id, dave.id]}
    group = (await api.post("/rooms", body, alice)).body["id"]
    ids = {n: (await api.send(alice, group, note(n)))["id"] for n in range(1, COUNT + 1)}
    for reader in (bob, carol, dave):  # everyone read up to note 15
        r = await api.post(f"/rooms/{group}/read", {"message_id": ids[15]}, reader)
        assert r.status == 200, r.body
    await confirm(api, bob, ids[30])  # one confirmation covers the notes before it

    page = await signed_in(new_page, alice, viewport={"width": 1100, "height": 700})
    requests = Requests(page)
    await requests.reload()
    await open_room(page, "Crew")
    await expect_ticks(page, read=range(6, 16), delivered=range(16, 31), sent=range(31, 46))
    seen = message(page, note(15)).locator("xpath=following-sibling::*[1]")
    await expect(seen).to_have_attribute("aria-label", "Seen by Bob, Carol and Dave")
    assert requests.paths.count(f"/rooms/{group}") == 1, requests.paths
    assert not [p for p in requests.paths if RECEIPTS.match(p)], requests.paths

    # Live: Carol's client confirms note 38; the ticks up to it turn Delivered.
    await confirm(api, carol, ids[38])
    await expect_ticks(page, read=range(6, 16), delivered=range(16, 39), sent=range(39, 46))

    # After a reload the room view alone says the same.
    await requests.reload()
    await open_room(page, "Crew")
    await expect_ticks(page, read=range(6, 16), delivered=range(16, 39), sent=range(39, 46))
    await expect(seen).to_have_attribute("aria-label", "Seen by Bob, Carol and Dave")
    assert requests.paths.count(f"/rooms/{group}") == 1, requests.paths
    assert not [p for p in requests.paths if RECEIPTS.match(p)], requests.paths


def seen_after(page: Page, text: str):  # type: ignore[no-untyped-def]
    """The "Seen by" row under a message."""
    return message(page, text).locator("xpath=following-sibling::*[1][@data-testid='seen-by']")


async def test_a_member_added_later_never_read_earlier_messages(new_page, api) -> None:
    """A new member's read pointer starts at the newest message: it says nothing of the
    messages before their join, which neither their ticks nor "Seen by" count them for."""
    alice = await api.register(display_name="Alice")
    bob, carol, dave = [await api.register(display_name=n) for n in ("Bob", "Carol", "Dave")]
    body = {"name": "Core", "member_ids": [bob.id, carol.id]}
    group = (await api.post("/rooms", body, alice)).body["id"]
    before = (await api.send(alice, group, "before"))["id"]
    r = await api.post(f"/rooms/{group}/read", {"message_id": before}, bob)
    assert r.status == 200, r.body
    page = await signed_in(new_page, alice, viewport={"width": 1100, "height": 700})
    await open_room(page, "Core")
    tick = message(page, "before").get_by_test_id("tick")
    await expect(tick).to_have_attribute("title", "Delivered · Read by Bob")

    # Added live (his pointer at "before"), Dave writes: once the room view is refetched he is
    # a member with a join time, seen under his own message, but not a reader of "before".
    r = await api.post(f"/rooms/{group}/members", {"user_ids": [dave.id]}, alice)
    assert r.status == 200, r.body
    await api.send(dave, group, "hi all")
    await expect(seen_after(page, "hi all")).to_have_attribute("aria-label", "Seen by Dave")
    await expect(tick).to_have_attribute("title", "Delivered · Read by Bob")
    await expect(seen_after(page, "before")).to_have_attribute("aria-label", "Seen by Bob")
    # The room view alone (a reload) says the same.
    await page.reload()
    await open_room(page, "Core")
    await expect(seen_after(page, "before")).to_have_attribute("aria-label", "Seen by Bob")
    await expect(tick).to_have_attribute("title", "Delivered · Read by Bob")

    # Bob leaves: of those "before" was sent to only Carol is left, who has not received it,
    # so it is Sent again (not Read for Dave's pointer), as its receipts say.
    assert (await api.delete(f"/rooms/{group}/members/{bob.id}", bob)).status == 204
    await expect(seen_after(page, "before")).to_have_count(0)
    await expect(tick).to_have_attribute("data-state", "sent")
    receipts = (await api.get(f"/messages/{before}/receipts", alice)).body
    assert [r["user_id"] for r in receipts["receipts"]] == [carol.id], receipts
