"""The worker's start-up check of the private aiortc internals it relies on, and its aioice
patch (sfu/internals.py, sfu/ice.py)."""

from __future__ import annotations

import re
from importlib import metadata

import pytest
from aiortc import RTCPeerConnection
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtcrtpsender import RTCRtpSender

from sfu import ice
from sfu.internals import InternalsMismatch, check_internals
from tests.sfu.media import close_all, connect, loopback_ice, wait_until

pytestmark = pytest.mark.once


def test_pinned_versions_pass() -> None:
    check_internals()


def test_other_version_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    real = metadata.version
    monkeypatch.setattr(
        metadata, "version", lambda name: "1.17.0" if name == "aiortc" else real(name)
    )
    with pytest.raises(InternalsMismatch) as refused:
        check_internals()
    assert str(refused.value) == (
        "sfu: aiortc 1.17.0 is not the pinned 1.16.0 (the worker relies on its private "
        "internals): pip install aiortc==1.16.0 av==19.0.2"
    )


def test_missing_package_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    real = metadata.version

    def version(name: str) -> str:
        if name == "av":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "version", version)
    with pytest.raises(InternalsMismatch, match=r"^sfu: av is not installed: pip install"):
        check_internals()


@pytest.mark.parametrize(
    ("owner", "name", "named"),
    [
        (RTCRtpReceiver, "_send_rtcp_pli", "RTCRtpReceiver._send_rtcp_pli"),
        (RTCRtpSender, "_send_keyframe", "RTCRtpSender._send_keyframe"),
        (RTCRtpSender, "_next_encoded_frame", "RTCRtpSender._next_encoded_frame()"),
        (RTCRtpReceiver, "_handle_rtp_packet", "RTCRtpReceiver._handle_rtp_packet()"),
    ],
)
def test_moved_method_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, owner: type, name: str, named: str
) -> None:
    monkeypatch.delattr(owner, name)
    with pytest.raises(InternalsMismatch) as refused:
        check_internals()
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"sfu: aiortc/aioice internals moved ({named}")
    assert message.endswith("pip install aiortc==1.16.0 av==19.0.2 aioice==0.13.0")


def test_renamed_receiver_attribute_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A private attribute set in RTCRtpReceiver.__init__ (the decoder queue the tap replaces)."""
    real_init = RTCRtpReceiver.__init__

    def init(self: RTCRtpReceiver, *args: object) -> None:
        real_init(self, *args)
        self.__dict__["_RTCRtpReceiver__input_queue"] = self.__dict__.pop(
            "_RTCRtpReceiver__decoder_queue"
        )

    monkeypatch.setattr(RTCRtpReceiver, "__init__", init)
    with pytest.raises(InternalsMismatch, match=r"\(RTCRtpReceiver.__decoder_queue not found;"):
        check_internals()


def _candidates(sdp: str) -> list[tuple[str, int]]:
    return [
        (host, int(port))
        for host, port in re.findall(r"a=candidate:\S+ \d+ udp \d+ (\S+) (\d+) typ host", sdp)
    ]


async def test_ice_binds_in_the_port_range_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    loopback_ice(monkeypatch, min_port=47110, max_port=47139)
    offerer = RTCPeerConnection(ice.rtc_configuration())
    answerer = RTCPeerConnection(ice.rtc_configuration())
    offerer.createDataChannel("probe")
    try:
        await connect(offerer, answerer)
        hosts = _candidates(offerer.localDescription.sdp) + _candidates(
            answerer.localDescription.sdp
        )
        assert hosts and all(
            host == "127.0.0.1" and 47110 <= port <= 47139 for host, port in hosts
        ), hosts
        assert "stun" not in offerer.localDescription.sdp
        # Loopback only works with the patch (aioice skips 127.0.0.1): the pair connects.
        await wait_until(lambda: offerer.iceConnectionState == "completed")
    finally:
        await close_all(offerer.close(), answerer.close())


async def test_ice_announces_the_public_ip(monkeypatch: pytest.MonkeyPatch) -> None:
    loopback_ice(monkeypatch)
    ice.configure_ice(ips=("127.0.0.1",), public_ip="203.0.113.7", min_port=47140, max_port=47149)
    pc = RTCPeerConnection(ice.rtc_configuration())
    pc.createDataChannel("probe")
    try:
        await pc.setLocalDescription(await pc.createOffer())
        hosts = _candidates(pc.localDescription.sdp)
        assert hosts and all(
            host == "203.0.113.7" and 47140 <= port <= 47149 for host, port in hosts
        ), hosts
    finally:
        await close_all(pc.close())


def test_bad_port_range_is_refused() -> None:
    with pytest.raises(ValueError, match="bad RTC port range 5000-4000"):
        ice.configure_ice(ips=(), public_ip=None, min_port=5000, max_port=4000)
