"""/rooms/*, /history/room/{id} and /messages/{id}."""

from __future__ import annotations

from fastsock.handlers.base import BaseHandler


class RoomsHandler(BaseHandler):
    route = "/rooms"

    async def get(self) -> None:
        self.send_json({"rooms": await self.services.rooms.list_for(self.me)})

    async def post(self) -> None:
        self.send_json(await self.services.rooms.create_group(self.me, self.json_body()), 201)


class DirectRoomHandler(BaseHandler):
    route = "/rooms/direct"

    async def post(self) -> None:
        room, created = await self.services.rooms.direct(self.me, self.json_body())
        self.send_json(room, 201 if created else 200)


class PublicRoomsHandler(BaseHandler):
    route, query_schema = "/rooms/public", "rooms.public"

    async def get(self) -> None:
        rooms = await self.services.rooms.public(self.query())
        self.send_json({"rooms": rooms})


class RoomHandler(BaseHandler):
    route = "/rooms/{id}"

    async def get(self, room_id: str) -> None:
        self.send_json(await self.services.rooms.get(self.me, room_id))

    async def patch(self, room_id: str) -> None:
        self.send_json(await self.services.rooms.update(self.me, room_id, self.json_body()))


class JoinRoomHandler(BaseHandler):
    route = "/rooms/{id}/join"

    async def post(self, room_id: str) -> None:
        self.send_json(await self.services.rooms.join(self.me, room_id))


class MembersHandler(BaseHandler):
    route = "/rooms/{id}/members"

    async def post(self, room_id: str) -> None:
        self.send_json(await self.services.rooms.add_members(self.me, room_id, self.json_body()))


class MemberHandler(BaseHandler):
    route = "/rooms/{id}/members/{user_id}"

    async def patch(self, room_id: str, user_id: str) -> None:
        data = self.json_body()
        self.send_json(await self.services.moderation.set_role(self.me, room_id, user_id, data))

    async def delete(self, room_id: str, user_id: str) -> None:
        await self.services.rooms.remove_member(self.me, room_id, user_id)
        self.no_content()


class ReadHandler(BaseHandler):
    route = "/rooms/{id}/read"

    async def post(self, room_id: str) -> None:
        data = {**self.json_body(), "room_id": room_id}
        self.send_json(await self.services.rooms.mark_read(self.me, data))


class RoomMessagesHandler(BaseHandler):
    route = "/rooms/{id}/messages"

    async def post(self, room_id: str) -> None:
        data = {**self.json_body(), "room_id": room_id}  # the path decides the room
        message, created = await self.services.messages.send(self.me, data)
        self.send_json(message, 201 if created else 200)


class HistoryHandler(BaseHandler):
    route, query_schema = "/history/room/{id}", "history"

    async def get(self, room_id: str) -> None:
        self.send_json(await self.services.messages.history(self.me, room_id, self.query()))


class MessageHandler(BaseHandler):
    route = "/messages/{id}"

    async def patch(self, message_id: str) -> None:
        data = {**self.json_body(), "message_id": message_id}
        self.send_json(await self.services.messages.edit(self.me, data))

    async def delete(self, message_id: str) -> None:
        await self.services.messages.delete(self.me, {"message_id": message_id})
        self.no_content()


class ReceiptsHandler(BaseHandler):
    route = "/messages/{id}/receipts"

    async def get(self, message_id: str) -> None:
        receipts = await self.services.receipts.for_message(self.me, message_id)
        self.send_json({"receipts": receipts})


class ReactionHandler(BaseHandler):
    route = "/messages/{id}/reactions/{emoji}"

    async def put(self, message_id: str, emoji: str) -> None:
        data = {"message_id": message_id, "emoji": emoji}
        self.send_json(await self.services.reactions.add(self.me, data))

    async def delete(self, message_id: str, emoji: str) -> None:
        data = {"message_id": message_id, "emoji": emoji}
        self.send_json(await self.services.reactions.remove(self.me, data))


class SearchHandler(BaseHandler):
    route, query_schema = "/search/messages", "search"

    async def get(self) -> None:
        self.send_json(await self.services.search.messages(self.me, self.query()))
