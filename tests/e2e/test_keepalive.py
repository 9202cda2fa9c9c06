"""Review of issue 10, finding 7: a tab coming into view pings its socket to check it still
works, at most once in 5 s (the server allows a burst of 10 pings, then one a second), and a
refused ping is an answer too: a healthy socket is never dropped for want of a pong."""

import json

from playwright.async_api import Page, WebSocketRoute, expect

from tests.e2e.helpers import freeze_time, set_visibility, signed_in, until
from tests.support import Api

SOCKET = "window.__fs.store.socket"
PONG_TIMEOUT_MS = 10_000
# The refs of the pings the page sends and of the replies it gets, and the socket then.
RECORD_PINGS = """() => {
  window.__pings = { sent: [], answered: [], ws: window.__fs.store.socket.ws };
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    const frame = JSON.parse(data);
    if (frame.type === 'ping') window.__pings.sent.push(frame.ref);
    return send.call(this, data);
  };
  window.__fs.store.socket.addEventListener('frame', (ev) => {
    if (window.__pings.sent.includes(ev.detail.ref)) window.__pings.answered.push(ev.detail.ref);
  });
}"""
ALL_ANSWERED = "window.__pings.sent.every((ref) => window.__pings.answered.includes(ref))"
SAME_SOCKET_OPEN = f"{SOCKET}.state === 'open' && {SOCKET}.ws === window.__pings.ws"


async def _ready(page: Page) -> None:
    await until(page, f"{SOCKET}.state === 'open'")
    await freeze_time(page)  # no 25 s keep-alive ping (fake_clock): only the ones the test causes
    await page.evaluate(RECORD_PINGS)


async def test_coming_into_view_often_pings_once_and_keeps_the_socket(new_page, api: Api) -> None:
    page = await signed_in(new_page, await api.register(), fake_clock=True)
    await _ready(page)

    for _ in range(13):  # a flickering tab: more than the server's burst of 10
        await set_visibility(page, "hidden")
        await set_visibility(page, "visible")
    assert len(await page.evaluate("window.__pings.sent")) == 1
    await page.clock.run_for(5_000)
    await set_visibility(page, "visible")
    assert len(await page.evaluate("window.__pings.sent")) == 2

    await until(page, ALL_ANSWERED)
    await page.clock.run_for(PONG_TIMEOUT_MS + 1_000)
    assert await page.evaluate(SAME_SOCKET_OPEN)
    await expect(page.get_by_test_id("connection-banner")).to_be_hidden()


def _pings_refused(ws: WebSocketRoute) -> None:
    """The server's answer to every ping is the refusal it sends past its ping rate."""
    server = ws.connect_to_server()

    def from_server(raw: str | bytes) -> None:
        frame = json.loads(raw)
        if frame.get("type") == "pong":
            error = {"code": "rate_limited", "message": "too many pings; slow down"}
            raw = json.dumps({"type": "error", "ref": frame["ref"], "data": error})
        ws.send(raw)

    server.on_message(from_server)


async def test_a_refused_ping_still_proves_the_socket_alive(new_page, api: Api) -> None:
    page = await signed_in(new_page, await api.register(), ws_route=_pings_refused, fake_clock=True)
    await _ready(page)

    await set_visibility(page, "visible")
    await until(page, f"window.__pings.sent.length === 1 && {ALL_ANSWERED}")
    await page.clock.run_for(PONG_TIMEOUT_MS + 1_000)
    assert await page.evaluate(SAME_SOCKET_OPEN)
