"""Accounts: registration, login, token rotation, profiles and the user directory."""

from __future__ import annotations

import asyncio
import re
import secrets
from typing import Any

from fastsock.errors import Conflict, InvalidRequest, NotFound, Unauthenticated
from fastsock.services import fields
from fastsock.services.clock import now
from fastsock.services.events import EventSink
from fastsock.services.passwords import DUMMY_HASH, hash_password, verify_password
from fastsock.services.tokens import ACCESS, REFRESH, TokenCodec
from fastsock.services.views import user_view
from fastsock.store import Duplicate, Store

Doc = dict[str, Any]

USERNAME_RE = re.compile(r"[a-z0-9_.-]{3,32}")
PASSWORD_MIN, PASSWORD_MAX = 8, 1024
DISPLAY_NAME_MAX = 64
STATUS_MAX = 140
DIRECTORY_LIMIT_MAX = 50


class Accounts:
    def __init__(self, store: Store, sink: EventSink, tokens: TokenCodec) -> None:
        self.store = store
        self.sink = sink
        self.tokens = tokens

    # --- sessions -------------------------------------------------------------------------

    async def register(self, data: Doc) -> Doc:
        fields.only(data, {"username", "password", "display_name"})
        username = self._username(data.get("username"))
        password = self._password(data.get("password"))
        display_name = data.get("display_name")
        display_name = (
            username
            if display_name is None
            else fields.text(display_name, "display_name", max_len=DISPLAY_NAME_MAX)
        )
        password_hash = await asyncio.to_thread(hash_password, password)
        doc = {
            "username": username,
            "display_name": display_name,
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

    async def login(self, data: Doc) -> Doc:
        username, password = data.get("username"), data.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            raise InvalidRequest("username and password are required", field="username")
        doc = await self.store.users.by_username(username.strip().lower())
        # Unknown users and over-long passwords still cost one hash: timing reveals nothing.
        usable = doc is not None and len(password) <= PASSWORD_MAX
        stored = doc["password_hash"] if usable and doc else DUMMY_HASH
        ok = await asyncio.to_thread(verify_password, password[:PASSWORD_MAX], stored)
        if not usable or not ok:
            raise Unauthenticated("invalid username or password")
        return await self._session(doc, family=None)

    async def refresh(self, data: Doc) -> Doc:
        claims = self.tokens.decode(data.get("refresh_token"), REFRESH)
        record = await self.store.tokens.get(claims["jti"])
        if record is None or record["revoked"]:
            raise Unauthenticated("refresh token revoked")
        if not await self.store.tokens.mark_used(claims["jti"], now()):
            # A rotated token came back: someone holds a copy. End the whole session.
            await self.store.tokens.revoke_family(record["family"])
            raise Unauthenticated("refresh token reused; session revoked")
        user = await self.store.users.get(claims["sub"])
        if user is None:
            raise Unauthenticated("account no longer exists")
        return await self._session(user, family=record["family"])

    async def logout(self, user_id: str, data: Doc) -> None:
        claims = self.tokens.decode(data.get("refresh_token"), REFRESH)
        if claims["sub"] != user_id:
            raise Unauthenticated("refresh token belongs to another account")
        record = await self.store.tokens.get(claims["jti"])
        if record is not None:
            await self.store.tokens.revoke_family(record["family"])

    def authenticate(self, access_token: Any) -> str:
        """The user id an access token stands for (no database access: tokens are short-lived)."""
        return self.tokens.decode(access_token, ACCESS)["sub"]

    async def _session(self, user: Doc, family: str | None) -> Doc:
        user_id = str(user["_id"])
        family = family or secrets.token_urlsafe(16)
        issued_at = now()
        access = self.tokens.issue(ACCESS, user_id, issued_at)
        refresh = self.tokens.issue(REFRESH, user_id, issued_at, fam=family)
        await self.store.tokens.insert(refresh.jti, user_id, family, issued_at, refresh.expires_at)
        return {
            "user": self.view(user),
            "access_token": access.token,
            "refresh_token": refresh.token,
        }

    # --- profiles and directory -----------------------------------------------------------

    def view(self, doc: Doc) -> Doc:
        return user_view(doc, online=self.sink.is_online(str(doc["_id"])))

    async def get(self, user_id: Any) -> Doc:
        fields.object_id(user_id, "user_id")
        doc = await self.store.users.get(user_id)
        if doc is None:
            raise NotFound("no such user")
        return self.view(doc)

    async def update_me(self, user_id: str, data: Doc) -> Doc:
        fields.only(data, {"display_name", "status_message"})
        changes: Doc = {}
        if "display_name" in data:
            changes["display_name"] = fields.text(
                data["display_name"], "display_name", max_len=DISPLAY_NAME_MAX
            )
        if "status_message" in data:
            changes["status_message"] = fields.text(
                data["status_message"], "status_message", min_len=0, max_len=STATUS_MAX
            )
        if not changes:
            raise InvalidRequest("nothing to change")
        doc = await self.store.users.update(user_id, changes)
        if doc is None:
            raise NotFound("no such user")
        return self.view(doc)

    async def search(self, query: Any, limit: Any) -> list[Doc]:
        q = "" if query is None else fields.text(query, "q", min_len=0, max_len=64)
        n = 20 if limit is None else fields.integer(limit, "limit", low=1, high=DIRECTORY_LIMIT_MAX)
        return [self.view(doc) for doc in await self.store.users.search(q, n)]

    @staticmethod
    def _username(value: Any) -> str:
        if not isinstance(value, str) or not USERNAME_RE.fullmatch(value.strip().lower()):
            raise InvalidRequest(
                "username must be 3-32 characters: a-z, 0-9, '_', '.', '-'", field="username"
            )
        return value.strip().lower()

    @staticmethod
    def _password(value: Any) -> str:
        if not isinstance(value, str) or not PASSWORD_MIN <= len(value) <= PASSWORD_MAX:
            raise InvalidRequest(
                f"password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters", field="password"
            )
        return value
