"""Every REST route that takes input, with the schema (fastsock/services/schemas.py) its body
or query is checked against, and every client -> server WebSocket event type.
test_coverage.py checks these tables against the app's routes table and the schema table,
so a new route or schema cannot go unfuzzed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from fastsock.realtime.routes import ROUTES
from fastsock.services.schemas import SCHEMAS
from tests.fuzz.world import Named, World


def encoded(text: str) -> str:
    """Percent-encoded UTF-8 for a path or query; a lone surrogate becomes bytes that are
    not UTF-8."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


@dataclass(frozen=True, slots=True)
class BodyRoute:
    method: str
    path: str  # world names in braces: "/rooms/{group}/read"
    schema: str
    # Fields the handler takes from the path, over the body's: (field, world name).
    path_fields: tuple[tuple[str, str], ...] = ()
    auth: bool | str = True  # "worker": an SFU worker's control token (test_rest_bodies.py)

    def url(self, world: World) -> str:
        return self.path.format_map(world.values)

    def data(self, world: World, body: dict[str, Any]) -> dict[str, Any]:
        """What the service validates: the body with the path's fields."""
        return body | {f: world.values[name] for f, name in self.path_fields}

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


BODY_ROUTES = (
    BodyRoute("POST", "/auth/register", "auth.register", auth=False),
    BodyRoute("POST", "/auth/login", "auth.login", auth=False),
    BodyRoute("POST", "/auth/refresh", "auth.refresh", auth=False),
    BodyRoute("POST", "/auth/logout", "auth.refresh"),  # the same body: {refresh_token}
    BodyRoute("PATCH", "/users/me", "user.update"),
    BodyRoute("POST", "/rooms", "room.create"),
    BodyRoute("POST", "/rooms/direct", "room.direct"),
    BodyRoute("PATCH", "/rooms/{group}", "room.update"),
    BodyRoute("POST", "/rooms/{group}/members", "room.members.add"),
    BodyRoute("PATCH", "/rooms/{group}/members/{bob}", "room.member.update"),
    BodyRoute("POST", "/rooms/{group}/read", "message.read", (("room_id", "group"),)),
    BodyRoute("POST", "/rooms/{group}/messages", "message.send", (("room_id", "group"),)),
    BodyRoute("PATCH", "/messages/{mine}", "message.edit", (("message_id", "mine"),)),
    BodyRoute("POST", "/internal/sfu/workers/{worker}/register", "sfu.register", auth="worker"),
    BodyRoute("POST", "/internal/sfu/workers/{worker}/heartbeat", "sfu.heartbeat", auth="worker"),
    BodyRoute("POST", "/internal/sfu/workers/{worker}/events", "sfu.events", auth="worker"),
)


@dataclass(frozen=True, slots=True)
class QueryRoute:
    path: str
    schema: str

    def __str__(self) -> str:
        return f"GET {self.path}"


QUERY_ROUTES = (
    QueryRoute("/users", "users.search"),
    QueryRoute("/rooms/public", "rooms.public"),
    QueryRoute("/history/room/{group}", "history"),
    QueryRoute("/search/messages", "search"),
    QueryRoute("/rooms/{group}/calls", "calls"),
)


@dataclass(frozen=True, slots=True)
class PathRoute:
    """A route whose path holds ids (or an emoji): each `{}` is fuzzed, as a segment of the
    kind named in `segments`; the body, if any, is a valid one."""

    method: str
    path: str
    segments: tuple[str, ...]
    body: dict[str, Any] | None = field(default=None, hash=False)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


PATH_ROUTES = (
    PathRoute("GET", "/users/{}", ("id",)),
    PathRoute("GET", "/rooms/{}", ("id",)),
    PathRoute("PATCH", "/rooms/{}", ("id",), {"name": "renamed"}),
    PathRoute("POST", "/rooms/{}/join", ("id",)),
    PathRoute("POST", "/rooms/{}/members", ("id",), {"user_ids": [Named("bob")]}),
    # Promotions only: alice stays an admin of her group for the routes below.
    PathRoute("PATCH", "/rooms/{}/members/{}", ("id", "id"), {"role": "admin"}),
    PathRoute("GET", "/rooms/{}/bans", ("id",)),
    PathRoute("DELETE", "/rooms/{}/bans/{}", ("id", "id")),
    PathRoute("POST", "/rooms/{}/read", ("id",), {"message_id": Named("mine")}),
    PathRoute("POST", "/rooms/{}/messages", ("id",), {"client_msg_id": "fuzz", "text": "hi"}),
    PathRoute("GET", "/history/room/{}", ("id",)),
    PathRoute("PATCH", "/messages/{}", ("id",), {"text": "edited"}),
    PathRoute("GET", "/messages/{}/receipts", ("id",)),
    PathRoute("PUT", "/messages/{}/reactions/{}", ("id", "emoji")),
    PathRoute("DELETE", "/messages/{}/reactions/{}", ("id", "emoji")),
    PathRoute("GET", "/uploads/{}", ("id",)),
    PathRoute("GET", "/uploads/{}/thumbnail", ("id",)),
    PathRoute("GET", "/rooms/{}/calls", ("id",)),
    PathRoute("POST", "/admin/users/{}/deactivate", ("id",)),  # alice herself: refused (409)
    PathRoute("POST", "/admin/users/{}/reactivate", ("id",)),
    # Last, so that the routes above still find the world's members and messages.
    PathRoute("DELETE", "/rooms/{}/members/{}", ("id", "other")),  # never alice: she stays
    PathRoute("DELETE", "/messages/{}", ("id",)),
    PathRoute("DELETE", "/internal/sfu/workers/{}", ("id",)),  # refused: a user's token
)

# Routes without input beyond the access token (fuzzed by test_rest_headers.py).
NO_INPUT = (
    "/rooms",
    "/users/me",
    "/config",
    "/calls/ice-servers",
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
)

# Client -> server WebSocket events the server handles (design.md sections 4 and 6),
# message.delete last so that the events before it still find the world's messages...
EVENT_TYPES = (*sorted(ROUTES, key=lambda t: (t == "message.delete", t)), "ping")
# ...and types it must refuse: `auth` after auth, and the names of REST-only schemas.
REFUSED_TYPES = ("auth", *sorted(set(SCHEMAS) - set(EVENT_TYPES) - {"auth"}))
