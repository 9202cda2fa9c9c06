"""Rooms and membership. `require_member` is the one authorization point for everything
room-scoped: history, sending, editing, deleting, reading, receipts, typing, reactions,
members and room events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from typing import Any

from fastsock.errors import Conflict, Forbidden, InvalidRequest, NotAMember, NotFound
from fastsock.services import fields, replies
from fastsock.services.clock import now
from fastsock.services.events import EventSink
from fastsock.services.limits import Throttles
from fastsock.services.locks import KeyedLock, LocalLocks
from fastsock.services.members import MemberCache
from fastsock.services.schemas import validate
from fastsock.services.system_lines import HistoryLine, line, room_updated
from fastsock.services.unread import UnreadCounts
from fastsock.services.views import member_view, membership_fields, room_view
from fastsock.store import Duplicate, Store

Doc = dict[str, Any]

ADMIN, MEMBER = "admin", "member"
# Told (room_id, user_id) after a member left or was removed (group calls evict them).
MemberRemoved = Callable[[str, str], Awaitable[None]]
# Told (room_id, added user ids, removed user ids) after any change of a room's members or
# their roles (the cluster bus invalidates the other nodes' member caches).
MembersChanged = Callable[[str, list[str], list[str]], Awaitable[None]]
MAX_MEMBERS = 1000
PUBLIC_LIMIT = 50
REMOVED = "you were removed from this group; an admin can let you back"


class Rooms:
    def __init__(
        self, store: Store, sink: EventSink, throttles: Throttles, unread_window_s: float
    ) -> None:
        self.store = store
        self.sink = sink
        self.throttles = throttles
        self.change_lock: KeyedLock = LocalLocks()  # cluster mode: across nodes (join_cluster)
        self.on_member_removed: list[MemberRemoved] = []
        self.members = MemberCache(self._load_members)
        self.unread = UnreadCounts(store, sink, self.members, unread_window_s)
        self.on_members_changed: list[MembersChanged] = []
        self.on_history_line: list[HistoryLine] = []

    # --- the authorization point ----------------------------------------------------------

    async def require_member(self, user_id: str, room_id: Any) -> Doc:
        """The caller's membership of the room (`room_id`, `user_id`, `role`; the read pointer
        is the store's), or 403 not_a_member. A room that does not exist answers the same, so
        non-members learn nothing about which rooms exist. Answered from the member cache,
        which every membership change invalidates (`_members_changed`)."""
        room_id = fields.object_id(room_id, "room_id")
        role = (await self.members.of(room_id)).get(user_id)
        if role is None:
            raise NotAMember("you are not a member of this room")
        return {"room_id": room_id, "user_id": user_id, "role": role}

    async def require_admin(self, user_id: str, room_id: Any) -> Doc:
        membership = await self.require_member(user_id, room_id)
        if membership["role"] != ADMIN:
            raise Forbidden("only room admins can do this")
        return membership

    async def require_admin_now(self, user_id: str, room_id: str) -> None:
        """`require_admin` again inside `changing_history`, from the store, not the member
        cache: every admin action checks it there, so a demotion or removal that finished
        while the action waited for the lock refuses it."""
        membership = await self.store.memberships.get(room_id, user_id)
        if membership is None:
            raise NotAMember("you are not a member of this room")
        if membership["role"] != ADMIN:
            raise Forbidden("only room admins can do this")

    async def publish(
        self,
        room_id: str,
        type_: str,
        data: Doc,
        *,
        only: set[str] | None = None,
        exclude: str | None = None,
        **kw: Any,
    ) -> None:
        """Send a room event to the room's current members (narrowed to `only`, without
        `exclude`), never to anyone else."""
        members = await self.members.of(room_id)
        if only is None and exclude is None:
            recipients = list(members)
        else:
            recipients = [m for m in members if m != exclude and (only is None or m in only)]
        await self.sink.publish(recipients, type_, data, room_id=room_id, **kw)

    async def _members_changed(self, room_id: str, added: list[str], removed: list[str]) -> None:
        """Every change of a room's members or of their roles ends here, once stored: the
        member cache forgets the room, then each `on_members_changed` hook is told."""
        self.members.invalidate(room_id)
        for hook in self.on_members_changed:
            await hook(room_id, added, removed)

    @asynccontextmanager
    async def changing_members(
        self, room_id: str, added: list[str], removed: list[str]
    ) -> AsyncIterator[None]:
        """Around membership writes that fill in `added` and `removed`: `_members_changed`
        after them, also when one failed (it may have been stored all the same)."""
        try:
            yield
        finally:
            await self._members_changed(room_id, added, removed)

    def changing_history(self, room_id: str) -> AbstractAsyncContextManager[None]:
        """Serialises a room's changes that leave a history line, from the write to the line,
        so the lines come in the order members heard the changes' events. Another key of
        `change_lock` (so across nodes in cluster mode): the line itself takes the room's."""
        return self.change_lock.hold(f"history:{room_id}")

    @asynccontextmanager
    async def admin_change(self, user_id: str, room_id: str) -> AsyncIterator[None]:
        """An admin's change of the room: `changing_history`, with the caller's role checked
        again inside it (`require_admin_now`)."""
        async with self.changing_history(room_id):
            await self.require_admin_now(user_id, room_id)
            yield

    async def history_line(self, room_id: str, actor_id: str, system: Doc) -> None:
        for hook in self.on_history_line:
            await hook(room_id, actor_id, system)

    async def _load_members(self, room_id: str) -> dict[str, str]:
        return {str(m["user_id"]): m["role"] for m in await self.store.memberships.of_room(room_id)}

    @asynccontextmanager
    async def change(self, room_id: str, activity_at: datetime | None = None) -> AsyncIterator[int]:
        """Reserve the room's next change version for the one write made inside the block.

        Changes to a room are serialised here so versions become visible in order: a client
        syncing with `changed_after=V` never sees V+1 before V. `change_lock` is per process on
        one node, and across nodes in cluster mode (503 `unavailable` when it cannot be had;
        docs/architecture.md)."""
        async with self.change_lock.hold(room_id):
            yield await self.store.rooms.next_version(room_id, activity_at)

    # --- reading --------------------------------------------------------------------------

    async def view(self, room: Doc) -> Doc:
        room_id = str(room["_id"])
        member_ids = await self.store.memberships.member_ids(room_id)
        # Only group rooms hold group calls (a 1:1 call is never shown as the room's call).
        call = await self.store.calls.live_group(room_id) if room["kind"] == "group" else None
        return room_view(room, member_ids, call)

    async def room_doc(self, room_id: str) -> Doc:
        room = await self.store.rooms.get(room_id)
        if room is None:  # a membership without its room: treat as gone
            raise NotFound("no such room")
        return room

    async def get(self, user_id: str, room_id: Any) -> Doc:
        """The room with every member's role, read and delivered pointers (the ticks of every
        loaded message: one request per room), from one memberships query however many."""
        room_id = fields.object_id(room_id, "room_id")
        await self.require_member(user_id, room_id)
        room = await self.view(await self.room_doc(room_id))
        members = await self.store.memberships.of_room(room_id)
        membership = next((m for m in members if str(m["user_id"]) == user_id), None)
        if membership is None:  # left meanwhile
            raise NotAMember("you are not a member of this room")
        room["members"] = [member_view(m) for m in members]
        return {**room, **membership_fields(membership)}

    async def list_for(self, user_id: str) -> list[Doc]:
        memberships = await self.store.memberships.for_user(user_id)
        rooms = {
            str(r["_id"]): r
            for r in await self.store.rooms.many(str(m["room_id"]) for m in memberships)
        }
        # A membership without its room is left out, as `room_doc` treats it as gone.
        listed = [(m, rooms[str(m["room_id"])]) for m in memberships if str(m["room_id"]) in rooms]
        # Three store calls for the whole list, not three per room.
        groups = [room_id for room_id, r in rooms.items() if r["kind"] == "group"]
        members, summaries, calls = await asyncio.gather(
            self.store.memberships.member_ids_of(list(rooms)),
            self.store.messages.summaries(
                user_id, {str(m["room_id"]): m.get("last_read_message_id") for m, _ in listed}
            ),
            self.store.calls.live_groups_in(groups),
        )
        # What the last messages reply to: one more store call, only if one is a reply.
        lasts = await replies.views(self.store, [s[2] for s in summaries.values() if s[2]])
        last_views = {v["room_id"]: v for v in lasts}
        out = []
        for membership, room in listed:
            room_id = str(room["_id"])
            unread, mentions, _ = summaries[room_id]
            out.append(
                {
                    **room_view(room, members[room_id], calls.get(room_id)),
                    **membership_fields(membership),
                    "unread_count": unread,
                    "mention_count": mentions,
                    "last_message": last_views.get(room_id),
                }
            )
        out.sort(key=lambda r: r["last_activity_at"], reverse=True)
        return out

    async def public(self, query: Doc) -> list[Doc]:
        q = validate("rooms.public", query)["q"]
        rooms = await self.store.rooms.public(q, PUBLIC_LIMIT)
        counts = await asyncio.gather(*(self.store.memberships.count(str(r["_id"])) for r in rooms))
        return [
            {"id": str(r["_id"]), "name": r["name"], "member_count": c}
            for r, c in zip(rooms, counts, strict=True)
        ]

    async def contacts_of(self, user_id: str) -> set[str]:
        """Everyone who shares a room with the user (who sees their presence)."""
        return await self.store.memberships.co_members(user_id)

    # --- creating -------------------------------------------------------------------------

    async def create_group(self, user_id: str, data: Doc) -> Doc:
        data = validate("room.create", data)
        member_ids = [m for m in data["member_ids"] if m != user_id]
        await self.throttles.check("invite", user_id, cost=max(1, len(member_ids)))
        await self._require_users(member_ids, "member_ids")
        at = now()
        room = await self.store.rooms.create(
            {
                "kind": "group",
                "name": data["name"],
                "private": data["private"],
                "dm_key": None,
                "created_by": user_id,
                "created_at": at,
                "last_activity_at": at,
                "version": 0,
            },
            [(user_id, ADMIN), *((m, MEMBER) for m in member_ids)],
            at,
        )
        room_id = room["_id"]
        await self._members_changed(room_id, [user_id, *member_ids], [])
        view = await self.view(room)
        await self.publish(room_id, "room.created", {"room": view})
        return view

    async def direct(self, user_id: str, data: Doc) -> tuple[Doc, bool]:
        """Get or create the DM with another user; (room, created)."""
        other = validate("room.direct", data)["user_id"]
        if other == user_id:
            raise InvalidRequest("a direct message needs another user", field="user_id")
        await self._require_users([other], "user_id")
        dm_key = ":".join(sorted((user_id, other)))
        room = await self.store.rooms.by_dm_key(dm_key)
        created = False
        if room is None:
            await self.throttles.check("invite", user_id)
            at = now()
            doc = {
                "kind": "direct",
                "name": None,
                "private": True,
                "dm_key": dm_key,
                "created_by": user_id,
                "created_at": at,
                "last_activity_at": at,
                "version": 0,
            }
            try:
                room = await self.store.rooms.create(doc, [(user_id, MEMBER), (other, MEMBER)], at)
                created = True
            except Duplicate:  # the other user created it at the same moment
                room = await self.store.rooms.by_dm_key(dm_key)
                assert room is not None
        room_id = room["_id"]
        if created:
            await self._members_changed(room_id, [user_id, other], [])
        view = await self.view(room)
        if created:
            await self.publish(room_id, "room.created", {"room": view})
        return view, created

    # --- changing -------------------------------------------------------------------------

    async def update(self, user_id: str, room_id: Any, data: Doc) -> Doc:
        room_id = fields.object_id(room_id, "room_id")
        changes = {k: v for k, v in validate("room.update", data).items() if v is not None}
        await self.require_admin(user_id, room_id)
        async with self.admin_change(user_id, room_id):
            room = await self.room_doc(room_id)
            self.require_group(room)
            updated = await self.store.rooms.update(room_id, changes)
            assert updated is not None
            view = await self.view(updated)
            await self.publish(room_id, "room.updated", {"room": view})
            for system in room_updated(user_id, room, updated):
                await self.history_line(room_id, user_id, system)
        return view

    async def add_members(self, user_id: str, room_id: Any, data: Doc) -> Doc:
        room_id = fields.object_id(room_id, "room_id")
        user_ids = validate("room.members.add", data)["user_ids"]
        await self.require_admin(user_id, room_id)
        room = await self.room_doc(room_id)
        self.require_group(room)
        await self.throttles.check("invite", user_id, cost=len(user_ids))
        await self._require_users(user_ids, "user_ids")
        return await self._add(room, user_id, user_ids, joining=False)

    async def join(self, user_id: str, room_id: Any) -> Doc:
        room_id = fields.object_id(room_id, "room_id")
        room = await self.store.rooms.get(room_id)
        if room is None or room["kind"] != "group" or room["private"]:
            # Private rooms are invite-only; answer like a missing room so they stay hidden.
            raise NotFound("no such public room")
        return await self._add(room, user_id, [user_id], joining=True)

    async def _add(self, room: Doc, actor_id: str, user_ids: list[str], *, joining: bool) -> Doc:
        """Add the users (`actor_id` joining alone, or an admin adding them), then tell the
        room and leave a history line, which the new members get too. New members start
        caught up: their read pointer at the room's newest message (no old unread, no old
        mentions)."""
        room_id = str(room["_id"])
        async with self.changing_history(room_id):
            # Under the lock, which a removal (writing the ban) and a demotion hold too: one
            # that finished while this waited counts.
            if not joining:
                await self.require_admin_now(actor_id, room_id)
            elif await self.store.bans.get(room_id, actor_id) is not None:
                raise Forbidden(REMOVED)
            if await self.store.memberships.count(room_id) + len(user_ids) > MAX_MEMBERS:
                raise Conflict(f"a room holds at most {MAX_MEMBERS} members")
            at = now()
            if not joining:  # an admin adding people lets the removed ones back
                await self.store.bans.remove(room_id, user_ids)
            newest = await self.store.messages.latest_visible(room_id)
            read_up_to = None if newest is None else str(newest["_id"])
            added: list[str] = []
            async with self.changing_members(room_id, added, []):
                for u in user_ids:
                    if await self.store.memberships.add(room_id, u, MEMBER, at, read_up_to):
                        added.append(u)
            view = await self.view(room)
            if added:
                await self.publish(room_id, "room.member_added", {"room": view, "user_ids": added})
                event = "member_joined" if added == [actor_id] else "member_added"
                await self.history_line(room_id, actor_id, line(event, actor_id, added))
        return view

    async def remove_member(self, user_id: str, room_id: Any, target: Any) -> None:
        """Admins remove anyone; anyone may remove themselves (leave)."""
        room_id = fields.object_id(room_id, "room_id")
        target = fields.object_id(target, "user_id")
        membership = await self.require_member(user_id, room_id)
        room = await self.room_doc(room_id)
        self.require_group(room)
        if target != user_id and membership["role"] != ADMIN:
            raise Forbidden("only room admins can remove other members")
        async with self.changing_history(room_id):
            if target != user_id:
                await self.require_admin_now(user_id, room_id)
            if not await self._remove(user_id, room, target):
                return  # removed concurrently: nothing more to announce
        for hook in self.on_member_removed:
            await hook(room_id, target)

    async def _remove(self, user_id: str, room: Doc, target: str) -> bool:
        """Remove the member, tell the room (the removed user once, then nothing more from
        it) and leave a history line for those who stay; False when already gone."""
        room_id = str(room["_id"])
        if await self.store.memberships.get(room_id, target) is None:
            raise NotFound("that user is not a member")
        if target != user_id:  # removed by an admin: banned from rejoining (moderation.py)
            await self.store.bans.add(room_id, target, user_id, now())
        removed: list[str] = []
        async with self.changing_members(room_id, [], removed):  # before anyone is told
            if await self.store.memberships.remove(room_id, target):
                removed.append(target)
        if not removed:
            return False
        remaining = await self.store.memberships.of_room(room_id)
        if remaining and not any(m["role"] == ADMIN for m in remaining):
            # The last admin left: the longest-standing member takes over.
            async with self.changing_members(room_id, [], []):  # a role: nobody came or went
                await self.store.memberships.set_role(room_id, str(remaining[0]["user_id"]), ADMIN)
        view = await self.view(room)
        event = {"room": view, "user_id": target, "actor_id": user_id}
        await self.sink.publish(
            [str(m["user_id"]) for m in remaining] + [target], "room.member_removed", event
        )
        if target == user_id:
            system = line("member_left", user_id, [user_id])
        else:  # removing another member bans them (moderation)
            system = line("member_removed", user_id, [target], banned=True)
        await self.history_line(room_id, user_id, system)
        return True

    # --- reading position -----------------------------------------------------------------

    async def mark_read(self, user_id: str, data: Doc) -> Doc:
        data = validate("message.read", data)
        await self.throttles.check("receipt", user_id)
        return await self.advance_read(user_id, data["room_id"], data["message_id"])

    async def advance_read(self, user_id: str, room_id: str, message_id: str) -> Doc:
        """Move the user's read pointer up to the message (never back) and tell the room."""
        await self.require_member(user_id, room_id)
        message = await self.store.messages.get(message_id)
        if message is None or str(message["room_id"]) != room_id:
            raise NotFound("no such message in this room")
        at = now()
        moved = await self.store.memberships.advance_read(room_id, user_id, message_id, at)
        membership = await self.store.memberships.get(room_id, user_id)
        if membership is None:  # left the room meanwhile
            raise NotAMember("you are not a member of this room")
        state = {"room_id": room_id, **membership_fields(membership)}
        del state["role"]
        if moved:
            event = {
                "room_id": room_id,
                "user_id": user_id,
                "message_id": message_id,
                "read_at": state["last_read_at"],
            }
            await self.publish(room_id, "message.read", event)
        unread, mentions = await self.unread.reader(room_id, user_id, tell=moved)
        return {**state, "unread_count": unread, "mention_count": mentions}

    # --- helpers --------------------------------------------------------------------------

    async def _require_users(self, user_ids: list[str], field: str) -> None:
        """Refuse ids of no user, naming the request field that held them."""
        found = {str(u["_id"]) for u in await self.store.users.many(user_ids)}
        missing = [u for u in user_ids if u not in found]
        if missing:
            raise InvalidRequest(f"no such user {missing[0]}", field=field)

    @staticmethod
    def require_group(room: Doc) -> None:
        if room["kind"] != "group":
            raise Forbidden("direct message rooms cannot be changed")
