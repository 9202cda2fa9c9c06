"""Moderation: group admins' roles and ban lists, server admins, and deactivated accounts.

- Roles: a group admin makes members admins and back; a group always keeps one admin.
- Bans: an admin removing another member bans them (rooms.py `remove_member`), so they cannot
  join the public group again (`rooms.join`) until an admin lifts the ban here or adds them
  back (`rooms._add`). Leaving bans nothing.
- Server admins (server_admins.py): the first account registered, and whoever `fastsock
  admin grant` named. They cannot deactivate each other (revoke first), nor the first account.
- Deactivation (by a server admin): the account's logins are revoked in the store and in
  memory, and every socket of it closes with 4403 on every node (the hub's `close_user`);
  from then on its access tokens are refused by the revoked-login check every request already
  makes (accounts.py: no extra database read), after a restart too (the store holds the
  revocations), and logging in is refused. Its messages and memberships stay."""

from __future__ import annotations

from typing import Any

from fastsock.errors import Conflict, Forbidden, NotFound
from fastsock.services import fields
from fastsock.services.accounts import Accounts
from fastsock.services.clock import iso, now
from fastsock.services.rooms import ADMIN, Rooms
from fastsock.services.schemas import validate
from fastsock.services.system_lines import line
from fastsock.store import Store

Doc = dict[str, Any]


class Moderation:
    def __init__(self, store: Store, rooms: Rooms, accounts: Accounts) -> None:
        self.store = store
        self.rooms = rooms
        self.accounts = accounts

    # --- group roles ----------------------------------------------------------------------

    async def set_role(self, user_id: str, room_id: Any, target: Any, data: Doc) -> Doc:
        """Make a member an admin or a member again; the room as GET /rooms/{id} shows it."""
        room_id = fields.object_id(room_id, "room_id")
        target = fields.object_id(target, "user_id")
        role = validate("room.member.update", data)["role"]
        await self.rooms.require_admin(user_id, room_id)
        room = await self.rooms.room_doc(room_id)
        self.rooms.require_group(room)
        async with self.rooms.admin_change(user_id, room_id):
            roles = {
                str(m["user_id"]): m["role"] for m in await self.store.memberships.of_room(room_id)
            }
            if target not in roles:
                raise NotFound("that user is not a member")
            if roles[target] != role:
                if role != ADMIN and list(roles.values()).count(ADMIN) == 1:
                    raise Conflict("a group needs an admin: make someone else admin first")
                async with self.rooms.changing_members(room_id, [], []):  # a role changed
                    await self.store.memberships.set_role(room_id, target, role)
                event = {"room": await self.rooms.view(room), "user_id": target, "role": role}
                await self.rooms.publish(room_id, "room.updated", event)
                system = line("role_changed", user_id, [target], role=role)
                await self.rooms.history_line(room_id, user_id, system)
        return await self.rooms.get(user_id, room_id)

    # --- bans -----------------------------------------------------------------------------

    async def bans(self, user_id: str, room_id: Any) -> list[Doc]:
        room_id = fields.object_id(room_id, "room_id")
        await self.rooms.require_admin(user_id, room_id)
        return [
            {
                "user_id": str(ban["user_id"]),
                "banned_by": str(ban["banned_by"]),
                "banned_at": iso(ban["banned_at"]),
            }
            for ban in await self.store.bans.of_room(room_id)
        ]

    async def unban(self, user_id: str, room_id: Any, target: Any) -> None:
        """Let a removed member join again (404 when they are not banned)."""
        room_id = fields.object_id(room_id, "room_id")
        target = fields.object_id(target, "user_id")
        await self.rooms.require_admin(user_id, room_id)
        async with self.rooms.admin_change(user_id, room_id):
            if not await self.store.bans.remove(room_id, [target]):
                raise NotFound("that user is not banned from this group")
            await self.rooms.history_line(
                room_id, user_id, line("member_unbanned", user_id, [target])
            )

    # --- accounts -------------------------------------------------------------------------

    async def deactivate(self, user_id: str, target: Any) -> Doc:
        """End the account's sessions everywhere and refuse it from now on."""
        doc = await self._account_of(user_id, target)
        target = str(doc["_id"])
        if target == user_id:
            raise Conflict("you cannot deactivate your own account")
        admins = self.accounts.server_admins
        if await admins.is_first(doc):
            raise Conflict("the first account cannot be deactivated")
        if await admins.is_admin(doc):
            raise Conflict(
                "that account is a server admin: revoke it first with"
                f" `fastsock admin revoke {doc['username']}`"
            )
        if doc.get("deactivated_at") is None:
            updated = await self.store.users.update(target, {"deactivated_at": now()})
            doc = updated or doc
        # Also when it was deactivated already: a login that raced the first call ends too.
        families = await self.store.tokens.revoke_user(target)
        self.accounts.end_account(target, families)
        return await self._announce(doc)

    async def reactivate(self, user_id: str, target: Any) -> Doc:
        doc = await self._account_of(user_id, target)
        if doc.get("deactivated_at") is not None:
            updated = await self.store.users.update(str(doc["_id"]), {"deactivated_at": None})
            doc = updated or doc
        return await self._announce(doc)

    async def _account_of(self, user_id: str, target: Any) -> Doc:
        """The target account, once the caller proved a server admin."""
        target = fields.object_id(target, "user_id")
        me = await self.store.users.get(user_id)
        if me is None or not await self.accounts.server_admins.is_admin(me):
            raise Forbidden("only server admins can do this")
        doc = await self.store.users.get(target)
        if doc is None:
            raise NotFound("no such user")
        return doc

    async def _announce(self, doc: Doc) -> Doc:
        """`user.updated` (with `deactivated`) to everyone who shows the user."""
        view = self.accounts.view(doc)
        await self.accounts.announce(str(doc["_id"]), view)
        return view
