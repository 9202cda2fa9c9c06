"""Accounts: registration, login, token rotation, profiles and the user directory."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from fastsock.errors import Conflict, Forbidden, NotFound, Unauthenticated
from fastsock.services import fields
from fastsock.services.clock import now
from fastsock.services.events import EventSink
from fastsock.services.limits import Throttles, client_key
from fastsock.services.passwords import DUMMY_HASH, PasswordHasher
from fastsock.services.revocations import ExpiringSet
from fastsock.services.schemas import PASSWORD_MAX, validate
from fastsock.services.server_admins import ServerAdmins
from fastsock.services.tokens import ACCESS, REFRESH, TokenCodec
from fastsock.services.uploads import Uploads
from fastsock.services.views import user_view
from fastsock.store import Duplicate, Store

Doc = dict[str, Any]
# How long the store's word that a login was not ended holds (one read per login per period).
CONFIRM_S = 10.0


@dataclass(frozen=True, slots=True)
class Login:
    """Who a valid access token stands for."""

    user_id: str
    family: str | None  # the login (refresh-token family); None in tokens issued before
    expires_at: float  # Unix time


class Accounts:
    def __init__(
        self,
        store: Store,
        sink: EventSink,
        tokens: TokenCodec,
        throttles: Throttles,
        uploads: Uploads,
        hasher: PasswordHasher,
    ) -> None:
        self.uploads = uploads
        self.hasher = hasher
        self.store = store
        self.sink = sink
        self.tokens = tokens
        self.throttles = throttles
        self.revoked = ExpiringSet(tokens.access_ttl.total_seconds())
        self.confirmed = ExpiringSet(CONFIRM_S)  # logins the store said were not revoked
        self.server_admins = ServerAdmins(store)

    # --- sessions -------------------------------------------------------------------------

    async def register(self, data: Doc, client_ip: str) -> Doc:
        data = validate("auth.register", data)
        client = client_key(client_ip)
        await self.throttles.check("register", client)
        await self.throttles.check("auth", client)
        with self.throttles.concurrent("auth", client):
            password_hash = await self.hasher.hash(data["password"])
        doc = {
            "username": data["username"],
            "display_name": data["display_name"] or data["username"],
            "password_hash": password_hash,
            "status_message": "",
            "avatar_url": None,
            "created_at": now(),
        }
        try:
            doc = await self.store.users.insert(doc)
        except Duplicate:
            raise Conflict("username is taken", field="username") from None
        return await self._session(doc, family=None)

    async def login(self, data: Doc, client_ip: str) -> Doc:
        data = validate("auth.login", data)
        username, password = data["username"].strip().lower(), data["password"]
        client = client_key(client_ip)
        # The address's budget first: once it is spent, new usernames add no limiter state.
        await self.throttles.check("auth", client)
        await self.throttles.check("login", (client, username))
        doc = await self.store.users.by_username(username)
        # Unknown users and over-long passwords still cost one hash: timing reveals nothing.
        usable = doc is not None and len(password) <= PASSWORD_MAX
        stored = doc["password_hash"] if usable and doc else DUMMY_HASH
        with self.throttles.concurrent("auth", client):
            ok = await self.hasher.verify(password[:PASSWORD_MAX], stored)
        if doc is None or not usable or not ok:
            raise Unauthenticated("invalid username or password")
        _require_active(doc)
        family = secrets.token_urlsafe(16)
        session = await self._session(doc, family)
        # A deactivation during the hash revoked the logins it found, not this new one: read
        # the account again now that its token is stored (one read per login).
        user = await self.store.users.get(str(doc["_id"]))
        if user is not None and user.get("deactivated_at") is not None:
            await self._revoke(str(doc["_id"]), family)
            _require_active(user)
        return session

    async def refresh(self, data: Doc) -> Doc:
        data = validate("auth.refresh", data)
        claims = self.tokens.decode(data["refresh_token"], REFRESH)
        record = await self.store.tokens.get(claims["jti"])
        if record is None or record["revoked"]:
            raise Unauthenticated("refresh token revoked")
        if record["family"] in self.revoked:
            # Ended here while the database was down (see `_revoke`): record it now.
            await self._revoke(claims["sub"], record["family"])
            raise Unauthenticated("refresh token revoked")
        if not await self.store.tokens.mark_used(claims["jti"], now()):
            # A rotated token came back: someone holds a copy. End the whole session.
            await self._revoke(claims["sub"], record["family"])
            raise Unauthenticated("refresh token reused; session revoked")
        user = await self.store.users.get(claims["sub"])
        if user is None:
            raise Unauthenticated("account no longer exists")
        if user.get("deactivated_at") is not None:
            await self._revoke(claims["sub"], record["family"])
            raise Unauthenticated("this account is deactivated")
        session = await self._session(user, family=record["family"])
        # A concurrent reuse may have revoked the family while we issued: the new token was
        # stored after that revocation, so check again and revoke it too.
        if await self.store.tokens.family_revoked(record["family"]):
            await self._revoke(claims["sub"], record["family"])
            raise Unauthenticated("refresh token reused; session revoked")
        return session

    async def logout(self, user_id: str, data: Doc) -> None:
        data = validate("auth.refresh", data)  # the same one field
        claims = self.tokens.decode(data["refresh_token"], REFRESH)
        if claims["sub"] != user_id:
            raise Unauthenticated("refresh token belongs to another account")
        # Every refresh token carries its login, signed: no store read (the record may be gone).
        family = claims.get("fam")
        if not family:
            raise Unauthenticated("invalid token")
        await self._revoke(user_id, family)

    async def _revoke(self, user_id: str, family: str) -> None:
        """End a login everywhere at once: its unexpired access tokens and its open sockets
        (closed with 4401; their clients fail to refresh and sign out) in memory first, so that
        happens even when the database is down, then its refresh tokens in the store."""
        self.revoked.add(family)
        self.sink.close_login(user_id, family)
        await self.store.tokens.revoke_family(family)

    def end_account(self, user_id: str, families: list[str]) -> None:
        """A deactivated account's logins (revoked in the store): refused by this process
        from now on, and every socket of the account closed, on every node."""
        for family in families:
            self.revoked.add(family)
        self.sink.close_user(user_id, families)

    async def authenticate(self, access_token: Any) -> Login:
        """The login a valid access token stands for, for a request or a new socket. The
        signature and expiry decide, then whether the login was ended: this process's
        revocations are in memory (in cluster mode, other nodes' too: the bus tells them); the
        store also knows those made before a restart, and is asked at most once per CONFIRM_S
        per login."""
        login = self.check_access(access_token)
        family = login.family
        if family is None or family in self.confirmed:
            return login
        if await self.store.tokens.family_revoked(family):
            self.revoked.add(family)
            raise Unauthenticated("signed out")
        self.confirmed.add(family)
        return login

    def require_live(self, login: Login) -> None:
        """401 if this process ended the login since its token was checked (a long upload
        outliving a logout)."""
        if login.family is not None and login.family in self.revoked:
            raise Unauthenticated("signed out")

    def check_access(self, access_token: Any) -> Login:
        """As `authenticate`, from memory only (no await): 401 once this process revoked the
        login."""
        claims = self.tokens.decode(access_token, ACCESS)
        login = Login(claims["sub"], claims.get("fam") or None, float(claims["exp"]))
        self.require_live(login)
        return login

    async def _session(self, user: Doc, family: str | None) -> Doc:
        user_id = str(user["_id"])
        family = family or secrets.token_urlsafe(16)
        issued_at = now()
        access = self.tokens.issue(ACCESS, user_id, issued_at, fam=family)
        refresh = self.tokens.issue(REFRESH, user_id, issued_at, fam=family)
        await self.store.tokens.insert(refresh.jti, user_id, family, issued_at, refresh.expires_at)
        return {
            "user": await self.own_view(user),
            "access_token": access.token,
            "refresh_token": refresh.token,
        }

    # --- profiles and directory -----------------------------------------------------------

    def view(self, doc: Doc) -> Doc:
        return user_view(doc, online=self.sink.is_online(str(doc["_id"])))

    async def own_view(self, doc: Doc) -> Doc:
        """The public view, and what only its owner sees."""
        return {**self.view(doc), "server_admin": await self.server_admins.is_admin(doc)}

    async def me(self, user_id: str) -> Doc:
        doc = await self.store.users.get(user_id)
        if doc is None:
            raise NotFound("no such user")
        return await self.own_view(doc)

    async def get(self, user_id: Any) -> Doc:
        user_id = fields.object_id(user_id, "user_id")
        doc = await self.store.users.get(user_id)
        if doc is None:
            raise NotFound("no such user")
        return self.view(doc)

    async def update_me(self, user_id: str, data: Doc) -> Doc:
        # validate refuses {} ("nothing to change"); absent fields come back as None.
        changes = {k: v for k, v in validate("user.update", data).items() if v is not None}
        # Before the upload or write: a refused change changes nothing.
        await self.throttles.check("profile", user_id)
        if (upload_id := changes.pop("avatar_upload_id", None)) is not None:
            current = await self.store.users.get(user_id)
            previous = current.get("avatar_upload_id") if current else None
            changes["avatar_url"] = await self.uploads.avatar(user_id, upload_id, previous)
            changes["avatar_upload_id"] = upload_id
        doc = await self.store.users.update(user_id, changes)
        if doc is None:
            raise NotFound("no such user")
        view = self.view(doc)
        await self.announce(user_id, view)
        return view

    async def announce(self, user_id: str, view: Doc) -> None:
        """`user.updated` with the public view, to everyone who shares a room with the user
        (who shows their name, avatar and status) and to the user's own sessions (their
        other tabs)."""
        recipients = await self.store.memberships.co_members(user_id)
        recipients.add(user_id)
        await self.sink.publish(recipients, "user.updated", {"user": view})

    async def search(self, query: Doc) -> list[Doc]:
        """Active accounts only (the store leaves deactivated ones out)."""
        q = validate("users.search", query)
        return [self.view(doc) for doc in await self.store.users.search(q["q"], q["limit"])]


def _require_active(user: Doc) -> None:
    if user.get("deactivated_at") is not None:
        raise Forbidden("this account is deactivated")
