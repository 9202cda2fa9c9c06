"""/calls/* and /rooms/{id}/calls."""

from __future__ import annotations

from fastsock.handlers.base import BaseHandler


class IceServersHandler(BaseHandler):
    route = "/calls/ice-servers"

    async def get(self) -> None:
        self.set_header("Cache-Control", "no-store")  # credentials: never cached by a proxy
        self.send_json(await self.services.calls.ice_servers(self.me))


class RoomCallsHandler(BaseHandler):
    route, query_schema = "/rooms/{id}/calls", "calls"

    async def get(self, room_id: str) -> None:
        self.send_json(await self.services.calls.timeline(self.me, room_id, self.query()))
