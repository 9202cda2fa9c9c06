"""Server admins: the first account registered, and whoever `fastsock admin grant` named.
Depends on the store only (accounts.py, moderation.py and the CLI use it)."""

from __future__ import annotations

from typing import Any

from fastsock.errors import Conflict, NotFound
from fastsock.store import Store

Doc = dict[str, Any]


class ServerAdmins:
    """Who is a server admin: the first account (the oldest user by id, remembered once found:
    users are never deleted; docs/operations.md says why id order) and every account with
    `server_admin` set."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._first: str | None = None

    async def is_first(self, user: Doc) -> bool:
        if self._first is None:
            oldest = await self.store.users.oldest()
            self._first = str(oldest["_id"]) if oldest else None
        return str(user["_id"]) == self._first

    async def is_admin(self, user: Doc) -> bool:
        return bool(user.get("server_admin")) or await self.is_first(user)


async def set_server_admin(store: Store, username: str, grant: bool) -> str:
    """`fastsock admin grant|revoke USERNAME`: what changed, in one line. NotFound for an
    unknown name, Conflict for revoking the first account (a server admin by being first)."""
    user = await store.users.by_username(username.strip().lower())
    if user is None:
        raise NotFound(f"no user named {username!r}")
    if not grant and await ServerAdmins(store).is_first(user):
        raise Conflict(f"{user['username']} is the first account: always a server admin")
    await store.users.update(str(user["_id"]), {"server_admin": grant})
    if grant:
        return f"{user['username']} is now a server admin"
    return f"{user['username']} is no longer a server admin"
