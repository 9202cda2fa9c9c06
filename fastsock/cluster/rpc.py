"""Requests from one node to another over the bus, and their replies (cluster mode).

A request travels on the handling node's channel (`rq`), its reply on the requester's (`rp`),
matched by a correlation id; each request is handled in a task of its own. An ApiError the
handler raises travels back and is raised again on the requesting node as the same class
(`ApiError.from_dict`: its code names it) with the same message, field and retry_after, so the
client is answered, and the caller's `except` clauses behave, as if its own node had handled
the request. A handler may refuse with `Elsewhere` (the request is not for this node, or no
longer): the requester asks again where it should.

No reply in time: `Unavailable`, and a request is never sent once its time is up. A request
that times out may still run on the handling node (it was slow, or its reply was lost): the
handlers must be safe to ask again (docs/architecture.md, "Calls")."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from fastsock.cluster.link import Link
from fastsock.errors import ApiError, Unavailable
from fastsock.store import is_unavailable

log = logging.getLogger("fastsock.cluster")

REQUEST, REPLY = "rq", "rp"
UNANSWERED = "another server did not answer in time; try again in a moment"

Handler = Callable[[str, list[Any]], Awaitable[Any]]  # (name, args) -> a JSON value


class Elsewhere(Exception):
    """A handler's refusal: this node does not handle the request (any more)."""


class RemoteError(ApiError):
    """An ApiError raised on another node whose code this node does not know (another
    version): answered with the same status, code and body."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body["message"], field=body.get("field"))
        self.status, self.code = body["status"], body["code"]


class RemoteFailure(RuntimeError):
    """The handling node failed with an unexpected error (it logged it)."""


class Rpc:
    def __init__(self, link: Link) -> None:
        self.link = link
        self._handlers: dict[str, Handler] = {}
        self._pending: dict[str, tuple[str, asyncio.Future[Any]]] = {}  # id -> (node, reply)
        self._tasks: set[asyncio.Task[None]] = set()
        link.on(REQUEST, self._on_request)
        link.on(REPLY, self._on_reply)

    def serve(self, service: str, handler: Handler) -> None:
        self._handlers[service] = handler

    async def call(
        self, node: str, service: str, name: str, args: list[Any], timeout: float
    ) -> Any:
        """The answer of `node`'s handler of `service`; raises what it raised. Not sent at all
        when `timeout` is already up: the caller would answer `unavailable` while it ran."""
        if timeout <= 0:
            raise Unavailable(UNANSWERED)
        request_id = secrets.token_hex(8)
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = (node, reply)
        self.link.send(node, REQUEST, {"i": request_id, "s": service, "n": name, "a": args})
        try:
            async with asyncio.timeout(timeout):
                return await reply
        except TimeoutError:
            raise Unavailable(UNANSWERED) from None
        finally:
            self._pending.pop(request_id, None)

    def give_up(self, node: str) -> None:
        """`node` will not answer (it died, or stopped handling what it was asked): the
        requests waiting for it fail now rather than at their timeout."""
        for asked, reply in self._pending.values():
            if asked == node and not reply.done():
                reply.set_exception(Unavailable(UNANSWERED))

    # --- the handling node ----------------------------------------------------------------

    def _on_request(self, sender: str, header: dict[str, Any], _payload: bytes) -> None:
        task = asyncio.ensure_future(self._answer(sender, header))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, sender: str, h: dict[str, Any]) -> None:
        reply: dict[str, Any] = {"i": h["i"]}
        try:
            reply["r"] = await self._handlers[h["s"]](h["n"], h["a"])
        except Elsewhere:
            reply["w"] = 1
        except ApiError as exc:
            reply["e"] = {"status": exc.status, **exc.to_dict()}
        except Exception as exc:
            if is_unavailable(exc):
                unavailable = Unavailable("the database is unavailable")
                reply["e"] = {"status": unavailable.status, **unavailable.to_dict()}
            else:
                log.exception("cluster_request_failed", extra={"fields": {"name": h["n"]}})
                reply["x"] = 1
        self.link.send(sender, REPLY, reply)

    # --- the requesting node --------------------------------------------------------------

    def _on_reply(self, _sender: str, h: dict[str, Any], _payload: bytes) -> None:
        pending = self._pending.get(h["i"])
        if pending is None or pending[1].done():
            return  # given up on already
        reply = pending[1]
        if "r" in h:
            reply.set_result(h["r"])
        elif "w" in h:
            reply.set_exception(Elsewhere())
        elif "e" in h:
            reply.set_exception(_error(h["e"]))
        else:
            reply.set_exception(RemoteFailure("the request failed on another node"))


def _error(body: dict[str, Any]) -> ApiError:
    return ApiError.from_dict(body["status"], body) or RemoteError(body)
