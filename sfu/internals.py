"""Start-up check of the private aiortc/aioice internals the forwarding path relies on.

sfu.taps, sfu.jitter, sfu.forward, sfu.publisher and sfu.ice reach into aiortc and aioice where
they have no public API (aiortc#449). Those internals are only known to be where they are in the
pinned versions: the worker refuses to start, with one line, if anything moved."""

from __future__ import annotations

import inspect
import queue
from collections.abc import Callable
from functools import cache
from importlib import metadata
from types import SimpleNamespace
from typing import Any

PINNED = {"aiortc": "1.16.0", "av": "19.0.2"}
FIX = "pip install " + " ".join(f"{name}=={version}" for name, version in PINNED.items())
# aiortc's dependency, not pinned: only the internals sfu.ice patches are checked.
AIOICE_CHECKED = "0.13.0"


class InternalsMismatch(RuntimeError):
    """The installed aiortc/av/aioice are not what sfu/ relies on (a one-line message)."""


def check_internals() -> None:
    """Raise InternalsMismatch naming the first thing that moved, else return."""
    for name, version in PINNED.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            raise InternalsMismatch(f"sfu: {name} is not installed: {FIX}") from None
        if installed != version:
            raise InternalsMismatch(
                f"sfu: {name} {installed} is not the pinned {version} "
                f"(the worker relies on its private internals): {FIX}"
            )
    try:
        checks = _checks()
    except ImportError as exc:
        checks = [(f"module {exc.name}", lambda: False)]
    for what, present in checks:
        try:
            ok = present()
        except Exception:  # an attribute that moved, or a changed signature, fails the same way
            ok = False
        if not ok:
            raise InternalsMismatch(
                f"sfu: aiortc/aioice internals moved ({what} not found; aioice "
                f"{_installed('aioice')}, checked against {AIOICE_CHECKED}): "
                f"{FIX} aioice=={AIOICE_CHECKED}"
            )


def _installed(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _checks() -> list[tuple[str, Callable[[], bool]]]:
    import aioice.ice
    from aiortc.codecs.opus import OpusEncoder
    from aiortc.codecs.vpx import Vp8Encoder
    from aiortc.rtcrtpreceiver import RTCRtpReceiver
    from aiortc.rtcrtpsender import RTCRtpSender
    from aiortc.rtp import HeaderExtensions

    @cache
    def receiver() -> Any:  # Any: probed for private attributes that no type declares
        transport: Any = SimpleNamespace(state="new")  # a throw-away receiver, never started
        return RTCRtpReceiver("video", transport)

    def source(owner: object, name: str, *needles: str) -> Callable[[], bool]:
        return lambda: all(needle in inspect.getsource(getattr(owner, name)) for needle in needles)

    return [
        # sfu.taps: the decoder queue (captured by receive()) and the jitter buffer.
        (
            "RTCRtpReceiver.__decoder_queue",
            lambda: isinstance(receiver()._RTCRtpReceiver__decoder_queue, queue.Queue),
        ),
        (
            "RTCRtpReceiver.__decoder_thread",
            lambda: receiver()._RTCRtpReceiver__decoder_thread is None,
        ),
        (
            "RTCRtpReceiver.__jitter_buffer.add",
            lambda: callable(receiver()._RTCRtpReceiver__jitter_buffer.add),
        ),
        (
            "RTCRtpReceiver.receive() handing __decoder_queue to the decoder thread",
            source(RTCRtpReceiver, "receive", "self.__decoder_queue,"),
        ),
        (
            "RTCRtpReceiver._handle_rtp_packet() feeding __jitter_buffer.add(packet)",
            source(
                RTCRtpReceiver,
                "_handle_rtp_packet",
                "packet._data = depayload(",
                "self.__jitter_buffer.add(packet)",
            ),
        ),
        (
            "RTCRtpReceiver.__stop_decoder() putting None on __decoder_queue",
            source(
                RTCRtpReceiver,
                "_RTCRtpReceiver__stop_decoder",
                "self.__decoder_queue.put(None)",
            ),
        ),
        (
            "RtpPacket.extensions.audio_level (RFC 6464)",
            lambda: hasattr(HeaderExtensions(), "audio_level"),
        ),
        # sfu.publisher: PLIs upstream.
        ("RTCRtpReceiver._send_rtcp_pli", lambda: callable(receiver()._send_rtcp_pli)),
        # sfu.forward: packets packed, not encoded; keyframe requests intercepted.
        (
            "RTCRtpSender._next_encoded_frame() packing av.Packets",
            source(RTCRtpSender, "_next_encoded_frame", "self.__encoder.pack(data)"),
        ),
        (
            "RTCRtpSender._handle_rtcp_packet() calling self._send_keyframe()",
            source(RTCRtpSender, "_handle_rtcp_packet", "self._send_keyframe()"),
        ),
        ("RTCRtpSender._send_keyframe", lambda: callable(RTCRtpSender._send_keyframe)),
        ("Vp8Encoder.pack", lambda: callable(Vp8Encoder.pack)),
        ("OpusEncoder.pack", lambda: callable(OpusEncoder.pack)),
        # sfu.ice: host addresses and host candidate gathering.
        ("aioice.ice.get_host_addresses", lambda: callable(aioice.ice.get_host_addresses)),
        (
            "aioice.ice.get_host_addresses used by Connection.gather_candidates()",
            source(
                aioice.ice.Connection,
                "gather_candidates",
                "get_host_addresses(",
                "self.get_component_candidates(",
            ),
        ),
        (
            "aioice.ice.Connection.get_component_candidates(component, addresses, timeout)",
            lambda: (
                list(inspect.signature(aioice.ice.Connection.get_component_candidates).parameters)
                == ["self", "component", "addresses", "timeout"]
            ),
        ),
        (
            "aioice.ice.Connection._protocols",
            lambda: isinstance(aioice.ice.Connection(ice_controlling=True)._protocols, list),
        ),
        (
            "aioice.ice StunProtocol, Candidate, candidate_foundation, candidate_priority",
            lambda: all(
                callable(getattr(aioice.ice, name))
                for name in (
                    "StunProtocol",
                    "Candidate",
                    "candidate_foundation",
                    "candidate_priority",
                )
            ),
        ),
    ]
