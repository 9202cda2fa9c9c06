"""The SFU workers' internal API, /internal/sfu/workers/{id}/... (docs/calls.md, "Group calls").

Mounted only when FASTSOCK_SFU_SECRET is set. A worker authenticates each request with a fresh
control token signed with that secret, whose `sub` must be the path's worker id: a user's
access token (another secret, another `typ`) never passes. The secret is shared by every
worker, so the workers are trusted as a group: any one of them can mint another's control
tokens (and any join token). The token is never logged. In cluster mode a worker may post to
any node: the call leader handles the post (services/calls.py)."""

from __future__ import annotations

import time

from fastsock.calls.sfu_tokens import TokenRefused, verify_control
from fastsock.errors import Forbidden, Unauthenticated
from fastsock.handlers.base import BaseHandler, bearer_token
from fastsock.services import fields


class WorkerHandler(BaseHandler):
    auth_required = False  # not a user's access token: a worker's control token
    internal = True  # mounted with FASTSOCK_SFU_SECRET only (app.make_app)
    # A heartbeat lists everyone on the worker (about 27 bytes a peer): a big worker's is
    # larger than a client's body may be. The HTTP server's own cap (1 MiB) still applies.
    max_json_body = 1024 * 1024

    async def prepare(self) -> None:
        await super().prepare()
        token = bearer_token(self.request.headers.get("Authorization"))
        if token is None:
            raise Unauthenticated("a worker control token is required")
        secret = self.ctx.settings.sfu_secret
        assert secret is not None  # not mounted without one
        try:
            worker_id = verify_control(secret, token, time.time())
        except TokenRefused as refused:
            raise Unauthenticated(f"control token refused ({refused.code})") from None
        fields.object_id(self.path_args[0], "worker_id")  # worker ids are ids (24 hex digits)
        if worker_id != self.path_args[0]:
            raise Forbidden("the control token is another worker's")


class RegisterHandler(WorkerHandler):
    route = "/internal/sfu/workers/{id}/register"

    async def post(self, worker_id: str) -> None:
        calls = self.services.calls
        self.send_json(await calls.worker_registered(worker_id, self.json_body()))


class HeartbeatHandler(WorkerHandler):
    route = "/internal/sfu/workers/{id}/heartbeat"

    async def post(self, worker_id: str) -> None:
        calls = self.services.calls
        self.send_json(await calls.worker_heartbeat(worker_id, self.json_body()))


class EventsHandler(WorkerHandler):
    route = "/internal/sfu/workers/{id}/events"

    async def post(self, worker_id: str) -> None:
        self.send_json(await self.services.calls.worker_events(worker_id, self.json_body()))


class DeregisterHandler(WorkerHandler):
    route = "/internal/sfu/workers/{id}"

    async def delete(self, worker_id: str) -> None:
        await self.services.calls.worker_gone(worker_id)
        self.no_content()
