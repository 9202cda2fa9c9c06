"""Issue 5, item 7: typing indicators with client throttling (start at most every 2 s, stop
after 3 s idle or on send) and the one/two/several wording."""

import asyncio
import itertools
import json
import time

from playwright.async_api import expect

from tests.e2e.helpers import open_room, send, signed_in


async def test_typing_text_appears_and_disappears(new_page, api) -> None:
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    room = await api.group(alice, bob)
    name = (await api.get(f"/rooms/{room}", alice)).body["name"]
    page = await signed_in(new_page, alice)
    bob_page = await signed_in(new_page, bob)
    frames: list[dict] = []  # each sent frame, with the time it was sent
    page.on(
        "websocket",
        lambda ws: ws.on(
            "framesent",
            lambda payload: frames.append(json.loads(payload) | {"at": time.monotonic()}),
        ),
    )
    await page.reload()  # so the page's socket is observed from the start
    await open_room(page, name)
    await open_room(bob_page, name)
    indicator = bob_page.get_by_test_id("typing-indicator")

    box = page.get_by_test_id("composer-input")
    await box.click()
    for ch in "hello there, typing slowly":
        await box.press_sequentially(ch)
        await asyncio.sleep(0.12)  # ~3.4 s of continuous typing
    await expect(indicator).to_have_text("Alice is typing…")
    starts = [f for f in frames if f.get("type") == "typing" and f["data"]["active"]]
    assert len(starts) >= 2, starts  # refreshed while typing goes on...
    gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(starts)]
    # ...but at most once per 2 s (measured here, so allow for event delivery jitter).
    assert min(gaps) >= 1.5, gaps
    # 3 s idle: the client says stop, and the text goes away.
    await expect(indicator).to_have_text("", timeout=5000)
    stops = [f for f in frames if f.get("type") == "typing" and not f["data"]["active"]]
    assert len(stops) == 1

    # Sending ends it at once.
    await box.press_sequentially("again")
    await expect(indicator).to_have_text("Alice is typing…")
    await box.press("Enter")
    await expect(indicator).to_have_text("", timeout=1500)


async def test_two_and_several_people_typing(new_page, api) -> None:
    users = [await api.register(display_name=n) for n in ("Viewer", "Alice", "Bob", "Carol")]
    room = await api.group(*users)
    name = (await api.get(f"/rooms/{room}", users[0])).body["name"]
    page = await signed_in(new_page, users[0])
    await open_room(page, name)
    indicator = page.get_by_test_id("typing-indicator")
    sockets = [await api.ws(u) for u in users[1:]]
    await sockets[0].send("typing", {"room_id": room, "active": True})
    await expect(indicator).to_have_text("Alice is typing…")
    await sockets[1].send("typing", {"room_id": room, "active": True})
    await expect(indicator).to_have_text("Alice and Bob are typing…")
    await sockets[2].send("typing", {"room_id": room, "active": True})
    await expect(indicator).to_have_text("Several people are typing…")
    await sockets[0].send("typing", {"room_id": room, "active": False})
    await sockets[2].send("typing", {"room_id": room, "active": False})
    await expect(indicator).to_have_text("Bob is typing…")
    await send(page, "who's typing?")
    for s in sockets:
        s.close()
    await expect(indicator).to_have_text("")
