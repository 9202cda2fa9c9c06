"""Scale benchmark: the server on a database that already holds many messages.

Seeds `--messages` messages (default 100,000) across `--rooms` rooms (50) THROUGH THE STORE the
server will use (`open_store` + `prepare`, then the repositories: users, rooms with their
members, messages shaped as the send path writes them, some reactions, read pointers), closes
it, starts the real server on that database, and times, through the real HTTP API and
WebSocket: send -> ack, history pages (newest and deep `before` cursors), `GET /rooms` for a
member of every room, and member-scoped search (common words, rare words, prefixes). Reports
the database size per message and the server's CPU per sent message. Prints `key: value`
lines and a final `RESULT {json}` line; exits 1 when a check failed (or the run did). See
bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import random
import re
import signal
import sqlite3
import sys
import tempfile
import time
import uuid
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import quote

from common import (
    BENCH_LIMITS,
    PASSWORD,
    Activity,
    Api,
    Client,
    Doc,
    emit,
    gather_bounded,
    limit_env,
    machine,
    percentile,
    ws_url,
)
from errors import BenchError
from processes import ServerProcess, free_port, proc_cpu_s
from tornado.httpclient import HTTPRequest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # fastsock, and tests.mongo_standin for --backend mongo

from fastsock.config import load_settings  # noqa: E402
from fastsock.services.clock import now  # noqa: E402
from fastsock.services.passwords import hash_password  # noqa: E402
from fastsock.store import SQLITE_FILE, open_store  # noqa: E402
from fastsock.store.base import Store  # noqa: E402

# What the issue asks of SQLite at 1,000,000 messages (p99, ms).
TARGETS_MS = {"send_ack": 20.0, "history": 10.0, "rooms": 30.0, "search": 100.0}
MAX_REACTION_KINDS = 20  # services/reactions.py MAX_KINDS
CREATE_MEMBERS = 100  # member ids POST /rooms takes; the rest are added one by one
PAGE = 50  # history page size asked for
SEARCH_LIMIT = 20  # the API's default search page
WARMUP = 3  # requests per phase not counted (first touches of a fresh server's caches)
SEED = 20261130

# --- realistic text --------------------------------------------------------------------------

# Roughly by frequency in team chat; a word's rank sets its Zipf weight (1 / rank).
_WORDS = """
the to i and a you it is that we for on in this be of have with can just so not do but are
at me my if ok it's i'm will get what was yes no there up about all thanks now should out
know think one like going from see need our they would let when can't your an here also
how time today more go them did some make check want sure any back yeah still by has why
good right work new got please does looks build tomorrow fix test release deploy meeting
then look has been could which call yet because already maybe well much after before
week review merge branch issue bug tests change changes update team people next code
morning done doing first last over into something only great nice team's day really way
file files config server client data database page link error errors logs running run
again other doc docs try trying should've week's plan idea question answer help asap later
customer customers support ticket tickets sprint standup demo deadline friday monday
tuesday wednesday thursday weekend lunch coffee office remote home travel flight hotel
deployed deployment deploying deploys released releases releasing built building fixed
fixing tested testing merged merging reviewed reviewing migrate migration migrating
migrated needed needs needle haystack schema index indexes query queries search cache
latency throughput memory cpu disk network socket sockets websocket retry retries timeout
timeouts crash crashed restart restarted rollback rollbacks hotfix patch version versions
upgrade upgraded dependency dependencies package packages install installed container
containers cluster node nodes replica backup backups restore restored monitoring alert
alerts dashboard dashboards metric metrics graph graphs chart spike spikes incident
postmortem oncall pager escalation severity outage downtime uptime budget invoice contract
design mockup mockups prototype feedback users user account accounts login logout password
token tokens session sessions permission permissions role roles admin admins invite
invited channel channels thread threads message messages reaction reactions emoji upload
uploads image images video videos audio call calls screen share shared sharing notes agenda
minutes summary draft final approved approval blocked blocker blockers priority roadmap
quarter goals estimate estimates scope ticket's backlog grooming retro retrospective
conference talk slides workshop training onboarding offboarding hiring interview candidate
candidates offer salary vacation holiday sick leave birthday party cake pizza snacks
kitchen printer wifi vpn laptop monitor keyboard mouse headset microphone camera
confirm confirmed conflict conflicts consistent console constant contact content context
analytics experiment experiments hypothesis results report reports spreadsheet numbers
finance legal compliance audit security vulnerability vulnerabilities encryption
certificate certificates renewal domain dns proxy firewall gateway endpoint endpoints
payload payloads request requests response responses header headers cookie cookies
"""
VOCABULARY = tuple(dict.fromkeys(_WORDS.split()))  # in rank order, no repeats
# Each planted in about RARE_HITS messages whatever the size: "rare" means few matches.
RARE_WORDS = ("quokka", "zeppelin", "marzipan", "xylophone", "narwhal", "kumquat")
RARE_HITS = 25
EMOJI = ("👍", "❤️", "😂", "🎉", "👀", "🙏", "🔥", "✅")
ENDINGS = ("", "", ".", ".", "?", "!")

# Search queries by kind. Prefixes: on SQLite every word of q is a prefix ("need" finds
# "needle"); on MongoDB's text search only whole words match.
QUERIES = {
    "common": ("the", "meeting", "deploy", "thanks"),
    "rare": RARE_WORDS[:4],
    "prefix": ("need", "migrat", "conf", "rollb"),
    "two words": ("release friday", "database migration"),
}


class Words:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.cum = list(itertools.accumulate(1 / rank for rank in range(1, len(VOCABULARY) + 1)))

    def text(self, rare: str | None) -> str:
        rng = self.rng
        r = rng.random()
        n = (
            rng.randint(2, 12)
            if r < 0.6
            else rng.randint(12, 30)
            if r < 0.92
            else rng.randint(30, 80)
        )
        words = rng.choices(VOCABULARY, cum_weights=self.cum, k=n)
        if rare is not None:
            words.insert(rng.randrange(n + 1), rare)
        words[0] = words[0].capitalize()
        return " ".join(words) + rng.choice(ENDINGS)


# --- the seeded data ---------------------------------------------------------------------------


@dataclass
class Room:
    index: int
    id: str
    members: list[int]  # user indexes; 0 (the observer) is in every room
    weight: float  # share of the messages
    ids: list[str] = field(default_factory=list)  # message ids, oldest first
    senders: array = field(default_factory=lambda: array("H"))  # user index per message
    version: int = 0
    last_at: Any = None
    rare: dict[str, int] = field(default_factory=dict)  # rare word -> messages holding it


@dataclass
class Seeded:
    users: list[str]  # user ids by index
    usernames: list[str]
    rooms: list[Room]
    narrow: int  # the user in the fewest rooms
    unread: dict[tuple[int, int], int]  # (0, room) -> the observer's expected unread count
    messages: int
    reactions: int
    figures: Doc


def username(i: int) -> str:
    return f"scale.{i:04d}"


def unread_target(rng: random.Random, heavy: bool) -> int:
    """Most rooms mostly read, some a little behind, a few with hundreds unread."""
    if heavy:
        return rng.randint(200, 900)
    r = rng.random()
    if r < 0.75:
        return rng.randint(0, 3)
    if r < 0.97:
        return rng.randint(5, 60)
    return rng.randint(200, 900)


async def workers[T](
    concurrency: int, items: Iterable[T], fn: Callable[[T], Awaitable[None]]
) -> None:
    """`fn(item)` for every item with `concurrency` in flight (a shared iterator, so nothing is
    built up front: the store's writer groups whatever is queued into one commit)."""
    it = iter(items)

    async def worker() -> None:
        for item in it:
            await fn(item)

    async with asyncio.TaskGroup() as tg:
        for _ in range(concurrency):
            tg.create_task(worker())


class Progress:
    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.done = label, total, 0
        self.started = self.last = time.perf_counter()

    def tick(self) -> None:
        self.done += 1
        t = time.perf_counter()
        if t - self.last >= 10 or self.done == self.total:
            self.last = t
            rate = self.done / max(t - self.started, 1e-9)
            print(f"  {self.label}: {self.done}/{self.total} ({rate:.0f}/s)", file=sys.stderr)


async def seed(store: Store, args: argparse.Namespace) -> Seeded:
    rng = random.Random(SEED)
    words = Words(rng)
    figures: Doc = {}
    t0 = time.perf_counter()

    # Users: one scrypt hash for all of them (hashing costs ~50 ms each).
    password_hash = hash_password(PASSWORD)
    usernames = [username(i) for i in range(args.users)]

    async def add_user(name: str) -> str:
        doc = {
            "username": name,
            "display_name": name.replace(".", " ").title(),
            "password_hash": password_hash,
            "status_message": "",
            "avatar_url": None,
            "created_at": now(),
        }
        return str((await store.users.insert(doc))["_id"])

    users = await gather_bounded(args.seed_concurrency, add_user, usernames)

    # Rooms: user 0 (the observer) is in all of them; two all-hands rooms hold everyone, the
    # others 4-40 people. Messages spread unevenly (lognormal weights): a few busy rooms.
    rooms: list[Room] = []
    for r in range(args.rooms):
        others = list(range(1, args.users))
        if r < 2:
            members = [0, *others]
        else:
            members = [0, *sorted(rng.sample(others, min(len(others), rng.randint(4, 40))))]
        rooms.append(Room(r, "", members, rng.lognormvariate(0, 1)))
    total_weight = sum(room.weight for room in rooms)

    async def add_room(room: Room) -> None:
        at = now()
        doc = {
            "kind": "group",
            "name": f"room {room.index:02d}",
            "private": room.index % 5 != 0,
            "dm_key": None,
            "created_by": users[0],
            "created_at": at,
            "last_activity_at": at,
            "version": 0,
        }
        roles = [(users[m], "admin" if m == 0 else "member") for m in room.members]
        # As the API does it: up to 100 members with the room, then one by one.
        first, rest = roles[: CREATE_MEMBERS + 1], roles[CREATE_MEMBERS + 1 :]
        room.id = str((await store.rooms.create(doc, first, at))["_id"])
        for user_id, role in rest:
            await store.memberships.add(room.id, user_id, role, at)
        room.last_at = at

    await gather_bounded(args.seed_concurrency, add_room, rooms)
    figures["seed_users_rooms_s"] = round(time.perf_counter() - t0, 2)

    # Messages, shaped as services/messages.py `_insert` writes them (`announced` as after
    # its announcement). Versions count per room as rooms.next_version would; the rooms get
    # their final version and activity time at the end.
    rare_p = {w: min(1.0, RARE_HITS / args.messages) for w in RARE_WORDS}
    cum_rooms = list(itertools.accumulate(room.weight / total_weight for room in rooms))

    def plan() -> Iterator[tuple[Room, int, Doc]]:
        for _ in range(args.messages):
            room = rng.choices(rooms, cum_weights=cum_rooms)[0]
            sender = rng.choice(room.members)
            rare = next((w for w, p in rare_p.items() if rng.random() < p), None)
            if rare is not None:
                room.rare[rare] = room.rare.get(rare, 0) + 1
            room.version += 1
            doc = {
                "room_id": room.id,
                "sender_id": users[sender],
                "type": "text",
                "text": words.text(rare),
                "attachments": [],
                "client_msg_id": uuid.uuid4().hex,  # what the web client sends
                "created_at": now(),
                "edited_at": None,
                "deleted": False,
                "reactions": {},
                "reaction_kinds": 0,
                "version": room.version,
                "announced": True,
            }
            yield room, sender, doc

    stored: list[list[tuple[str, int]]] = [[] for _ in rooms]
    progress = Progress("messages", args.messages)

    async def insert(item: tuple[Room, int, Doc]) -> None:
        room, sender, doc = item
        saved = await store.messages.insert(doc)
        stored[room.index].append((str(saved["_id"]), sender))
        room.last_at = doc["created_at"]
        progress.tick()

    t1 = time.perf_counter()
    await workers(args.seed_concurrency, plan(), insert)
    seed_s = time.perf_counter() - t1
    figures["seed_messages_s"] = round(seed_s, 1)
    figures["seed_messages_per_s"] = round(args.messages / seed_s)
    for room, pairs in zip(rooms, stored, strict=True):
        pairs.sort()  # ids order by creation; completion order may differ slightly
        room.ids = [p[0] for p in pairs]
        room.senders = array("H", (p[1] for p in pairs))

    # Reactions on ~args.reaction_pct % of messages, 1-3 each, by members of the room.
    picks: list[tuple[Room, str, str, str]] = []
    for room in rooms:
        for mid in room.ids:
            if rng.random() * 100 < args.reaction_pct:
                for _ in range(rng.choice((1, 1, 1, 2, 3))):
                    picks.append((room, mid, rng.choice(EMOJI), users[rng.choice(room.members)]))
    progress = Progress("reactions", len(picks))
    added = 0

    async def react(item: tuple[Room, str, str, str]) -> None:
        nonlocal added
        room, mid, emoji, user_id = item
        room.version += 1
        if await store.messages.add_reaction(mid, emoji, user_id, room.version, MAX_REACTION_KINDS):
            added += 1
        progress.tick()

    t2 = time.perf_counter()
    await workers(args.seed_concurrency, picks, react)
    figures["seed_reactions_s"] = round(time.perf_counter() - t2, 1)

    # Read pointers. Three of the observer's rooms have hundreds unread.
    narrow = min(range(1, args.users), key=lambda u: sum(u in r.members for r in rooms))
    heavy_rooms = set(rng.sample(range(len(rooms)), min(3, len(rooms))))
    pointers: list[tuple[Room, int, int]] = []  # room, user, index of the last read message
    unread: dict[tuple[int, int], int] = {}
    for room in rooms:
        if not room.ids:
            continue
        for u in room.members:
            behind = unread_target(rng, u == 0 and room.index in heavy_rooms)
            k = max(0, len(room.ids) - 1 - behind)
            pointers.append((room, u, k))
            if u == 0:
                unread[(u, room.index)] = sum(1 for s in room.senders[k + 1 :] if s != u)

    async def point(item: tuple[Room, int, int]) -> None:
        room, u, k = item
        await store.memberships.advance_read(room.id, users[u], room.ids[k], now())

    await workers(args.seed_concurrency, pointers, point)
    for room in rooms:
        await store.rooms.update(
            room.id, {"version": room.version, "last_activity_at": room.last_at}
        )
    figures["seed_total_s"] = round(time.perf_counter() - t0, 1)
    figures["memberships"] = sum(len(r.members) for r in rooms)
    return Seeded(users, usernames, rooms, narrow, unread, args.messages, added, figures)


# --- measuring -------------------------------------------------------------------------------


def stats(values: list[float]) -> Doc:
    v = sorted(values)
    return {
        "count": len(v),
        "p50": round(percentile(v, 50), 2),
        "p99": round(percentile(v, 99), 2),
        "max": round(v[-1], 2) if v else 0.0,
    }


async def timed(fn: Callable[[], Awaitable[Doc]]) -> tuple[float, Doc]:
    t = time.perf_counter()
    out = await fn()
    return (time.perf_counter() - t) * 1000, out


DB_METRIC = re.compile(r'^fastsock_db_operation_seconds_(sum|count)\{command="([^"]+)"\} (\S+)$')


async def db_operations(api: Api) -> dict[str, list[float]]:
    """The server's fastsock_db_operation_seconds: {operation: [seconds, calls]} so far (the
    time each database call took as its caller waited, queueing included). Empty when
    /metrics cannot be read."""
    request = HTTPRequest(api.base + "/metrics", request_timeout=30)
    try:
        resp = await api.http.fetch(request, raise_error=False)
    except OSError:
        return {}
    out: dict[str, list[float]] = {}
    for line in (resp.body or b"").decode(errors="replace").splitlines():
        if m := DB_METRIC.match(line):
            kind, op, value = m.groups()
            out.setdefault(op, [0.0, 0.0])[0 if kind == "sum" else 1] += float(value)
    return out


class Run:
    """The measured phases against the started server. A failed request or send is counted
    (and its first errors listed), not fatal: a database that cannot keep up still gets its
    figures. `problems` collects failed checks."""

    def __init__(self, api: Api, seeded: Seeded, args: argparse.Namespace) -> None:
        self.api = api
        self.s = seeded
        self.args = args
        self.rng = random.Random(SEED + 1)
        self.problems: list[str] = []
        self.errors: dict[str, int] = {}  # phase -> failed requests
        self.tokens: dict[int, str] = {}
        self.db: dict[str, dict[str, list[float]]] = {}  # phase -> operation -> [s, calls]
        self.requests: dict[str, int] = {}  # phase -> requests made, warm-up included

    def account(
        self, phase: str, before: dict[str, list[float]], after: dict[str, list[float]], n: int
    ) -> None:
        """Add a stretch of the phase's database time (from /metrics) and its request count."""
        spent = self.db.setdefault(phase, {})
        for op, (secs, calls) in after.items():
            b_secs, b_calls = before.get(op, (0.0, 0.0))
            if calls > b_calls:
                row = spent.setdefault(op, [0.0, 0.0])
                row[0] += secs - b_secs
                row[1] += calls - b_calls
        self.requests[phase] = self.requests.get(phase, 0) + n

    def db_per_request(self, phase: str) -> list[Doc]:
        """The operations that took most database time per request of the phase."""
        n = max(1, self.requests.get(phase, 0))
        rows = sorted(self.db.get(phase, {}).items(), key=lambda kv: kv[1][0], reverse=True)
        return [
            {"op": op, "calls": round(calls / n, 1), "ms": round(secs / n * 1000, 2)}
            for op, (secs, calls) in rows[:5]
        ]

    def problem(self, text: str) -> None:
        if len(self.problems) < 50:
            self.problems.append(text)

    def failed(self, phase: str, exc: Exception) -> None:
        self.errors[phase] = self.errors.get(phase, 0) + 1
        if self.errors[phase] <= 3:
            self.problem(f"{phase}: {str(exc)[:200]}")

    async def login(self, user: int) -> str:
        if user not in self.tokens:
            body = {"username": self.s.usernames[user], "password": PASSWORD}
            self.tokens[user] = (await self.api.call("POST", "/auth/login", body))["access_token"]
        return self.tokens[user]

    async def series(
        self, phase: str, user: int, paths: list[str]
    ) -> tuple[list[float], list[Doc | None]]:
        """GET each path in turn, after WARMUP uncounted ones: the latencies (ms) of those
        that succeeded, and every body (None for a failed request)."""
        token = await self.login(user)
        times: list[float] = []
        bodies: list[Doc | None] = []
        warmup = paths[:WARMUP]
        ops_before = await db_operations(self.api)
        for i, path in enumerate([*warmup, *paths]):
            try:
                ms, body = await timed(lambda p=path: self.api.call("GET", p, token=token))
            except BenchError as exc:
                if i >= len(warmup):
                    self.failed(phase, exc)
                    bodies.append(None)
                continue
            if i >= len(warmup):
                times.append(ms)
                bodies.append(body)
        self.account(phase, ops_before, await db_operations(self.api), len(warmup) + len(paths))
        return times, bodies

    # --- GET /rooms ----------------------------------------------------------------------

    async def rooms_list(self) -> Doc:
        times, bodies = await self.series("GET /rooms", 0, ["/rooms"] * self.args.rooms_requests)
        body = next((b for b in bodies if b is not None), None)
        rooms = body["rooms"] if body else []
        by_id = {r.id: r for r in self.s.rooms}
        if body and len(rooms) != len(self.s.rooms):
            self.problem(f"GET /rooms: {len(rooms)} rooms, expected {len(self.s.rooms)}")
        for got in rooms:
            room = by_id.get(got["id"])
            if room is None:
                self.problem(f"GET /rooms: unknown room {got['id']}")
                continue
            want = self.s.unread.get((0, room.index), 0)
            if got["unread_count"] != want:
                self.problem(f"room {room.index}: unread_count {got['unread_count']}, want {want}")
            last = (got.get("last_message") or {}).get("id")
            if room.ids and last != room.ids[-1]:
                self.problem(f"room {room.index}: last_message {last}, want {room.ids[-1]}")
        unread = sorted((r["unread_count"] for r in rooms), reverse=True)
        return {
            "latency_ms": stats(times),
            "db_per_request": self.db_per_request("GET /rooms"),
            "errors": self.errors.get("GET /rooms", 0),
            "rooms": len(rooms),
            "unread_top": unread[:5],
        }

    # --- history -------------------------------------------------------------------------

    async def history(self) -> Doc:
        n = self.args.history_requests
        rooms = [r for r in self.s.rooms if r.ids]
        newest = [rooms[i % len(rooms)] for i in range(n)]
        paths = [f"/history/room/{r.id}?limit={PAGE}" for r in newest]
        t_new, bodies = await self.series("history", 0, paths)
        for room, body in zip(newest, bodies, strict=True):
            if body is not None and [m["id"] for m in body["messages"]] != room.ids[-PAGE:][::-1]:
                self.problem(f"newest page of room {room.index} is not its newest {PAGE}")
                break
        # Deep cursors: an id from the oldest 10 % of the busiest rooms' history.
        deep_rooms = sorted(rooms, key=lambda r: len(r.ids), reverse=True)[:10]
        cursors = []
        for i in range(n):
            room = deep_rooms[i % len(deep_rooms)]
            k = self.rng.randrange(1, max(2, len(room.ids) // 10))
            cursors.append((room, k))
        paths = [f"/history/room/{r.id}?limit={PAGE}&before={r.ids[k]}" for r, k in cursors]
        t_deep, bodies = await self.series("history", 0, paths)
        for (room, k), body in zip(cursors, bodies, strict=True):
            want = room.ids[max(0, k - PAGE) : k][::-1]
            if body is not None and [m["id"] for m in body["messages"]] != want:
                self.problem(f"page before message {k} of room {room.index} is wrong")
                break
        depth = [len(r.ids) for r in deep_rooms]
        return {
            "newest_ms": stats(t_new),
            "deep_ms": stats(t_deep),
            "all_ms": stats(t_new + t_deep),
            "db_per_request": self.db_per_request("history"),
            "errors": self.errors.get("history", 0),
            "deep_rooms_messages": [min(depth), max(depth)],
        }

    # --- search --------------------------------------------------------------------------

    async def search(self, backend: str) -> Doc:
        users = {"member of all rooms": 0, "member of fewest rooms": self.s.narrow}
        out: Doc = {"by_kind": {}, "by_user": {}, "hits": {}}
        everything: list[float] = []
        repeat = self.args.search_repeat
        for who, user in users.items():
            member_rooms = {r.id for r in self.s.rooms if user in r.members}
            per_user: list[float] = []
            for kind, queries in QUERIES.items():
                paths = [
                    f"/search/messages?q={quote(q)}&limit={SEARCH_LIMIT}"
                    for q in queries
                    for _ in range(repeat)
                ]
                times, bodies = await self.series("search", user, paths)
                per_user += times
                out["by_kind"].setdefault(kind, []).extend(times)
                for i, q in enumerate(queries):
                    body = next((b for b in bodies[i * repeat : (i + 1) * repeat] if b), None)
                    if body is not None:
                        self.check_search(backend, who, member_rooms, user, kind, q, body, out)
            out["by_user"][who] = stats(per_user)
            everything += per_user
        out["by_kind"] = {k: stats(v) for k, v in out["by_kind"].items()}
        out["all_ms"] = stats(everything)
        out["errors"] = self.errors.get("search", 0)
        out["db_per_request"] = self.db_per_request("search")
        out["narrow_user_rooms"] = sum(self.s.narrow in r.members for r in self.s.rooms)
        out["narrow_user_messages"] = sum(
            len(r.ids) for r in self.s.rooms if self.s.narrow in r.members
        )
        return out

    def check_search(
        self,
        backend: str,
        who: str,
        member_rooms: set[str],
        user: int,
        kind: str,
        q: str,
        body: Doc,
        out: Doc,
    ) -> None:
        found = body["messages"]
        hits = out["hits"].setdefault(who, {})
        hits[q] = f"{len(found)}{'+' if body['has_more'] else ''}"
        if any(m["room_id"] not in member_rooms for m in found):
            self.problem(f"search {q!r} returned a message outside {who}'s rooms")
        if kind == "rare":
            want = sum(r.rare.get(q, 0) for r in self.s.rooms if user in r.members)
            if len(found) != min(want, SEARCH_LIMIT):
                self.problem(f"search {q!r} ({who}): {len(found)} hits, want {want}")
        if backend != "sqlite":
            return  # MongoDB: any whole word (text index), or every word as a substring (fallback)
        for m in found:  # SQLite: every word of q begins a word of the text
            words = m["text"].lower().split()
            if not all(any(w.startswith(t) for w in words) for t in q.split()):
                self.problem(f"search {q!r} hit lacks a word starting so: {m['text'][:60]}")
                break

    # --- send -> ack ---------------------------------------------------------------------

    async def sends(self, server_pids: dict[str, int | None], url: str) -> Doc:
        args = self.args
        rooms = sorted(self.s.rooms, key=lambda r: len(r.ids), reverse=True)[: args.send_rooms]
        activity = Activity()
        clients: list[Client] = []
        senders: list[tuple[Room, Client]] = []
        try:
            for room in rooms:
                user = room.members[1 + self.rng.randrange(len(room.members) - 1)]
                token = await self.login(user)
                client = Client(f"sender {user}", self.s.users[user], token, activity)
                clients.append(client)
                await client.connect(url)
                senders.append((room, client))
            observer = Client("observer", self.s.users[0], await self.login(0), activity)
            clients.append(observer)
            await observer.connect(url)  # in every room: receives each message.new
            await asyncio.sleep(0.5)  # let connect-time presence settle

            ops_before = await db_operations(self.api)
            cpu0 = {k: proc_cpu_s(p) for k, p in server_pids.items()}
            client_cpu0 = time.process_time()
            started = time.perf_counter()
            interval = 1 / args.send_rate
            words = Words(self.rng)
            acks: list[float] = []

            async def one(i: int) -> None:
                await asyncio.sleep(max(0.0, started + i * interval - time.perf_counter()))
                room, client = senders[i % len(senders)]
                text = words.text(None)
                try:
                    sent = await client.send_message(room.id, f"scale-{i}-{uuid.uuid4().hex}", text)
                except BenchError as exc:
                    self.failed("send", exc)
                    return
                if sent.message["room_id"] != room.id:
                    self.problem(f"ack for send {i} names room {sent.message['room_id']}")
                acks.append((sent.acked - sent.sent) * 1000)

            await asyncio.gather(*(one(i) for i in range(args.sends)))
            wall = time.perf_counter() - started
            cpu = {}
            for k, p in server_pids.items():
                before, after = cpu0[k], proc_cpu_s(p)
                if before is not None and after is not None:
                    cpu[k] = {
                        "cpu_s": round(after - before, 2),
                        "core_pct": round((after - before) / wall * 100, 1),
                        "ms_per_message": round((after - before) / max(1, len(acks)) * 1000, 2),
                    }
            self.account("send", ops_before, await db_operations(self.api), args.sends)
            gaps = sum(c.seq_gaps for c in clients)
            if gaps:
                self.problem(f"{gaps} seq gaps on the senders' sockets")
            return {
                "ack_ms": stats(acks),
                "db_per_request": self.db_per_request("send"),
                "errors": self.errors.get("send", 0),
                "rooms": len(rooms),
                "rate_per_s": args.send_rate,
                "wall_s": round(wall, 2),
                "cpu": cpu,
                "client_cpu_s": round(time.process_time() - client_cpu0, 2),
            }
        finally:
            for client in clients:
                client.close()


# --- database size ---------------------------------------------------------------------------


def sqlite_size(path: Path) -> Doc:
    """fastsock.db + -wal after a checkpoint, and the biggest tables and indexes (dbstat)."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        parts: dict[str, int] = {}
        with contextlib.suppress(sqlite3.Error):  # dbstat is a compile-time option
            rows = conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name")
            parts = {name: size for name, size in rows}
    finally:
        conn.close()
    files = {s: Path(f"{path}{s}") for s in ("", "-wal")}
    size = sum(f.stat().st_size for f in files.values() if f.exists())
    # Group the FTS5 shadow tables under one name.
    grouped: dict[str, int] = {}
    for name, b in parts.items():
        key = "messages_fts (all shadow tables)" if name.startswith("messages_fts") else name
        grouped[key] = grouped.get(key, 0) + b
    top = sorted(grouped.items(), key=lambda kv: kv[1], reverse=True)[:8]
    return {"bytes": size, "parts_mib": {k: round(v / 2**20, 1) for k, v in top}}


async def mongo_size(uri: str) -> Doc | None:
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient = AsyncMongoClient(uri, serverSelectionTimeoutMS=3000)
    try:
        st = await client.get_default_database().command("dbStats")
        return {"bytes": int(st["dataSize"]) + int(st.get("indexSize", 0)), "dbstats": st}
    except Exception as exc:  # a stand-in without dbStats
        return {"bytes": None, "error": str(exc)[:200]}
    finally:
        await client.close()


# --- the run ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def database(args: argparse.Namespace, data_dir: Path) -> AsyncIterator[tuple[Doc, Any]]:
    """The server's environment (FASTSOCK_DATA_DIR, and FASTSOCK_MONGO_URI on a fresh
    database of a started stand-in), and the stand-in (None for SQLite)."""
    env = {"FASTSOCK_DATA_DIR": str(data_dir), **limit_env(BENCH_LIMITS)}
    if args.backend == "sqlite":
        yield env, None
        return
    from tests.mongo_standin import EmbeddedMongo

    standin = EmbeddedMongo(sqlite_path=None)
    await standin.start()
    try:
        env["FASTSOCK_MONGO_URI"] = standin.uri_for(f"scale{os.getpid()}")
        yield env, standin
    finally:
        await standin.stop()


async def run(args: argparse.Namespace, server: ServerProcess, data_dir: Path) -> Doc:
    load_before = os.getloadavg()[0]
    result: Doc = {"backend": args.backend}
    async with database(args, data_dir) as (env, standin):
        server.extra_env = env  # ServerProcess applies these over its own FASTSOCK_DATA_DIR
        settings = load_settings(env)  # the settings the server will read
        store = open_store(settings)
        print(f"seeding {args.messages} messages via {store.description}", file=sys.stderr)
        await store.prepare(60)
        try:
            seeded = await seed(store, args)
        finally:
            await store.close()
        result |= {
            **machine(load_before, server.url, server),
            "messages": seeded.messages,
            "rooms": len(seeded.rooms),
            "users": len(seeded.users),
            "reactions": seeded.reactions,
            "seed": seeded.figures,
        }
        if args.backend == "sqlite":
            result["size_after_seed_bytes"] = sqlite_size(data_dir / SQLITE_FILE)["bytes"]

        t = time.perf_counter()
        server.start()
        api = Api(server.url)
        try:
            await api.wait_ready(server)
            result["server_ready_s"] = round(time.perf_counter() - t, 2)
            started_line = next(
                (ln for ln in server.log_tail(200).splitlines() if "FastSock is running" in ln), ""
            )
            result["store"] = started_line.partition("(")[2].rstrip(")") or "unknown"
            result["loadavg_1m_measuring"] = round(os.getloadavg()[0], 2)
            phases = Run(api, seeded, args)
            print("measuring GET /rooms", file=sys.stderr)
            result["get_rooms"] = await phases.rooms_list()
            print("measuring history", file=sys.stderr)
            result["history"] = await phases.history()
            print("measuring search", file=sys.stderr)
            result["search"] = await phases.search(args.backend)
            print("measuring send -> ack", file=sys.stderr)
            pids = {"server": server.pid}
            if standin is not None:
                pids["mongo stand-in"] = standin.pid
            result["send"] = await phases.sends(pids, ws_url(server.url))
            result["problems"] = phases.problems
            if standin is not None:
                result["db_size"] = await mongo_size(env["FASTSOCK_MONGO_URI"])
        finally:
            api.close()
            if server.exited() is not None:  # it died: its log goes with stop()
                print(server.log_tail(), file=sys.stderr)
            server.stop()  # the data dir is ours: it stays until run() returns
        if args.backend == "sqlite":
            result["db_size"] = sqlite_size(data_dir / SQLITE_FILE)
    total = seeded.messages + args.sends
    size = (result.get("db_size") or {}).get("bytes")
    result["db_bytes_per_message"] = round(size / total) if size else None
    result["targets"] = targets(result)
    return result


def targets(r: Doc) -> Doc:
    """Each target is met when the p99 is within it and no request of the phase failed."""
    phases = {
        "send_ack": (r["send"], "ack_ms"),
        "history": (r["history"], "all_ms"),
        "rooms": (r["get_rooms"], "latency_ms"),
        "search": (r["search"], "all_ms"),
    }
    out = {}
    for key, (phase, figure) in phases.items():
        p99, limit = phase[figure]["p99"], TARGETS_MS[key]
        ok = phase[figure]["count"] > 0 and not phase.get("errors") and p99 <= limit
        out[key] = {"p99_ms": p99, "target_ms": limit, "met": ok}
    return out


def fmt(s: Doc) -> str:
    return f"{s['p50']} / {s['p99']} / {s['max']} (n={s['count']})"


def errs(phase: Doc) -> str:
    return f"; FAILED requests: {phase['errors']}" if phase.get("errors") else ""


def target_text(r: Doc, key: str) -> str:
    t = r["targets"][key]
    return f"target p99 <= {t['target_ms']:g} ms: {'met' if t['met'] else 'MISSED'}"


def report(r: Doc) -> None:
    seedf, h, s, send = r["seed"], r["history"], r["search"], r["send"]
    lines = [
        f"python: {r['python']}",
        f"cpus: {r['cpus']}",
        f"load average 1m at start: {r['loadavg_1m']}, when measuring: {r['loadavg_1m_measuring']}",
        f"server: {r['server']}",
        f"backend: {r['backend']} ({r['store']})",
        f"messages seeded: {r['messages']} in {r['rooms']} rooms, {r['users']} users, "
        f"{seedf['memberships']} memberships, {r['reactions']} reactions",
        f"seed messages/s: {seedf['seed_messages_per_s']} ({seedf['seed_messages_s']} s)",
        f"seed total s: {seedf['seed_total_s']} (users+rooms {seedf['seed_users_rooms_s']}, "
        f"reactions {seedf['seed_reactions_s']})",
        f"server ready s: {r['server_ready_s']}",
        "latencies ms: p50 / p99 / max (n)",
        f"send -> ack: {fmt(send['ack_ms'])}; {target_text(r, 'send_ack')}{errs(send)}",
        f"  sends: {send['rate_per_s']}/s over {send['rooms']} rooms, {send['wall_s']} s",
        f"history newest page: {fmt(h['newest_ms'])}",
        f"history deep before: {fmt(h['deep_ms'])} (rooms of {h['deep_rooms_messages'][0]}-"
        f"{h['deep_rooms_messages'][1]} messages)",
        f"history all: {fmt(h['all_ms'])}; {target_text(r, 'history')}{errs(h)}",
        f"GET /rooms ({r['get_rooms']['rooms']} rooms): {fmt(r['get_rooms']['latency_ms'])}; "
        f"{target_text(r, 'rooms')}{errs(r['get_rooms'])}",
        f"  largest unread counts: {r['get_rooms']['unread_top']}",
    ]
    for kind, st in s["by_kind"].items():
        lines.append(f"search {kind}: {fmt(st)}")
    for who, st in s["by_user"].items():
        lines.append(f"search, {who}: {fmt(st)}")
    lines.append(f"search all: {fmt(s['all_ms'])}; {target_text(r, 'search')}{errs(s)}")
    lines.append(
        f"  fewest-rooms user: {s['narrow_user_rooms']} rooms, {s['narrow_user_messages']} messages"
    )
    for who, hits in s["hits"].items():
        found = ", ".join(f"{q!r} {n}" for q, n in hits.items())
        lines.append(f"  hits on the first page ({SEARCH_LIMIT}+ = more), {who}: {found}")
    for label, phase in (
        ("send", send),
        ("history", h),
        ("GET /rooms", r["get_rooms"]),
        ("search", s),
    ):
        if phase.get("db_per_request"):
            ops = ", ".join(
                f"{o['op']} {o['calls']:g}x {o['ms']} ms" for o in phase["db_per_request"]
            )
            lines.append(f"database wait per {label} request (calls x summed ms): {ops}")
    for proc, c in send["cpu"].items():
        lines.append(
            f"{proc} cpu during sends: {c['cpu_s']} s ({c['core_pct']}% of one core), "
            f"{c['ms_per_message']} ms/message"
        )
    lines.append(f"bench client cpu during sends s: {send['client_cpu_s']}")
    size = r.get("db_size") or {}
    if size.get("bytes"):
        lines.append(
            f"database size: {size['bytes'] / 2**20:.1f} MiB, "
            f"{r['db_bytes_per_message']} bytes/message"
        )
        if "parts_mib" in size:
            lines.append(
                "  largest parts MiB: "
                + ", ".join(f"{k} {v}" for k, v in size["parts_mib"].items())
            )
        if "dbstats" in size:
            st = size["dbstats"]
            lines.append(
                f"  dbStats: dataSize {st.get('dataSize')}, indexSize {st.get('indexSize')} "
                "(the stand-in's BSON sizes of all collections; it keeps no real indexes, and "
                "says nothing of what WiredTiger would store)"
            )
    else:
        lines.append(f"database size: n/a ({size.get('error', 'unknown')})")
    missed = [k for k, t in r["targets"].items() if not t["met"]]
    lines.append(f"targets missed: {', '.join(missed) or 'none'}")
    lines.append(f"failed checks: {len(r['problems'])}")
    lines += [f"problem: {p}" for p in r["problems"]]
    emit(lines, r)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="FastSock scale benchmark (seeded database)")
    p.add_argument("--backend", choices=("sqlite", "mongo"), default="sqlite")
    p.add_argument("--messages", type=int, default=100_000, help="messages to seed")
    p.add_argument("--rooms", type=int, default=50, help="rooms the messages spread over")
    p.add_argument("--users", type=int, default=300, help="seeded users (2..1000)")
    p.add_argument("--reaction-pct", type=float, default=2.0, help="%% of messages with reactions")
    p.add_argument(
        "--seed-concurrency", type=int, default=0, help="store calls in flight (500; mongo: 1)"
    )
    p.add_argument("--sends", type=int, default=500, help="messages sent over the WebSocket")
    p.add_argument("--send-rate", type=float, default=25.0, help="sends per second, paced")
    p.add_argument("--send-rooms", type=int, default=5, help="busiest rooms sent to, 1 socket each")
    p.add_argument(
        "--history-requests", type=int, default=200, help="newest pages, and as many deep pages"
    )
    p.add_argument("--rooms-requests", type=int, default=100, help="GET /rooms requests")
    p.add_argument("--search-repeat", type=int, default=5, help="times each query runs per user")
    p.add_argument("--data-dir", help="seed into this (new) directory and keep it")
    p.add_argument("--strict", action="store_true", help="exit 1 also when a target is missed")
    # No --url: the database is seeded before the server starts.
    p.add_argument("--port", type=int, help="port for the started server (default: free)")
    p.add_argument("--timeout", type=float, default=7200.0, help="overall limit in seconds")
    args = p.parse_args(argv)
    if args.messages < 1 or args.rooms < 1 or args.users < 2 or args.sends < 1:
        p.error("--messages, --rooms, --sends must be >= 1 and --users >= 2")
    if args.users > 1000:
        p.error("--users must be <= 1000 (the room size limit: two rooms hold everyone)")
    if args.send_rate <= 0 or args.send_rooms < 1:
        p.error("--send-rate must be > 0 and --send-rooms >= 1")
    if not args.seed_concurrency:
        # SQLite: enough queued writes for big group commits. The stand-in serves one request
        # at a time, and one that waits > 2 s behind others fails (the driver's heartbeat).
        args.seed_concurrency = 500 if args.backend == "sqlite" else 1
    return args


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwind through the finally that stops the server


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    server = ServerProcess(args.port or free_port())
    tmp = None
    if args.data_dir:
        data_dir = Path(args.data_dir)
        if data_dir.exists() and any(data_dir.iterdir()):
            print(f"error: --data-dir {data_dir} is not empty", file=sys.stderr)
            return 1
    else:
        tmp = tempfile.TemporaryDirectory(prefix="fastsock-scale-")
        data_dir = Path(tmp.name) / "data"
    try:
        result = asyncio.run(asyncio.wait_for(run(args, server, data_dir), args.timeout))
    except (BenchError, TimeoutError) as exc:
        print(f"error: {str(exc) or f'timed out after {args.timeout} s'}", file=sys.stderr)
        return 1
    finally:
        server.stop()
        if tmp is not None:
            tmp.cleanup()
    report(result)
    missed = any(not t["met"] for t in result["targets"].values())
    return 1 if result["problems"] or (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
