"""1:1 call signaling: N caller/callee pairs placing video calls at once, for several rounds.

Starts its own FastSock server (fresh data dir, free loopback port, call invite limit raised)
unless --url is given. Registers 2N users, one direct-message room per pair, one /ws per user
(optionally a second, idle socket per user: --second-device). Each round every pair, all at
once: `call.invite` -> `call.created` (the invite's reply) and `call.ringing` at the callee;
`call.accept` -> `call.accepted`; the caller sends a ~5 KB SDP offer, the callee answers when
the offer arrives, and each side trickles --candidates ICE candidates and a null end of
candidates (`call.signal`); then one side hangs up -> `call.ended` at both plus the call's
timeline `message.new`. Checks that every signal reaches the other party's device exactly
once, nowhere else, unaltered and in order, and that every lifecycle event reaches each
session exactly once with the right `here`. Prints p50/p95/p99/max of invite -> ringing,
signaling setup (accept -> answer received), per-signal relay and hangup -> ended, calls/s,
and the server's (and its embedded database's) CPU and RSS from /proc, then `RESULT {json}`.
Exit 1 on a failed check. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import secrets
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from common import (
    CONNECT_CONCURRENCY,
    REGISTER_CONCURRENCY,
    SETUP_LIMITS,
    Activity,
    Api,
    Client,
    Doc,
    add_target_args,
    cpu_text,
    emit,
    gather_bounded,
    limit_env,
    limits_line,
    machine,
    percentile,
    register_users,
    run_main,
    wait_quiet,
    ws_url,
)
from errors import BenchError
from processes import ServerProcess, child_pids, proc_cpu_s, proc_mem_mib

# The started server: setup limits plus call invites (5/min per user by default).
LIMITS = {**SETUP_LIMITS, "CALL_INVITES_PER_MIN": "100000"}
LATENCIES = [  # (key, label)
    ("invite_ringing", "invite -> ringing at callee"),
    ("invite_created", "invite -> call.created at caller"),
    ("accept_accepted", "accept -> accepted at caller"),
    ("setup", "setup: accept -> answer at caller"),
    ("offer_relay", "offer relay"),
    ("answer_relay", "answer relay"),
    ("signal_relay", "signal relay (all)"),
    ("caller_relay", "signal relay caller -> callee"),
    ("callee_relay", "signal relay callee -> caller"),
    ("accept_ack", "accept ack"),
    ("hangup_ended", "hangup -> ended (both sides)"),
    ("hangup_timeline", "hangup -> timeline message.new"),
    ("hangup_ack", "hangup ack"),
]
EXAMPLES_PER_PROBLEM = 4  # reported in full; the rest only counted
CLEANUP_TIMEOUT_S = 10.0  # hanging up a call whose run failed
_unique = itertools.count(1)  # makes every SDP and candidate string distinct


# --- realistic signaling payloads -----------------------------------------------------------


def make_sdp(kind: str) -> tuple[str, str]:
    """(an SDP offer or answer like Chrome's for audio + video + a data channel, its ufrag)."""
    n = next(_unique)
    ufrag = secrets.token_urlsafe(3)[:4]
    pwd = secrets.token_urlsafe(18)[:24]
    fingerprint = ":".join(f"{b:02X}" for b in secrets.token_bytes(32))
    setup = "actpass" if kind == "offer" else "active"
    cname = secrets.token_urlsafe(12)[:16]
    stream = f"{secrets.token_hex(4)}-{n}"
    ssrc = [random.randrange(1, 2**32) for _ in range(4)]

    def transport(mid: int) -> list[str]:
        return [
            "c=IN IP4 0.0.0.0",
            *(["a=rtcp:9 IN IP4 0.0.0.0"] if mid < 2 else []),
            f"a=ice-ufrag:{ufrag}",
            f"a=ice-pwd:{pwd}",
            "a=ice-options:trickle",
            f"a=fingerprint:sha-256 {fingerprint}",
            f"a=setup:{setup}",
            f"a=mid:{mid}",
        ]

    lines = [
        "v=0",
        f"o=- {4_611_686_018_427_387_904 + n} 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1 2",
        "a=extmap-allow-mixed",
        f"a=msid-semantic: WMS {stream}",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
        *transport(0),
        "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
        "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=sendrecv",
        f"a=msid:{stream} audio-{n}",
        "a=rtcp-mux",
        "a=rtpmap:111 opus/48000/2",
        "a=rtcp-fb:111 transport-cc",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=rtpmap:63 red/48000/2",
        "a=fmtp:63 111/111",
        "a=rtpmap:9 G722/8000",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:13 CN/8000",
        "a=rtpmap:110 telephone-event/48000",
        "a=rtpmap:126 telephone-event/8000",
        f"a=ssrc:{ssrc[0]} cname:{cname}",
        f"a=ssrc:{ssrc[0]} msid:{stream} audio-{n}",
    ]
    h264 = "level-asymmetry-allowed=1;packetization-mode={};profile-level-id={}".format
    video = [  # (payload type, codec, fmtp or "", rtx payload type)
        (96, "VP8/90000", "", 97),
        (98, "VP9/90000", "profile-id=0", 99),
        (100, "VP9/90000", "profile-id=2", 101),
        (102, "H264/90000", h264(1, "42001f"), 103),
        (104, "H264/90000", h264(0, "42001f"), 105),
        (106, "H264/90000", h264(1, "42e01f"), 107),
        (108, "H264/90000", h264(1, "4d001f"), 109),
        (45, "AV1/90000", "level-idx=5;profile=0;tier=0", 46),
    ]
    pts = " ".join(f"{pt} {rtx}" for pt, _, _, rtx in video)
    lines += [
        f"m=video 9 UDP/TLS/RTP/SAVPF {pts} 114 115 116",
        *transport(1),
        "a=extmap:14 urn:ietf:params:rtp-hdrext:toffset",
        "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
        "a=extmap:13 urn:3gpp:video-orientation",
        "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
        "a=extmap:5 http://www.webrtc.org/experiments/rtp-hdrext/playout-delay",
        "a=extmap:6 http://www.webrtc.org/experiments/rtp-hdrext/video-content-type",
        "a=extmap:7 http://www.webrtc.org/experiments/rtp-hdrext/video-timing",
        "a=extmap:8 http://www.webrtc.org/experiments/rtp-hdrext/color-space",
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
        "a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
        "a=sendrecv",
        f"a=msid:{stream} video-{n}",
        "a=rtcp-mux",
        "a=rtcp-rsize",
    ]
    for pt, codec, fmtp, rtx in video:
        lines += [
            f"a=rtpmap:{pt} {codec}",
            *(
                f"a=rtcp-fb:{pt} {fb}"
                for fb in ("goog-remb", "transport-cc", "ccm fir", "nack", "nack pli")
            ),
            *([f"a=fmtp:{pt} {fmtp}"] if fmtp else []),
            f"a=rtpmap:{rtx} rtx/90000",
            f"a=fmtp:{rtx} apt={pt}",
        ]
    lines += [
        "a=rtpmap:114 red/90000",
        "a=rtpmap:115 rtx/90000",
        "a=fmtp:115 apt=114",
        "a=rtpmap:116 ulpfec/90000",
        f"a=ssrc-group:FID {ssrc[1]} {ssrc[2]}",
        f"a=ssrc:{ssrc[1]} cname:{cname}",
        f"a=ssrc:{ssrc[1]} msid:{stream} video-{n}",
        f"a=ssrc:{ssrc[2]} cname:{cname}",
        f"a=ssrc:{ssrc[2]} msid:{stream} video-{n}",
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
        *transport(2),
        "a=sctp-port:5000",
        "a=max-message-size:262144",
    ]
    return "\r\n".join(lines) + "\r\n", ufrag


def make_candidates(count: int, ufrag: str) -> list[Doc]:
    """`count` RTCIceCandidateInit dicts like Chrome's: host (v4, v6, tcp), srflx, relay."""
    host = f"192.168.{random.randrange(256)}.{random.randrange(1, 255)}"
    public = f"203.0.113.{random.randrange(1, 255)}"
    tail = f"generation 0 ufrag {ufrag} network-id 1 network-cost 10"
    out = []
    for i in range(count):
        foundation = 1_000_000_000 + next(_unique)  # distinct across the whole run
        port = random.randrange(40000, 65000)
        kind = i % 5
        if kind == 0:
            line = f"candidate:{foundation} 1 udp 2122260223 {host} {port} typ host {tail}"
        elif kind == 1:
            v6 = f"2001:db8::{random.randrange(1, 0xFFFF):x}"
            line = f"candidate:{foundation} 1 udp 2122197247 {v6} {port} typ host {tail}"
        elif kind == 2:
            line = (
                f"candidate:{foundation} 1 tcp 1518280447 {host} 9 typ host tcptype active {tail}"
            )
        elif kind == 3:
            line = (
                f"candidate:{foundation} 1 udp 1686052607 {public} {port} typ srflx "
                f"raddr {host} rport {port} {tail}"
            )
        else:
            line = (
                f"candidate:{foundation} 1 udp 41885439 198.51.100.7 {port} typ relay "
                f"raddr {public} rport {port} {tail}"
            )
        out.append(
            {"candidate": line, "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": ufrag}
        )
    return out


def fingerprint(call_id: Any, sender: Any, data: Doc) -> str:
    """Identifies one signal: its call, its sender and its content."""
    body = {"sdp": data["sdp"]} if "sdp" in data else {"candidate": data.get("candidate")}
    return json.dumps([call_id, sender, body], sort_keys=True, separators=(",", ":"))


# --- server CPU and memory (/proc) ----------------------------------------------------------


# --- the sockets and what they see ----------------------------------------------------------


class Device(Client):
    """One WebSocket session of a user. `primary` sessions take part in calls; the others
    (--second-device) only watch the lifecycle events."""

    def __init__(self, bench: Bench, session: Doc, index: int, primary: bool) -> None:
        name = f"user {index}" + ("" if primary else " (2nd device)")
        super().__init__(name, session["user"]["id"], session["access_token"], bench)
        self.bench = bench
        self.primary = primary
        self.sent_times: dict[str | int, float] = {}  # ref -> when it was sent

    def on_frame(self, conn: int, raw: str | bytes | None) -> None:
        was_closed = self.closed
        super().on_frame(conn, raw)
        # Closed by the server (or the network), not by this script at the end.
        if self.closed and not was_closed and self.ws is not None and not self.bench.closing:
            reason = f"{self.ws.close_code} {self.ws.close_reason!r}"
            now = time.perf_counter()
            waiting = ", ".join(
                f"{ref} for {now - self.sent_times[ref]:.1f} s"
                for ref in self.pending
                if ref in self.sent_times
            )
            # Tallied by what the socket was waiting for ("hup": its call.hangup reply).
            kinds = sorted({str(ref).split(".")[0] for ref in self.pending})
            self.bench.closes[f"{reason} waiting for {'+'.join(kinds) or 'nothing'}"] += 1
            self.bench.problem(
                "socket closed",
                f"{self.name}: {reason} {now - self.bench.started:.1f} s into the rounds"
                f" (waiting for replies: {waiting or 'none'})",
            )

    def on_event(self, frame: Doc, now: float) -> None:
        self.bench.on_event(self, frame, now)

    async def send(self, type_: str, data: Doc, ref: str) -> tuple[float, asyncio.Future[Any]]:
        """Write one frame with `ref` without waiting for its reply: (sent at, reply future)."""
        if self.ws is None:
            raise BenchError(f"{self.name}: not connected")
        reply: asyncio.Future[tuple[float, Doc]] = asyncio.get_running_loop().create_future()
        self.pending[ref] = reply
        text = json.dumps({"type": type_, "data": data, "ref": ref})
        sent = self.sent_times[ref] = time.perf_counter()
        try:
            await self.ws.write_message(text)
        except Exception as exc:  # WebSocketClosedError and the like
            self.pending.pop(ref, None)
            raise BenchError(f"{self.name}: cannot send {type_}: {exc!r}") from None
        return sent, reply

    async def reply(self, fut: asyncio.Future[Any], ref: str, timeout: float) -> tuple[float, Doc]:
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise BenchError(f"{self.name}: no reply to {ref} in {timeout} s") from None
        finally:
            self.pending.pop(ref, None)

    async def ask(
        self, type_: str, data: Doc, ref: str, timeout: float
    ) -> tuple[float, float, Doc]:
        sent, fut = await self.send(type_, data, ref)
        answered, answer = await self.reply(fut, ref, timeout)
        return sent, answered, answer


@dataclass(eq=False)
class Signal:
    """One `call.signal` a party sends, in its stream's order."""

    label: str  # "offer", "candidate 3", "end of candidates", ...
    index: int
    data: Doc  # {sdp} or {candidate}
    receiver: Device
    stream: Stream
    run: CallRun
    sent_at: float = 0.0
    received: int = 0


@dataclass(eq=False)
class Stream:
    """Everything one party's device sends in one call, in order."""

    signals: list[Signal] = field(default_factory=list)
    next_index: int = 0  # the index the receiver should see next
    count: int = 0
    first: asyncio.Future[float] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    complete: asyncio.Future[float] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass(eq=False)
class Pair:
    index: int
    a: Device
    b: Device
    a2: Device | None
    b2: Device | None
    room_id: str = ""


@dataclass(eq=False)
class CallRun:
    """One call of one pair in one round."""

    pair: Pair
    round: int
    caller: Device
    callee: Device
    devices: list[Device]  # every session of both parties
    call_id: str | None = None
    streams: dict[str, Stream] = field(default_factory=dict)  # sender user id -> stream
    events: dict[tuple[str, Device], asyncio.Future[float]] = field(default_factory=dict)
    counts: Counter[tuple[str, Device]] = field(default_factory=Counter)
    failure: str = ""

    @property
    def label(self) -> str:
        return f"round {self.round} pair {self.pair.index}"

    def event(self, type_: str, device: Device) -> asyncio.Future[float]:
        """When `device` receives `type_` for this call (created on first use)."""
        fut = self.events.get((type_, device))
        if fut is None:
            fut = self.events[type_, device] = asyncio.get_running_loop().create_future()
        return fut

    def expected(self) -> set[tuple[str, Device]]:
        """The lifecycle events each session must receive exactly once."""
        out = {(t, d) for d in self.devices for t in ("call.accepted", "call.ended", "message.new")}
        out |= {("call.ringing", d) for d in self.devices if d.user_id == self.callee.user_id}
        return out


class Bench(Activity):
    """Shared by every socket: the calls in flight, the figures and the check counters."""

    def __init__(self) -> None:
        super().__init__()
        self.by_room: dict[str, CallRun] = {}
        self.by_call: dict[str, CallRun] = {}
        self.signals: dict[str, Signal] = {}  # fingerprint -> signal
        self.ms: dict[str, list[float]] = {key: [] for key, _ in LATENCIES}
        self.problems: list[str] = []  # the first few of each kind, for the report
        self.problem_count: Counter[str] = Counter()
        self.signals_sent = 0
        self.signals_received = 0
        self.other_events: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.closes: Counter[str] = Counter()  # sockets the server closed: reason, waiting for
        self.started = time.perf_counter()  # reset when the rounds start
        self.closing = False  # set when the script closes its sockets

    def problem(self, kind: str, detail: str) -> None:
        self.problem_count[kind] += 1
        if self.problem_count[kind] <= EXAMPLES_PER_PROBLEM:
            self.problems.append(f"{kind}: {detail}")

    # --- incoming frames ------------------------------------------------------------------

    def on_event(self, dev: Device, frame: Doc, now: float) -> None:
        kind = str(frame.get("type"))
        data = frame.get("data") or {}
        if kind == "call.signal":
            self.on_signal(dev, data, now)
        elif kind.startswith("call."):
            self.on_lifecycle(dev, kind, data, now)
        elif kind == "message.new":
            message = data.get("message") or {}
            run = self.by_room.get(message.get("room_id", ""))
            call = message.get("call") or {}
            if message.get("type") != "call" or run is None or call.get("id") != run.call_id:
                current = run.label if run else "no call of this script"
                self.problem(
                    "stray message.new",
                    f"{dev.name}: type {message.get('type')}, call {call.get('id')}"
                    f" {call.get('outcome')}/{call.get('end_reason')} created"
                    f" {call.get('created_at')} (the room's current call: {current})",
                )
                return
            if call.get("outcome") != "completed" or call.get("end_reason") != "hangup":
                self.problem("wrong timeline entry", f"{run.label}: {json.dumps(call)[:200]}")
            self.record(run, "message.new", dev, now)
        elif kind == "error":
            self.errors[str(data.get("code"))] += 1
            self.problem("error frame", f"{dev.name}: {json.dumps(data)[:200]}")
        else:
            self.other_events[kind] += 1

    def on_lifecycle(self, dev: Device, kind: str, data: Doc, now: float) -> None:
        call = data.get("call") or {}
        call_id = call.get("id") or data.get("call_id")
        run = self.by_call.get(call_id) or self.by_room.get(call.get("room_id", ""))
        if run is None or (run.call_id is not None and run.call_id != call_id):
            self.problem("stray call event", f"{kind} to {dev.name}: {json.dumps(data)[:200]}")
            return
        if run.call_id is None:  # call.ringing can overtake the caller's call.created
            run.call_id = call_id
            self.by_call[call_id] = run
        if kind not in ("call.ringing", "call.accepted", "call.ended"):
            self.problem("unexpected call event", f"{run.label}: {kind} to {dev.name}")
            return
        in_call = dev is run.caller or dev is run.callee
        if data.get("here") is not (in_call and kind != "call.ringing"):
            self.problem(
                "wrong here flag", f"{run.label}: {kind} here={data.get('here')} at {dev.name}"
            )
        if kind == "call.ended" and (
            data.get("reason") != "hangup" or call.get("outcome") != "completed"
        ):
            self.problem("wrong end", f"{run.label}: {json.dumps(data)[:200]}")
        self.record(run, kind, dev, now)

    def record(self, run: CallRun, kind: str, dev: Device, now: float) -> None:
        run.counts[kind, dev] += 1
        if run.counts[kind, dev] > 1:
            self.problem("duplicated event", f"{run.label}: {kind} again at {dev.name}")
            return
        if (kind, dev) not in run.expected():
            self.problem("misrouted event", f"{run.label}: {kind} to {dev.name}")
            return
        fut = run.event(kind, dev)
        if not fut.done():
            fut.set_result(now)

    def on_signal(self, dev: Device, data: Doc, now: float) -> None:
        self.signals_received += 1
        sig = None
        if set(data) in ({"call_id", "from", "sdp"}, {"call_id", "from", "candidate"}):
            sig = self.signals.get(fingerprint(data["call_id"], data["from"], data))
        if sig is None:
            self.problem("unknown or altered signal", f"at {dev.name}: {json.dumps(data)[:200]}")
            return
        if dev is not sig.receiver:
            self.problem(
                "misrouted signal", f"{sig.label} for {sig.receiver.name} went to {dev.name}"
            )
            return
        sig.received += 1
        if sig.received > 1:
            self.problem("duplicated signal", f"{sig.label} again at {dev.name}")
            return
        stream = sig.stream
        if sig.index != stream.next_index:
            self.problem(
                "signal out of order",
                f"{sig.label} (#{sig.index}) at {dev.name}, expected #{stream.next_index}",
            )
        stream.next_index = max(stream.next_index, sig.index + 1)
        stream.count += 1
        relay = (now - sig.sent_at) * 1000
        self.ms["signal_relay"].append(relay)
        self.ms["callee_relay" if sig.receiver is sig.run.caller else "caller_relay"].append(relay)
        if sig.index == 0 and not stream.first.done():
            stream.first.set_result(now)
        if stream.count == len(stream.signals) and not stream.complete.done():
            stream.complete.set_result(now)

    # --- one call -------------------------------------------------------------------------

    def new_stream(
        self, run: CallRun, sender: Device, receiver: Device, kind: str, candidates: int
    ) -> Stream:
        assert run.call_id is not None
        sdp, ufrag = make_sdp(kind)
        payloads = [("offer" if kind == "offer" else "answer", {"sdp": {"type": kind, "sdp": sdp}})]
        payloads += [
            (f"candidate {i + 1}", {"candidate": c})
            for i, c in enumerate(make_candidates(candidates, ufrag))
        ]
        payloads.append(("end of candidates", {"candidate": None}))
        stream = run.streams[sender.user_id] = Stream()
        for i, (label, data) in enumerate(payloads):
            sig = Signal(f"{run.label} {kind}er {label}", i, data, receiver, stream, run)
            key = fingerprint(run.call_id, sender.user_id, data)
            assert key not in self.signals
            self.signals[key] = sig
            stream.signals.append(sig)
        return stream

    async def send_stream(
        self, run: CallRun, sender: Device, stream: Stream
    ) -> list[tuple[asyncio.Future[Any], str]]:
        """Send a party's signals back to back (trickle); their reply futures."""
        replies = []
        for sig in stream.signals:
            ref = f"sig.{run.round}.{run.pair.index}.{sender.user_id[-6:]}.{sig.index}"
            # Stamped before the write: the peer may receive it before send() returns.
            sig.sent_at = time.perf_counter()
            _, fut = await sender.send("call.signal", {"call_id": run.call_id, **sig.data}, ref)
            self.signals_sent += 1
            replies.append((fut, ref))
        return replies

    async def place_call(self, run: CallRun, args: argparse.Namespace) -> bool:
        try:
            await self._place_call(run, args)
            return True
        except BenchError as exc:
            run.failure = str(exc)
            self.problem("failed call", f"{run.label}: {exc}")
            if run.call_id is not None:  # end it, so the next round can call again
                with contextlib.suppress(BenchError):
                    await run.caller.ask(
                        "call.hangup",
                        {"call_id": run.call_id},
                        f"cleanup.{run.round}.{run.pair.index}",
                        CLEANUP_TIMEOUT_S,
                    )
            return False

    async def _place_call(self, run: CallRun, args: argparse.Namespace) -> None:
        t = args.step_timeout
        caller, callee, ms = run.caller, run.callee, self.ms

        async def wait(fut: asyncio.Future[float], what: str) -> float:
            try:
                return await asyncio.wait_for(asyncio.shield(fut), t)
            except TimeoutError:
                raise BenchError(f"{what}: not within {t} s") from None

        ref = f"inv.{run.round}.{run.pair.index}"
        invited, created_at, reply = await caller.ask(
            "call.invite", {"room_id": run.pair.room_id, "media": "video"}, ref, t
        )
        view = (reply.get("data") or {}).get("call") or {}
        if reply.get("type") != "call.created" or view.get("state") != "ringing":
            raise BenchError(f"invite answered with {json.dumps(reply)[:300]}")
        if reply["data"].get("here") is not True or view.get("callee_id") != callee.user_id:
            self.problem("wrong call.created", f"{run.label}: {json.dumps(reply)[:300]}")
        if run.call_id is None:
            run.call_id = view["id"]
            self.by_call[view["id"]] = run
        elif run.call_id != view["id"]:
            raise BenchError(f"call.ringing named {run.call_id}, call.created {view['id']}")
        ms["invite_created"].append((created_at - invited) * 1000)
        ringing_at = await wait(run.event("call.ringing", callee), "call.ringing at the callee")
        ms["invite_ringing"].append((ringing_at - invited) * 1000)

        # Both streams exist before anything is sent, so any receipt can be checked.
        offer = self.new_stream(run, caller, callee, "offer", args.candidates)
        answer = self.new_stream(run, callee, caller, "answer", args.candidates)
        ref = f"acc.{run.round}.{run.pair.index}"
        accepted_sent, accept_fut = await callee.send("call.accept", {"call_id": run.call_id}, ref)
        replies: list[tuple[Device, asyncio.Future[Any], str]] = [(callee, accept_fut, ref)]

        async def caller_side() -> None:
            accepted_at = await wait(run.event("call.accepted", caller), "call.accepted at caller")
            ms["accept_accepted"].append((accepted_at - accepted_sent) * 1000)
            sent = await self.send_stream(run, caller, offer)
            replies.extend((caller, fut, r) for fut, r in sent)
            answered_at = await wait(answer.first, "SDP answer at the caller")
            ms["setup"].append((answered_at - accepted_sent) * 1000)
            await wait(answer.complete, "all of the callee's candidates")

        async def callee_side() -> None:
            await wait(offer.first, "SDP offer at the callee")
            sent = await self.send_stream(run, callee, answer)
            replies.extend((callee, fut, r) for fut, r in sent)
            await wait(offer.complete, "all of the caller's candidates")

        try:  # a side that fails stops the other
            async with asyncio.TaskGroup() as tg:
                tg.create_task(caller_side())
                tg.create_task(callee_side())
        except* BenchError as group:
            raise group.exceptions[0] from None
        ms["offer_relay"].append((offer.first.result() - offer.signals[0].sent_at) * 1000)
        ms["answer_relay"].append((answer.first.result() - answer.signals[0].sent_at) * 1000)
        for i, (dev, fut, r) in enumerate(replies):
            answered, answer_frame = await dev.reply(fut, r, t)
            if answer_frame.get("type") != "ack":
                raise BenchError(f"{r} answered with {json.dumps(answer_frame)[:300]}")
            if i == 0:
                ms["accept_ack"].append((answered - accepted_sent) * 1000)

        hanger = caller if (run.pair.index + run.round) % 2 == 0 else callee
        ref = f"hup.{run.round}.{run.pair.index}"
        hung_up, hangup_fut = await hanger.send("call.hangup", {"call_id": run.call_id}, ref)
        for dev in (caller, callee):
            ended_at = await wait(run.event("call.ended", dev), f"call.ended at {dev.name}")
            ms["hangup_ended"].append((ended_at - hung_up) * 1000)
        for dev in (caller, callee):
            posted_at = await wait(run.event("message.new", dev), f"timeline entry at {dev.name}")
            ms["hangup_timeline"].append((posted_at - hung_up) * 1000)
        answered, answer_frame = await hanger.reply(hangup_fut, ref, t)
        if answer_frame.get("type") != "ack":
            raise BenchError(f"hangup answered with {json.dumps(answer_frame)[:300]}")
        ms["hangup_ack"].append((answered - hung_up) * 1000)
        for dev in run.devices:  # second devices: the lifecycle events too
            for kind in ("call.accepted", "call.ended", "message.new"):
                await wait(run.event(kind, dev), f"{kind} at {dev.name}")

    def audit(self, runs: list[CallRun]) -> None:
        """After a round has gone quiet: every expected event exactly once, every signal
        received."""
        for run in runs:
            expected = run.expected()
            for key in expected:
                if run.counts[key] == 0 and not run.failure:
                    self.problem("missing event", f"{run.label}: {key[0]} at {key[1].name}")
            for stream in run.streams.values():
                for sig in stream.signals:
                    if sig.sent_at and sig.received == 0:
                        self.problem(
                            "lost signal", f"{sig.label} never reached {sig.receiver.name}"
                        )


# --- the run --------------------------------------------------------------------------------


async def setup(api: Api, args: argparse.Namespace, bench: Bench) -> list[Pair]:
    """Register 2N users and make one direct-message room per pair."""
    run_id = secrets.token_hex(3)
    sessions = await register_users(api, 2 * args.pairs, f"ca{run_id}")
    pairs = []
    for i in range(args.pairs):
        sa, sb = sessions[2 * i], sessions[2 * i + 1]
        second = args.second_device
        pairs.append(
            Pair(
                i,
                Device(bench, sa, 2 * i, True),
                Device(bench, sb, 2 * i + 1, True),
                Device(bench, sa, 2 * i, False) if second else None,
                Device(bench, sb, 2 * i + 1, False) if second else None,
            )
        )

    async def direct(pair: Pair) -> None:
        room = await api.call("POST", "/rooms/direct", {"user_id": pair.b.user_id}, pair.a.token)
        pair.room_id = room["id"]

    await gather_bounded(REGISTER_CONCURRENCY, direct, pairs)
    return pairs


def devices_of(pair: Pair) -> list[Device]:
    return [d for d in (pair.a, pair.b, pair.a2, pair.b2) if d is not None]


@dataclass(slots=True)
class Reading:
    at: float
    server: float | None
    db: float | None
    client: float


def read_cpu(server_pid: int | None, db_pid: int | None) -> Reading:
    return Reading(
        time.perf_counter(), proc_cpu_s(server_pid), proc_cpu_s(db_pid), time.process_time()
    )


def cpu_figures(before: Reading, after: Reading) -> Doc:
    wall = max(after.at - before.at, 1e-9)

    def one(a: float | None, b: float | None) -> Doc | None:
        if a is None or b is None:
            return None
        return {"cpu_s": round(b - a, 2), "core_pct": round((b - a) / wall * 100, 1)}

    return {
        "wall_s": round(wall, 2),
        "server": one(before.server, after.server),
        "db": one(before.db, after.db),
        "client": one(before.client, after.client),
    }


def stats(values: list[float]) -> Doc:
    v = sorted(values)
    return {
        "n": len(v),
        **{f"p{p}": round(percentile(v, p), 2) for p in (50, 95, 99)},
        "max": round(v[-1], 2) if v else 0.0,
    }


async def run(args: argparse.Namespace, base_url: str, server: ServerProcess | None) -> Doc:
    api = Api(base_url)
    bench = Bench()
    devices: list[Device] = []
    try:
        load_before = os.getloadavg()[0]
        await api.wait_ready(server)
        server_pid = server.pid if server else args.pid
        children = child_pids(server_pid) if server_pid else []
        db_pid = children[0] if len(children) == 1 else None  # the embedded database
        t0 = time.perf_counter()
        pairs = await setup(api, args, bench)
        devices = [d for p in pairs for d in devices_of(p)]
        url = ws_url(base_url)
        await gather_bounded(CONNECT_CONCURRENCY, lambda d: d.connect(url), devices)
        await wait_quiet(bench)  # connect-time presence
        setup_s = time.perf_counter() - t0

        mem_before = proc_mem_mib(server_pid), proc_mem_mib(db_pid)
        before = read_cpu(server_pid, db_pid)
        bench.started = before.at
        walls: list[float] = []
        completed = 0
        for r in range(args.rounds):
            runs = []
            for p in pairs:
                caller, callee = (p.a, p.b) if r % 2 == 0 else (p.b, p.a)
                call = CallRun(p, r, caller, callee, devices_of(p))
                bench.by_room[p.room_id] = call
                runs.append(call)
            start = time.perf_counter()
            done = await asyncio.gather(*(bench.place_call(c, args) for c in runs))
            walls.append(time.perf_counter() - start)
            completed += sum(done)
            await wait_quiet(bench)  # late or duplicated frames arrive now
            bench.audit(runs)
        after = read_cpu(server_pid, db_pid)
        mem_after = proc_mem_mib(server_pid), proc_mem_mib(db_pid)

        attempted = args.pairs * args.rounds
        wall = sum(walls)
        cpu = cpu_figures(before, after)
        server_cpu = cpu["server"]
        result: Doc = {
            **machine(load_before, base_url, server),
            "limits": limits_line(server, LIMITS),
            "pairs": args.pairs,
            "rounds": args.rounds,
            "candidates": args.candidates,
            "second_device": args.second_device,
            "sockets": len(devices),
            "sdp_chars": len(make_sdp("offer")[0]),
            "setup_s": round(setup_s, 2),
            "calls_attempted": attempted,
            "calls_completed": completed,
            "round_wall_s": [round(w, 2) for w in walls],
            "calls_per_s": round(completed / max(wall, 1e-9), 2),
            "signals_sent": bench.signals_sent,
            "signals_received": bench.signals_received,
            "signals_per_s": round(bench.signals_received / max(wall, 1e-9), 1),
            "ms": {k: stats(v) for k, v in bench.ms.items()},
            "cpu": cpu,
            "server_cpu_ms_per_call": (
                round(server_cpu["cpu_s"] / completed * 1000, 2)
                if server_cpu and completed
                else None
            ),
            "memory_mib": {
                "server_before": mem_before[0],
                "server_after": mem_after[0],
                "db_before": mem_before[1],
                "db_after": mem_after[1],
            },
            "problems": dict(bench.problem_count),
            "problem_examples": list(bench.problems),
            "errors": dict(bench.errors),
            "other_events": dict(bench.other_events),
            "seq_gaps": sum(d.seq_gaps for d in devices),
            "closed_sockets": sum(d.closed for d in devices),
            "close_reasons": dict(bench.closes),
        }
        result["failed_checks"] = checks(result)
        return result
    finally:
        bench.closing = True
        for d in devices:
            d.close()
        api.close()


def checks(r: Doc) -> list[str]:
    failed = [f"{kind} x{n}" for kind, n in sorted(r["problems"].items())]
    if r["calls_completed"] < r["calls_attempted"]:
        failed.append(f"{r['calls_attempted'] - r['calls_completed']} calls did not complete")
    if r["seq_gaps"]:
        failed.append("seq gaps")
    if r["closed_sockets"] and "socket closed" not in r["problems"]:
        failed.append("sockets closed")
    return failed


def mem_text(mem: dict[str, float] | None) -> str:
    return "n/a" if mem is None else f"{mem['rss']} (peak {mem['peak']})"


def report(r: Doc) -> None:
    cpu, mem = r["cpu"], r["memory_mib"]
    lines = [
        f"python: {r['python']}",
        f"cpus: {r['cpus']}",
        f"load average 1m at start: {r['loadavg_1m']}",
        f"server: {r['server']}",
        f"limits: {r['limits']}",
        f"pairs: {r['pairs']} ({r['sockets']} sockets"
        f"{', a second idle device per user' if r['second_device'] else ''})",
        f"rounds: {r['rounds']}",
        f"signals per call: 2 x (1 SDP of ~{r['sdp_chars']} chars + {r['candidates']}"
        " candidates + end of candidates)",
        f"setup s: {r['setup_s']}",
        f"calls completed: {r['calls_completed']} of {r['calls_attempted']}",
        f"round wall s: {', '.join(map(str, r['round_wall_s']))}",
        f"calls/s: {r['calls_per_s']}",
        f"signals sent: {r['signals_sent']}, received: {r['signals_received']}"
        f" ({r['signals_per_s']}/s)",
    ]
    for key, label in LATENCIES:
        s = r["ms"][key]
        lines.append(
            f"{label} ms: p50 {s['p50']}, p95 {s['p95']}, p99 {s['p99']}, max {s['max']}"
            f" (n={s['n']})"
        )
    lines += [
        f"rounds s (cpu window): {cpu['wall_s']}",
        f"server cpu s: {cpu_text(cpu, 'server')}",
        f"db cpu s: {cpu_text(cpu, 'db')}",
        f"bench client cpu s: {cpu_text(cpu, 'client')}",
        f"server cpu ms per call: {r['server_cpu_ms_per_call']}",
        f"server rss MiB before: {mem_text(mem['server_before'])}, after:"
        f" {mem_text(mem['server_after'])}",
        f"db rss MiB before: {mem_text(mem['db_before'])}, after: {mem_text(mem['db_after'])}",
        f"error frames: {sum(r['errors'].values())} {r['errors'] or ''}".rstrip(),
        f"other events: {r['other_events'] or 'none'}",
        f"seq gaps: {r['seq_gaps']}",
        f"closed sockets: {r['closed_sockets']} {r['close_reasons'] or ''}".rstrip(),
        *(f"problem: {p}" for p in r["problem_examples"]),
        f"failed checks: {'; '.join(r['failed_checks']) or 'none'}",
    ]
    emit(lines, r)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="FastSock 1:1 call signaling benchmark")
    p.add_argument("--pairs", type=int, default=50, help="caller/callee pairs, calling at once")
    p.add_argument("--rounds", type=int, default=3, help="calls per pair, one round after another")
    p.add_argument("--candidates", type=int, default=8, help="ICE candidates per side")
    p.add_argument(
        "--second-device",
        action="store_true",
        help="also connect an idle second session per user (sees lifecycle events, no signals)",
    )
    p.add_argument("--step-timeout", type=float, default=60.0, help="limit for each wait, s")
    p.add_argument("--pid", type=int, help="with --url: the server's pid, for CPU and RSS")
    add_target_args(p, timeout=900.0)
    args = p.parse_args(argv)
    if not 1 <= args.pairs <= 2500 or args.rounds < 1:
        p.error("need 1 <= --pairs <= 2500 and --rounds >= 1")
    if not 0 <= args.candidates <= 100 or args.step_timeout <= 0:
        p.error("need 0 <= --candidates <= 100 and --step-timeout > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_main(args, run, report, lambda r: bool(r["failed_checks"]), env=limit_env(LIMITS))


if __name__ == "__main__":
    sys.exit(main())
