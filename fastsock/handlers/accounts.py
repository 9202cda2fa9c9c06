"""/auth/* and /users/*."""

from __future__ import annotations

from fastsock.handlers.base import BaseHandler


class RegisterHandler(BaseHandler):
    route, auth_required = "/auth/register", False

    async def post(self) -> None:
        body = self.json_body()
        self.send_json(await self.services.accounts.register(body, self.client_ip), 201)


class LoginHandler(BaseHandler):
    route, auth_required = "/auth/login", False

    async def post(self) -> None:
        self.send_json(await self.services.accounts.login(self.json_body(), self.client_ip))


class RefreshHandler(BaseHandler):
    route, auth_required = "/auth/refresh", False

    async def post(self) -> None:
        self.send_json(await self.services.accounts.refresh(self.json_body()))


class LogoutHandler(BaseHandler):
    route = "/auth/logout"

    async def post(self) -> None:
        await self.services.accounts.logout(self.me, self.json_body())
        self.no_content()


class MeHandler(BaseHandler):
    route = "/users/me"

    async def get(self) -> None:
        self.send_json(await self.services.accounts.me(self.me))

    async def patch(self) -> None:
        self.send_json(await self.services.accounts.update_me(self.me, self.json_body()))


class UsersHandler(BaseHandler):
    route, query_schema = "/users", "users.search"

    async def get(self) -> None:
        users = await self.services.accounts.search(self.query())
        self.send_json({"users": users})


class UserHandler(BaseHandler):
    route = "/users/{id}"

    async def get(self, user_id: str) -> None:
        self.send_json(await self.services.accounts.get(user_id))
