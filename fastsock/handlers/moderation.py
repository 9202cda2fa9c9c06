"""/rooms/{id}/bans* (group admins) and /admin/users/* (server admins)."""

from __future__ import annotations

from fastsock.handlers.base import BaseHandler


class BansHandler(BaseHandler):
    route = "/rooms/{id}/bans"

    async def get(self, room_id: str) -> None:
        self.send_json({"bans": await self.services.moderation.bans(self.me, room_id)})


class BanHandler(BaseHandler):
    route = "/rooms/{id}/bans/{user_id}"

    async def delete(self, room_id: str, user_id: str) -> None:
        await self.services.moderation.unban(self.me, room_id, user_id)
        self.no_content()


class DeactivateHandler(BaseHandler):
    route = "/admin/users/{id}/deactivate"

    async def post(self, user_id: str) -> None:
        self.send_json(await self.services.moderation.deactivate(self.me, user_id))


class ReactivateHandler(BaseHandler):
    route = "/admin/users/{id}/reactivate"

    async def post(self, user_id: str) -> None:
        self.send_json(await self.services.moderation.reactivate(self.me, user_id))
