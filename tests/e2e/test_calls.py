"""Issue 6: 1:1 voice and video calls in the browser. Two pages (two browser contexts, each
with Chromium's fake camera and microphone) call each other through FastSock: the WebRTC
media really flows between them (directly, or relayed through a real coturn), and the call
ends up in both timelines, worded from each side."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from fastsock.app import Server
from tests.conftest import make_settings
from tests.coturn import Coturn
from tests.e2e.helpers import dm_pair, open_room, room_item, shot, signed_in

CALL_TIMEOUT = 20_000  # ICE + DTLS on a loaded 2-core machine

# The WebRTC side of the page's call, from getStats(): video frames decoded, the selected
# candidate pair (its types say direct or relayed) and its round trip.
CALL_STATS = """async () => {
  const pc = window.__fs.calls.session?.peer?.pc;
  if (!pc) return null;
  const report = await pc.getStats();
  let frames = 0, packets = 0, pair = null;
  report.forEach((s) => {
    if (s.type === 'inbound-rtp') packets += s.packetsReceived || 0;
    if (s.type === 'inbound-rtp' && s.kind === 'video') frames += s.framesDecoded || 0;
    if (s.type === 'transport' && s.selectedCandidatePairId) {
      pair = report.get(s.selectedCandidatePairId);
    }
  });
  const local = pair ? report.get(pair.localCandidateId) : null;
  const remote = pair ? report.get(pair.remoteCandidateId) : null;
  return {
    frames, packets,
    local: local ? local.candidateType : null,
    remote: remote ? remote.candidateType : null,
    rtt: pair ? pair.currentRoundTripTime : null,
    state: pc.connectionState,
    policy: pc.getConfiguration().iceTransportPolicy,
  };
}"""

# The remote <video> is playing: visible, decoding, frames presented.
VIDEO_PLAYING = """(min) => {
  const v = document.querySelector('[data-testid=remote-video]');
  return Boolean(v) && !v.hidden && !v.paused && v.videoWidth > 0
    && v.getVideoPlaybackQuality().totalVideoFrames > min;
}"""


@pytest.fixture
def coturn() -> Iterator[Coturn]:
    """A real coturn on loopback (tests/coturn.py), stopped after the test."""
    with Coturn("e2e-turn-secret-" + uuid.uuid4().hex) as turn:
        yield turn


@pytest.fixture
async def server(request: pytest.FixtureRequest, db_uri, tmp_path: Path) -> AsyncIterator[Server]:
    """This module's server: the shared settings plus the overrides a test asks for with
    `@pytest.mark.parametrize("server", [{...}], indirect=True)`. `relay=True` starts a real
    coturn and makes the server hand out its credentials with relay-only media."""
    overrides = dict(getattr(request, "param", None) or {})
    if overrides.pop("relay", False):
        turn = request.getfixturevalue("coturn")
        overrides |= {
            "turn_secret": turn.secret,
            "turn_uris": (turn.uri,),
            "turn_relay_only": True,
        }
    srv = Server(make_settings(db_uri, tmp_path, **overrides))
    await srv.start()
    yield srv
    await srv.stop()


def entries(page: Page):
    return page.get_by_test_id("call-entry")


async def wait_frames(page: Page, minimum: int = 10) -> None:
    await page.wait_for_function(VIDEO_PLAYING, arg=minimum, timeout=CALL_TIMEOUT, polling=200)


async def test_video_call_connects_both_ways_and_lands_in_both_timelines(new_page, api) -> None:
    alice, _bob, dm, page, bob_page = await dm_pair(new_page, api)
    await api.send(alice, dm, "Got a minute? Calling you")
    await expect(page.get_by_test_id("call-video-button")).to_have_attribute(
        "aria-label", "Video call Bob"
    )

    await page.get_by_test_id("call-video-button").click()
    screen = page.get_by_test_id("call-screen")
    await expect(screen).to_be_visible()
    await expect(page.get_by_test_id("call-status")).to_have_text(re.compile(r"^Calling Bob…"))
    # The caller's own camera preview, mirrored, while it rings.
    await expect(page.get_by_test_id("local-video")).to_be_visible()
    # Calling: both sides' buttons are off (another call is going on).
    await expect(page.get_by_test_id("call-audio-button")).to_have_attribute(
        "aria-disabled", "true"
    )

    incoming = bob_page.get_by_test_id("incoming-call")
    await expect(incoming).to_be_visible()
    await expect(incoming).to_have_attribute("role", "alertdialog")
    await expect(bob_page.get_by_test_id("incoming-caller")).to_have_text("Alice")
    await expect(bob_page.get_by_test_id("incoming-kind")).to_have_text("Incoming video call")
    await expect(page.get_by_test_id("call-status")).to_have_text("Calling Bob… ringing")
    await shot(bob_page, "call-incoming", animations="disabled")

    accepted = time.monotonic()
    await bob_page.get_by_test_id("call-accept-video").click()
    await expect(incoming).to_be_hidden()
    for p in (page, bob_page):
        await expect(p.get_by_test_id("call-timer")).to_be_visible(timeout=CALL_TIMEOUT)
        await expect(p.get_by_test_id("call-screen")).to_have_attribute("data-phase", "active")
    connected = time.monotonic() - accepted
    for p in (page, bob_page):
        await wait_frames(p)
        await expect(p.get_by_test_id("local-video")).to_be_visible()
    stats = [await p.evaluate(CALL_STATS) for p in (page, bob_page)]
    setup_ms = [await p.evaluate("window.__fs.calls.session.setupMs") for p in (page, bob_page)]
    for s in stats:
        assert s["frames"] > 0 and s["state"] == "connected", s
    print(f"\nvideo call: connected {connected:.2f} s after Accept; setupMs={setup_ms}; {stats}")

    # Connection quality from getStats, explained in the tooltip.
    quality = page.get_by_test_id("call-quality")
    await expect(quality).to_have_attribute("data-level", re.compile("good|fair|poor"))
    await expect(quality).to_have_attribute("aria-label", re.compile("round trip \\d+ ms"))

    # Mute and camera toggles: pressed states, and the tracks really stop sending.
    mute = page.get_by_test_id("call-mute")
    await mute.click()
    await expect(mute).to_have_attribute("aria-pressed", "true")
    assert await page.evaluate(
        "window.__fs.calls.session.local.getAudioTracks().every((t) => !t.enabled)"
    )
    await mute.click()
    await expect(mute).to_have_attribute("aria-pressed", "false")
    camera = bob_page.get_by_test_id("call-camera")
    await camera.click()
    await expect(camera).to_have_attribute("aria-pressed", "true")
    await expect(bob_page.get_by_test_id("local-video")).to_be_hidden()
    await camera.click()
    await expect(bob_page.get_by_test_id("local-video")).to_be_visible()

    # Escape does not hang up: it minimises the call, which keeps going.
    await page.keyboard.press("Escape")
    await expect(screen).to_have_class(re.compile(r"\bmini\b"))
    await expect(screen).to_have_attribute("data-phase", "active")
    await page.get_by_test_id("call-minimize").click()
    await expect(screen).not_to_have_class(re.compile(r"\bmini\b"))

    await expect(page.get_by_test_id("call-timer")).to_have_text(re.compile(r"^0:0[3-9]$"))
    await shot(page, "call-video", animations="disabled")
    await page.get_by_test_id("call-hangup").click()
    await expect(page.get_by_test_id("call-status")).to_have_text(
        re.compile(r"^Call ended · 0:\d\d$")
    )
    await expect(bob_page.get_by_test_id("call-status")).to_have_text(
        re.compile(r"^Call ended · 0:\d\d$")
    )
    # The screens close by themselves; media is released.
    for p in (page, bob_page):
        await expect(p.get_by_test_id("call-screen")).to_be_hidden(timeout=8000)
        assert await p.evaluate("window.__fs.calls.session") is None

    calls = (await api.get(f"/rooms/{dm}/calls", alice)).body["calls"]
    assert [c["outcome"] for c in calls] == ["completed"]
    duration = calls[0]["duration_s"]
    assert duration >= 3
    text = f"Video call · 0:{duration:02d}"
    for p in (page, bob_page):
        await expect(entries(p)).to_have_count(1)
        await expect(entries(p).get_by_test_id("call-summary")).to_have_text(text)
    await expect(entries(page)).to_contain_text("Outgoing video call")
    await expect(entries(bob_page)).to_contain_text("Incoming video call")
    # A call entry has no message actions (no edit, reactions or delete).
    await expect(entries(page).get_by_test_id("message-actions")).to_have_count(0)
    await expect(entries(page).get_by_test_id("call-back")).to_have_text("Call again")
    await expect(entries(bob_page).get_by_test_id("call-back")).to_have_text("Call back")
    # An answered call is not unread for Bob; the room list shows it as the last activity.
    await expect(room_item(bob_page, "Alice").get_by_test_id("unread-badge")).to_have_count(0)
    await expect(room_item(page, "Bob").get_by_test_id("room-preview")).to_have_text(f"🎥 {text}")


async def test_declined_voice_call_in_both_timelines(new_page, api) -> None:
    _alice, bob, dm, page, bob_page = await dm_pair(new_page, api)
    await page.get_by_test_id("call-audio-button").click()
    incoming = bob_page.get_by_test_id("incoming-call")
    await expect(incoming).to_be_visible()
    await expect(bob_page.get_by_test_id("incoming-kind")).to_have_text("Incoming voice call")
    # A voice call offers one answer button, and never opens the caller's camera.
    await expect(bob_page.get_by_test_id("call-accept-video")).to_be_hidden()
    await expect(bob_page.get_by_test_id("call-accept-audio")).to_have_attribute(
        "aria-label", "Accept"
    )
    assert await page.evaluate("window.__fs.calls.session.local.getVideoTracks().length") == 0
    await expect(page.get_by_test_id("local-video")).to_be_hidden()

    # Escape silences the ringer; it does not decline.
    await expect(incoming).to_be_focused()
    await incoming.press("Escape")
    await expect(bob_page.get_by_test_id("incoming-status")).to_have_text("Ringer silenced")
    await expect(incoming).to_be_visible()
    assert not await bob_page.evaluate("window.__fs.calls.ring.playing")

    await bob_page.get_by_test_id("call-decline").click()
    await expect(incoming).to_be_hidden()
    await expect(page.get_by_test_id("call-status")).to_have_text("Bob declined the call")
    await expect(page.get_by_test_id("call-screen")).to_be_hidden(timeout=8000)

    await expect(entries(page).get_by_test_id("call-summary")).to_have_text("Call declined")
    await expect(entries(bob_page).get_by_test_id("call-summary")).to_have_text(
        "Declined voice call"
    )
    await expect(entries(page)).to_have_attribute("data-outcome", "declined")
    # Declining is not news to the one who declined.
    await expect(room_item(bob_page, "Alice").get_by_test_id("unread-badge")).to_have_count(0)
    calls = (await api.get(f"/rooms/{dm}/calls", bob)).body["calls"]
    assert [(c["outcome"], c["media"], c["duration_s"]) for c in calls] == [
        ("declined", "audio", 0)
    ]


@pytest.mark.parametrize("server", [{"call_ring_s": 3}], indirect=True)
async def test_missed_call_is_unread_for_the_callee_who_calls_back(new_page, api) -> None:
    # Bob is looking at no conversation: the call rings over whatever is on screen.
    _alice, bob, dm, page, bob_page = await dm_pair(new_page, api, bob_opens=False)
    await page.get_by_test_id("call-video-button").click()
    incoming = bob_page.get_by_test_id("incoming-call")
    await expect(incoming).to_be_visible()
    # Nobody answers: after the ring time both sides are told.
    await expect(page.get_by_test_id("call-status")).to_have_text("No answer", timeout=8000)
    await expect(bob_page.get_by_test_id("incoming-status")).to_have_text("Missed call from Alice")
    await expect(incoming).to_be_hidden(timeout=8000)

    await expect(entries(page).get_by_test_id("call-summary")).to_have_text("No answer")
    bob_item = room_item(bob_page, "Alice")
    await expect(bob_item.get_by_test_id("unread-badge")).to_have_text("1")
    await expect(bob_item.get_by_test_id("room-preview")).to_have_text("🎥 Missed video call")
    r = await api.get("/rooms", bob)
    assert next(x for x in r.body["rooms"] if x["id"] == dm)["unread_count"] == 1

    await open_room(bob_page, "Alice")
    entry = entries(bob_page)
    await expect(entry.get_by_test_id("call-summary")).to_have_text("Missed video call")
    await expect(entry).to_have_class(re.compile(r"\bmissed\b"))
    await shot(bob_page, "call-timeline")

    # Call back: Bob calls Alice (video again), then changes his mind.
    await entry.get_by_test_id("call-back").click()
    await expect(bob_page.get_by_test_id("call-status")).to_have_text(
        re.compile(r"^Calling Alice…")
    )
    await expect(page.get_by_test_id("incoming-call")).to_be_visible()
    await expect(page.get_by_test_id("incoming-caller")).to_have_text("Bob")
    await expect(bob_page.get_by_test_id("call-hangup")).to_have_attribute(
        "aria-label", "Cancel call"
    )
    await bob_page.get_by_test_id("call-hangup").click()
    await expect(page.get_by_test_id("incoming-status")).to_have_text("Missed call from Bob")
    await expect(entries(bob_page).nth(1).get_by_test_id("call-summary")).to_have_text(
        "Cancelled video call"
    )
    await expect(entries(page).nth(1).get_by_test_id("call-summary")).to_have_text(
        "Missed video call"
    )
    outcomes = [c["outcome"] for c in (await api.get(f"/rooms/{dm}/calls", bob)).body["calls"]]
    assert outcomes == ["cancelled", "missed"]


async def test_busy_and_unavailable_callee(new_page, api) -> None:
    alice = await api.register(display_name="Alice")
    bob = await api.register(display_name="Bob")
    carol = await api.register(display_name="Carol")
    await api.post("/rooms/direct", {"user_id": bob.id}, alice)
    page = await signed_in(new_page, alice)
    await open_room(page, "Bob")

    # Bob has no device connected: unavailable, and a missed call waits for him.
    await page.get_by_test_id("call-audio-button").click()
    await expect(page.get_by_test_id("call-status")).to_have_text(
        "Bob is unavailable — they'll see a missed call"
    )
    await expect(entries(page).get_by_test_id("call-summary")).to_have_text("Bob was unavailable")
    await expect(page.get_by_test_id("call-screen")).to_be_hidden(timeout=8000)

    # Bob comes online and Carol rings him; Alice's call finds him busy.
    bob_page = await signed_in(new_page, bob)
    await expect(room_item(bob_page, "Alice").get_by_test_id("unread-badge")).to_have_text("1")
    carol_dm = (await api.post("/rooms/direct", {"user_id": bob.id}, carol)).body["id"]
    carol_ws = await api.ws(carol)
    await carol_ws.send("call.invite", {"room_id": carol_dm, "media": "video"}, ref="c1")
    created = await carol_ws.expect("call.created")
    await expect(bob_page.get_by_test_id("incoming-caller")).to_have_text("Carol")

    await expect(page.get_by_test_id("call-audio-button")).to_have_attribute(
        "aria-disabled", "false"
    )
    await page.get_by_test_id("call-audio-button").click()
    await expect(page.get_by_test_id("call-status")).to_have_text("Bob is in another call")
    await expect(entries(page).nth(1).get_by_test_id("call-summary")).to_have_text("Bob was busy")
    await carol_ws.send("call.cancel", {"call_id": created["call"]["id"]})
    await expect(bob_page.get_by_test_id("incoming-status")).to_have_text("Missed call from Carol")
    carol_ws.close()
    await open_room(bob_page, "Alice")
    summaries = entries(bob_page).get_by_test_id("call-summary")
    await expect(summaries).to_have_text(["Missed voice call", "Missed voice call"])


async def test_the_other_side_sees_my_mute_and_camera_off(new_page, api) -> None:
    """Issue 11: muting and turning the camera off are signalled (`call.media_state`): the
    other side shows a "Muted" badge, and the avatar instead of black video; turning them
    back on removes both. Muted while it still rang: the callee learns it on answering."""
    _alice, _bob, _dm, page, bob_page = await dm_pair(new_page, api)
    muted = page.get_by_test_id("remote-muted")
    camera_off = page.get_by_test_id("remote-camera-off")
    await page.get_by_test_id("call-video-button").click()
    await bob_page.get_by_test_id("call-accept-video").click()
    await wait_frames(page)
    await expect(muted).to_be_hidden()
    await expect(camera_off).to_be_hidden()

    await bob_page.get_by_test_id("call-mute").click()
    await expect(muted).to_be_visible()
    await expect(muted).to_have_attribute("aria-label", "Bob muted their microphone")
    await expect(page.get_by_test_id("remote-video")).to_be_visible()  # still his video
    await bob_page.get_by_test_id("call-camera").click()
    await expect(camera_off).to_have_text("Bob's camera is off")
    await expect(page.get_by_test_id("remote-video")).to_be_hidden()
    await bob_page.get_by_test_id("call-mute").click()
    await bob_page.get_by_test_id("call-camera").click()
    await expect(muted).to_be_hidden()
    await expect(camera_off).to_be_hidden()
    await expect(page.get_by_test_id("remote-video")).to_be_visible()
    await page.get_by_test_id("call-hangup").click()
    for p in (page, bob_page):
        await expect(p.get_by_test_id("call-screen")).to_be_hidden(timeout=8000)

    # Alice mutes while Bob's side still rings.
    await page.get_by_test_id("call-video-button").click()
    await expect(page.get_by_test_id("call-status")).to_have_text("Calling Bob… ringing")
    await page.get_by_test_id("call-mute").click()
    await bob_page.get_by_test_id("call-accept-video").click()
    bob_sees = bob_page.get_by_test_id("remote-muted")
    await expect(bob_sees).to_be_visible(timeout=CALL_TIMEOUT)
    await expect(bob_sees).to_have_attribute("aria-label", "Alice muted their microphone")
    await expect(bob_page.get_by_test_id("remote-camera-off")).to_be_hidden()


async def test_call_buttons_only_in_direct_rooms_and_off_while_offline(new_page, api) -> None:
    alice, bob, _dm, page, _bob_page = await dm_pair(new_page, api, bob_opens=False)
    group = await api.group(alice, bob)
    name = (await api.get(f"/rooms/{group}", alice)).body["name"]
    audio = page.get_by_test_id("call-audio-button")
    await expect(audio).to_be_visible()
    await expect(audio).to_have_attribute("aria-disabled", "false")
    await open_room(page, name)
    await expect(audio).to_be_hidden()
    await expect(page.get_by_test_id("call-video-button")).to_be_hidden()
    await open_room(page, "Bob")
    await page.context.set_offline(True)
    await expect(audio).to_have_attribute("aria-disabled", "true")
    await expect(audio).to_have_attribute("title", "You're offline")
    await expect(audio).to_be_disabled()
    await audio.focus()  # still focusable (the reason is in its label), but places no call
    await audio.press("Enter")
    await expect(page.get_by_test_id("call-screen")).to_be_hidden()
    await page.context.set_offline(False)
    await expect(audio).to_have_attribute("aria-disabled", "false")


# TURN credentials that live 16 s: the client fetches fresh ones after 12 s.
@pytest.mark.parametrize("server", [{"relay": True, "turn_ttl": 16}], indirect=True)
async def test_relay_only_call_goes_through_coturn(new_page, api, coturn) -> None:
    alice, _bob, dm, page, bob_page = await dm_pair(new_page, api)
    ice = (await api.get("/calls/ice-servers", alice)).body
    assert ice["ice_transport_policy"] == "relay"
    assert ice["ice_servers"][0]["urls"] == [coturn.uri]
    fetched: list[str] = []
    page.on("request", lambda r: fetched.append(r.url) if "/calls/ice-servers" in r.url else None)

    await page.get_by_test_id("call-video-button").click()
    await bob_page.get_by_test_id("call-accept-video").click()
    for p in (page, bob_page):
        await expect(p.get_by_test_id("call-screen")).to_have_attribute(
            "data-phase", "active", timeout=CALL_TIMEOUT
        )
        await wait_frames(p)
    for p in (page, bob_page):
        stats = await p.evaluate(CALL_STATS)
        # Relay-only: this side's candidate is a relay one, and so is the other side's.
        assert (stats["local"], stats["remote"], stats["policy"]) == ("relay", "relay", "relay")
        assert stats["frames"] > 0, stats
        print(f"\nrelayed call: {stats}")
    await expect(page.get_by_test_id("call-quality")).to_have_attribute(
        "aria-label", re.compile("relayed through the TURN server")
    )

    # Before the credentials run out, fresh ones are swapped in (setConfiguration); the
    # media keeps flowing.
    first_user = await page.evaluate(
        "window.__fs.calls.session.peer.pc.getConfiguration().iceServers[0].username"
    )
    await page.wait_for_function(
        "() => window.__fs.calls.session && window.__fs.calls.session.iceRefreshes >= 1",
        timeout=CALL_TIMEOUT,
        polling=250,
    )
    second_user = await page.evaluate(
        "window.__fs.calls.session.peer.pc.getConfiguration().iceServers[0].username"
    )
    assert second_user != first_user
    assert len(fetched) >= 2, fetched
    before = (await page.evaluate(CALL_STATS))["frames"]
    await page.wait_for_function(
        "(n) => window.__fs.calls.session.quality.framesDecoded > n",
        arg=before + 10,
        timeout=CALL_TIMEOUT,
        polling=250,
    )
    await expect(page.get_by_test_id("call-screen")).to_have_attribute("data-phase", "active")

    await bob_page.get_by_test_id("call-hangup").click()
    await expect(entries(page).get_by_test_id("call-summary")).to_have_text(
        re.compile(r"^Video call · 0:\d\d$")
    )
    calls = (await api.get(f"/rooms/{dm}/calls", alice)).body["calls"]
    assert calls[0]["outcome"] == "completed" and calls[0]["duration_s"] >= 12


async def test_answered_on_another_device_and_leaving_the_page_hangs_up(new_page, api) -> None:
    alice, bob, dm, page, bob_page = await dm_pair(new_page, api)
    await page.get_by_test_id("call-audio-button").click()
    await expect(bob_page.get_by_test_id("incoming-call")).to_be_visible()
    # A tablet signed in while the call already rings rings too.
    bob_tablet = await signed_in(new_page, bob)
    await expect(bob_tablet.get_by_test_id("incoming-call")).to_be_visible()
    await bob_page.get_by_test_id("call-accept-audio").click()
    # The other device stops ringing, says why, and knows Bob is busy in a call.
    await expect(bob_tablet.get_by_test_id("incoming-status")).to_have_text(
        "Answered on another device"
    )
    await expect(bob_tablet.get_by_test_id("incoming-call")).to_be_hidden(timeout=8000)
    assert not await bob_tablet.evaluate("window.__fs.calls.ring.playing")
    await open_room(bob_tablet, "Alice")
    await expect(bob_tablet.get_by_test_id("call-audio-button")).to_have_attribute(
        "title", "You're in a call on another device"
    )
    await expect(bob_tablet.get_by_test_id("call-screen")).to_be_hidden()
    for p in (page, bob_page):
        await expect(p.get_by_test_id("call-screen")).to_have_attribute(
            "data-phase", "active", timeout=CALL_TIMEOUT
        )
    # A voice call: no video anywhere, the avatar instead.
    await expect(page.get_by_test_id("remote-video")).to_be_hidden()
    await expect(page.get_by_test_id("call-camera")).to_be_hidden()

    # ICE trouble shows as "Reconnecting…" until the connection is back.
    await page.evaluate("window.__fs.calls.onPeerState(window.__fs.calls.session, 'disconnected')")
    await expect(page.get_by_test_id("call-status")).to_have_text("Reconnecting…")
    await page.evaluate("window.__fs.calls.onPeerState(window.__fs.calls.session, 'connected')")
    await expect(page.get_by_test_id("call-screen")).to_have_attribute("data-phase", "active")

    # Leaving the page (here: a reload) hangs up at once, without the server's grace time.
    await page.reload()
    await expect(bob_page.get_by_test_id("call-status")).to_have_text(
        re.compile(r"^Call ended · 0:\d\d$"), timeout=5000
    )
    await expect(bob_tablet.get_by_test_id("call-audio-button")).to_have_attribute(
        "aria-disabled", "false"
    )
    calls = (await api.get(f"/rooms/{dm}/calls", alice)).body["calls"]
    assert [(c["outcome"], c["end_reason"]) for c in calls] == [("completed", "hangup")]


# getUserMedia as a browser without camera would answer; `blockAll`: access denied.
NO_CAMERA = """(blockAll) => {
  const md = navigator.mediaDevices;
  const real = md.getUserMedia.bind(md);
  const realList = md.enumerateDevices.bind(md);
  md.getUserMedia = async (c) => {
    if (blockAll) throw new DOMException('Permission denied', 'NotAllowedError');
    if (c && c.video) throw new DOMException('Requested device not found', 'NotFoundError');
    return real(c);
  };
  md.enumerateDevices = async () => (await realList()).filter((d) => d.kind !== 'videoinput');
}"""


async def test_media_errors_are_explained(new_page, api) -> None:
    alice, _bob, dm, page, bob_page = await dm_pair(new_page, api)
    await page.add_init_script(f"({NO_CAMERA})(true)")
    await bob_page.add_init_script(f"({NO_CAMERA})(false)")
    await page.reload()
    await bob_page.reload()
    await open_room(page, "Bob")

    # Alice's browser denies access: she is told why, and nothing rings anywhere.
    await page.get_by_test_id("call-video-button").click()
    status = page.get_by_test_id("call-status")
    await expect(status).to_have_text(
        "Access to the camera and microphone was blocked. Allow it in your browser's site "
        "settings, then try again."
    )
    await expect(status).to_have_class(re.compile(r"\berror\b"))
    await expect(page.get_by_test_id("call-screen")).to_be_hidden(timeout=10_000)
    assert (await api.get(f"/rooms/{dm}/calls", alice)).body["calls"] == []

    # Bob has no camera: answering a video call with video falls back to audio, and says so.
    alice_ws = await api.ws(alice)
    await alice_ws.send("call.invite", {"room_id": dm, "media": "video"})
    created = await alice_ws.expect("call.created")
    await bob_page.get_by_test_id("call-accept-video").click()
    await expect(bob_page.get_by_test_id("toast")).to_have_text(
        "No camera found. Connect one, or make a voice call instead. Answering with audio only."
    )
    await alice_ws.expect("call.accepted")
    await expect(bob_page.get_by_test_id("call-camera")).to_be_disabled()
    await alice_ws.send("call.hangup", {"call_id": created["call"]["id"]})
    await expect(bob_page.get_by_test_id("call-status")).to_have_text(re.compile("^Call ended"))
    alice_ws.close()
