"""The repository interface the services call; `store/sqlite/` and `store/mongo/` implement it.

The contract every backend keeps, so services never know which one they talk to:
- Documents are plain dicts. Every id (`_id` and every `*_id` field, also inside `read_log`) is
  a 24-character lowercase hex string (an ObjectId's hex; new ids come from `ids.new_id`), so
  ids order by creation time as strings.
- Times are timezone-aware UTC datetimes with millisecond precision (what BSON dates keep).
- A message's `reactions` is `{emoji: [user_id, ...]}`, emoji in the order they were first
  added and users in the order they reacted; how it is stored is the backend's business (never
  as field names that are emoji).
- A write refused by a unique key raises `Duplicate`; a database that cannot be reached raises
  an exception for which `is_unavailable` is true.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol

Doc = dict[str, Any]
Page = tuple[list[Doc], bool]  # documents, and whether more lie beyond them

READ_LOG_MAX = 100  # pointer moves a membership remembers, for read receipts
# Unread counts look at a room's newest this many messages (MessagesRepo): a member far behind
# costs no more to count than that, and sees "100" (clients show "99+").
UNREAD_WINDOW = 100


class Duplicate(Exception):
    """A unique key refused a write; the argument names the key."""


class UsersRepo(Protocol):
    async def insert(self, doc: Doc) -> Doc:
        """Assigns `_id`; Duplicate("username") when the name is taken."""

    async def get(self, user_id: str) -> Doc | None: ...
    async def by_username(self, username: str) -> Doc | None: ...

    async def by_usernames(self, usernames: list[str]) -> list[Doc]:
        """The accounts with these (lowercase) usernames, one indexed lookup; unknown names
        are left out, in no particular order."""

    async def many(self, user_ids: Iterable[str]) -> list[Doc]: ...

    async def search(self, query: str, limit: int) -> list[Doc]:
        """Case-insensitive prefix match on username or display name, by username; accounts
        not deactivated only."""

    async def update(self, user_id: str, changes: Doc) -> Doc | None: ...

    async def oldest(self) -> Doc | None:
        """The first account registered (the lowest id), a server admin by that alone."""


class TokensRepo(Protocol):
    """Refresh tokens by jti (`_id`, not an ObjectId); one login's tokens share a `family`."""

    async def insert(
        self, jti: str, user_id: str, family: str, issued_at: datetime, expires_at: datetime
    ) -> None: ...

    async def get(self, jti: str) -> Doc | None:
        """None for an unknown or expired token."""

    async def mark_used(self, jti: str, at: datetime) -> bool:
        """Atomically consume a live token; False if it was already used or revoked."""

    async def family_revoked(self, family: str) -> bool: ...
    async def revoke_family(self, family: str) -> None: ...

    async def revoke_user(self, user_id: str) -> list[str]:
        """Revoke every live login of the user; returns their families."""


class BansRepo(Protocol):
    """Who may not rejoin a group: `{room_id, user_id, banned_by, banned_at}`, one per pair."""

    async def add(self, room_id: str, user_id: str, banned_by: str, at: datetime) -> None:
        """Insert or replace (banned again: the latest ban counts)."""

    async def remove(self, room_id: str, user_ids: list[str]) -> list[str]:
        """Lift the users' bans; returns whose were lifted."""

    async def get(self, room_id: str, user_id: str) -> Doc | None: ...

    async def of_room(self, room_id: str) -> list[Doc]:
        """The room's bans, oldest first."""


class RoomsRepo(Protocol):
    async def create(self, doc: Doc, members: list[tuple[str, str]], at: datetime) -> Doc:
        """Insert a room and its `(user_id, role)` memberships as one change: nobody ever
        sees the room without its members. Duplicate("dm_key") when the DM exists already."""

    async def get(self, room_id: str) -> Doc | None: ...
    async def by_dm_key(self, dm_key: str) -> Doc | None: ...
    async def many(self, room_ids: Iterable[str]) -> list[Doc]: ...

    async def public(self, query: str, limit: int) -> list[Doc]:
        """Public groups whose name contains `query` (any case), most recently active first."""

    async def update(self, room_id: str, changes: Doc) -> Doc | None: ...

    async def next_version(self, room_id: str, activity_at: datetime | None = None) -> int:
        """Count one change in the room; returns its new version (0 for no such room).
        `activity_at` (new messages only) also moves the room up its members' lists."""


class MembershipsRepo(Protocol):
    async def add(
        self, room_id: str, user_id: str, role: str, at: datetime, read_up_to: str | None = None
    ) -> bool:
        """Idempotent; True when the user was not a member before. `read_up_to` (a message id):
        the new member starts caught up, the read pointer there (at `at`) instead of none (the
        delivered one follows: views.delivered_pointer); a membership that exists keeps its
        own."""

    async def remove(self, room_id: str, user_id: str) -> bool: ...
    async def get(self, room_id: str, user_id: str) -> Doc | None: ...
    async def for_user(self, user_id: str) -> list[Doc]: ...

    async def of_room(self, room_id: str) -> list[Doc]:
        """Oldest member first; members who joined together by user id."""

    async def member_ids(self, room_id: str) -> list[str]:
        """In the order of `of_room`."""

    async def member_ids_of(self, room_ids: list[str]) -> dict[str, list[str]]:
        """`member_ids` of each room in one call (for lists of rooms): every room asked for is
        a key, a room without members (or no such room) maps to []; no rooms, no database call."""

    async def co_members(self, user_id: str) -> set[str]:
        """Everyone who shares at least one room with the user, the user left out: one
        database call."""

    async def count(self, room_id: str) -> int: ...
    async def set_role(self, room_id: str, user_id: str, role: str) -> None: ...

    async def advance_read(self, room_id: str, user_id: str, message_id: str, at: datetime) -> bool:
        """Move the read pointer forward to `message_id`, never back, and log the move in
        `read_log` (`[message_id, at]` pairs, the last READ_LOG_MAX). True if it moved."""

    async def advance_delivered(self, user_id: str, newest: dict[str, str], at: datetime) -> None:
        """For each room of `newest` (room id -> message id) the user is in, move the user's
        delivered pointer (`last_delivered_message_id`, `last_delivered_at`) forward to the
        message, never back. One database call for all the rooms; none for no rooms."""


class MessagesRepo(Protocol):
    """Messages order by `_id` within a room; `(sender_id, client_msg_id)` is unique.

    Unread, for a member: live messages after their read pointer, by others, not history
    lines (`type: "system"`), among the room's newest UNREAD_WINDOW such messages. Mentioning
    them: unread ones however far back (no window) with `mention_room` true or their id in
    `mentions` (a list of user id strings)."""

    async def insert(self, doc: Doc) -> Doc:
        """Assigns `_id`; Duplicate("client_msg_id") for a second send of the same id."""

    async def get(self, message_id: str) -> Doc | None: ...
    async def by_client_id(self, sender_id: str, client_msg_id: str) -> Doc | None: ...

    async def page(
        self, room_id: str, *, before: str | None, after: str | None, limit: int
    ) -> Page:
        """Newest first. Without `after`: the newest messages older than `before`; with it,
        the oldest messages newer than `after` (so paging forward never skips one)."""

    async def latest_visible(self, room_id: str) -> Doc | None: ...

    async def count_unread(self, room_id: str, user_id: str, after: str | None) -> int:
        """Unread messages newer than `after` (all of them when None)."""

    async def unread_counts(self, room_id: str, user_ids: list[str]) -> dict[str, tuple[int, int]]:
        """For each of these users who is a member of the room, in one database call:
        `(unread, mentioning them)` after their read pointer. Non-members are not keys; no
        users, no database call."""

    async def summaries(
        self, user_id: str, read_pointers: dict[str, str | None]
    ) -> dict[str, tuple[int, int, Doc | None]]:
        """For each room of `read_pointers` (room id -> the user's last read message id, or
        None), in one call: `(unread, mentioning the user, latest_visible(room))` after the
        pointer. Every room asked for is a key; no rooms, no database call."""

    async def update(self, message_id: str, expect: Doc, changes: Doc) -> Doc | None:
        """Set `changes` if the message still has the field values in `expect`; returns the
        new document, or None when it did not match."""

    async def changed(self, room_id: str, after_version: int, limit: int) -> Page:
        """Messages whose version is above `after_version`, lowest version first."""

    async def many(self, message_ids: list[str]) -> list[Doc]: ...

    async def search(
        self, room_ids: list[str], words: list[str], *, before: str | None, limit: int
    ) -> Page:
        """Live messages in these rooms matching `words` (as store.words.search_words gives
        them; none match nothing), newest first. docs/api.md says how each backend matches."""

    async def add_reaction(
        self, message_id: str, emoji: str, user_id: str, version: int, max_kinds: int
    ) -> Doc | None:
        """Add the user's reaction; None if it was there already, the message is deleted, or
        it would exceed `max_kinds` distinct emoji."""

    async def remove_reaction(
        self, message_id: str, emoji: str, user_id: str, version: int
    ) -> Doc | None:
        """Remove the user's reaction (an emoji nobody uses any more frees its slot); None if
        it was not there."""

    async def shares_upload(self, upload_id: str, room_ids: list[str] | None) -> bool:
        """Does a live message (in one of these rooms, if given) carry the upload?"""


class DeliveriesRepo(Protocol):
    async def record(self, user_id: str, message_ids: list[str], at: datetime) -> set[str]:
        """Record first deliveries; returns the ids that had not been recorded before."""

    async def for_message(self, message_id: str) -> dict[str, datetime]: ...


class UploadsRepo(Protocol):
    async def insert(self, upload_id: str, doc: Doc) -> Doc: ...
    async def get(self, upload_id: str) -> Doc | None: ...
    async def owned(self, owner_id: str, upload_ids: list[str]) -> list[Doc]: ...
    async def mark(self, upload_ids: list[str], changes: Doc) -> None: ...
    async def unattached_before(self, cutoff: datetime, limit: int) -> list[Doc]: ...
    async def delete_if_unattached(self, upload_id: str) -> bool: ...
    async def update(self, upload_id: str, changes: Doc) -> Doc | None: ...


class CallsRepo(Protocol):
    async def insert(self, doc: Doc) -> Doc:
        """The call's `_id` comes with the document (the live call already has it)."""

    async def update(self, call_id: str, changes: Doc) -> None: ...

    async def page(self, room_id: str, *, before: str | None, limit: int) -> Page:
        """Newest first."""

    # Group calls (`kind: "group"`, `callee_id: None`): `worker_id` is the SFU worker hosting
    # the call, `participant_ids` everyone who took part (join order), `present_ids` who is
    # in it now (lists of id strings), `moved_at` when it last moved to another worker. A room
    # has at most one live (`state: "active"`) group call; every change below is conditional,
    # so of two nodes racing for the same change exactly one wins.

    async def start_group(self, doc: Doc) -> Doc:
        """Insert a live group call (`_id` included); Duplicate("room_id") when the room has
        one already."""

    async def live_group(self, room_id: str) -> Doc | None: ...

    async def live_groups_in(self, room_ids: list[str]) -> dict[str, Doc]:
        """The live group call of each of these rooms that has one (rooms without are not
        keys); no rooms, no database call."""

    async def live_on_worker(self, worker_id: str) -> list[Doc]:
        """Live group calls on this worker, oldest first."""

    async def live_groups(self) -> list[Doc]:
        """Every live group call, oldest first (reconciled at start-up)."""

    async def add_participant(self, call_id: str, user_id: str) -> tuple[Doc | None, bool]:
        """While the call is live, add the user to `participant_ids` (if new) and to
        `present_ids`; returns the call as it now is (None when it is not live) and whether
        the user was not present before."""

    async def remove_participant(self, call_id: str, user_id: str) -> tuple[Doc | None, bool]:
        """Take the user out of `present_ids` if present in the live call; returns the call as
        it now is (None when it is not live) and whether the user was removed."""

    async def move(self, call_id: str, from_worker: str, to_worker: str, at: datetime) -> bool:
        """Move the live call to `to_worker` (setting `moved_at`) if it is still on
        `from_worker`; True if it moved."""

    async def end_group(
        self, call_id: str, ended_at: datetime, duration_s: int, reason: str
    ) -> Doc | None:
        """End the live call (`state: "ended"`, `outcome: "completed"`, `end_reason`, nobody
        present); returns the ended call, or None when it was not live (someone else ended
        it)."""


# The load figures a worker's heartbeat may set (SfuWorkersRepo.heartbeat).
WORKER_LOAD_FIELDS = ("capacity", "peers", "tracks", "rooms", "cpu", "draining")


def worker_load(fields: Doc) -> Doc:
    """`fields` if a heartbeat may set them all, else ValueError (the same on every backend)."""
    if unknown := set(fields) - set(WORKER_LOAD_FIELDS):
        raise ValueError(f"a heartbeat cannot set {sorted(unknown)}")
    return fields


class SfuWorkersRepo(Protocol):
    """The SFU worker registry, `{_id: worker id, url, health_url, version, capacity, state:
    "up"|"lost", peers, tracks, rooms, cpu, draining, pending, registered_at, heartbeat_at}`.
    Ephemeral: `fastsock migrate` does not copy it (workers register again)."""

    async def upsert(self, doc: Doc) -> Doc:
        """Insert the worker, or replace the whole entry of the same `_id`."""

    async def get(self, worker_id: str) -> Doc | None: ...

    async def heartbeat(self, worker_id: str, fields: Doc, at: datetime) -> Doc | None:
        """Set `fields` (WORKER_LOAD_FIELDS only, else ValueError), `heartbeat_at` and
        `pending = 0` on a worker that is up; returns it, or None when it is not (lost or
        unknown)."""

    async def live(self) -> list[Doc]:
        """Workers that are up, by id."""

    async def reserve(self, worker_id: str) -> None:
        """Count one admission sent to the worker (`pending += 1`) until its next heartbeat."""

    async def mark_lost(self, worker_id: str, heartbeat_before: datetime) -> bool:
        """Mark the worker lost if it is up and its last heartbeat is older than
        `heartbeat_before`; True for the one caller that did."""

    async def remove(self, worker_id: str) -> bool: ...

    async def prune(self, before: datetime) -> int:
        """Delete lost workers whose last heartbeat is older than `before`; returns how many."""


# What `fastsock migrate` copies, by collection name, and the fields that key each document
# (documents are exported in this key order, so a copy can resume after the target's last key).
# Not `sfu_workers`: the registry is rebuilt by the workers' next registration.
COLLECTIONS: dict[str, tuple[str, ...]] = {
    "users": ("_id",),
    "refresh_tokens": ("_id",),
    "rooms": ("_id",),
    "memberships": ("user_id", "room_id"),
    "messages": ("_id",),
    "deliveries": ("message_id", "user_id"),
    "uploads": ("_id",),
    "calls": ("_id",),
    "bans": ("room_id", "user_id"),
}


def key_of(collection: str, doc: Doc) -> str:
    """A document's copy key: its key fields joined by ":" (ids have one length, so the joined
    strings order like the field tuples)."""
    return ":".join(str(doc[f]) for f in COLLECTIONS[collection])


class Transfer(Protocol):
    """Bulk copy between backends. Documents are whole and in the contract above (a message
    with its reactions, a membership with its read log, a delivery as
    `{message_id, user_id, delivered_at}`)."""

    async def export(self, collection: str, after: str | None, limit: int) -> list[Doc]:
        """Up to `limit` documents whose key is above `after`, in key order."""

    async def import_many(self, collection: str, docs: list[Doc]) -> None:
        """Insert or replace by key: importing a batch twice changes nothing."""

    async def last_key(self, collection: str) -> str | None: ...
    async def count(self, collection: str) -> int: ...

    async def finish(self) -> None:
        """After a bulk import: let the backend settle (SQLite compacts its search index)."""


class Store(Protocol):
    # Read-only (properties): a backend's repositories are its own classes, which only satisfy
    # these protocols; a settable member would have to be of the protocol's type exactly.
    @property
    def users(self) -> UsersRepo: ...
    @property
    def tokens(self) -> TokensRepo: ...
    @property
    def rooms(self) -> RoomsRepo: ...
    @property
    def memberships(self) -> MembershipsRepo: ...
    @property
    def messages(self) -> MessagesRepo: ...
    @property
    def deliveries(self) -> DeliveriesRepo: ...
    @property
    def uploads(self) -> UploadsRepo: ...
    @property
    def calls(self) -> CallsRepo: ...
    @property
    def sfu_workers(self) -> SfuWorkersRepo: ...
    @property
    def bans(self) -> BansRepo: ...
    @property
    def transfer(self) -> Transfer: ...

    description: str  # for the start-up line, e.g. "embedded database: var/fastsock.db"

    async def prepare(self, timeout_s: float) -> None:
        """Wait for the database, then create or migrate its schema and indexes
        (idempotent)."""

    async def ping(self, timeout_s: float = 2.0) -> bool: ...
    async def close(self) -> None: ...
