"""How services publish real-time events without knowing about sockets.

The realtime hub implements `EventSink`. Services decide *who* receives an event (always an
explicit list of users: a room's current members or one user); the sink only delivers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

# A client's request reference, echoed on the reply exactly as sent (string or integer).
Ref = str | int


@dataclass(frozen=True, slots=True)
class Origin:
    """The socket a request came from: it gets the request's `ref` echoed on the reply event."""

    connection_id: str
    ref: Ref | None


class EventSink(Protocol):
    async def publish(
        self,
        user_ids: Iterable[str],
        type_: str,
        data: dict[str, Any],
        *,
        origin: Origin | None = None,
    ) -> None: ...

    def is_online(self, user_id: str) -> bool: ...

    def session_attached(self, session_id: str) -> bool:
        """Whether the session has a connected socket now."""
        ...

    def sessions_of(self, user_id: str) -> list[str]:
        """The user's sessions (devices), connected or waiting for a resume."""
        ...

    def publish_session(
        self, session_id: str, type_: str, data: dict[str, Any], *, origin: Origin | None = None
    ) -> bool:
        """Deliver to one session only; False if it no longer exists."""
        ...

    def close_login(self, user_id: str, family: str) -> None:
        """Close the user's sockets signed in with one login (refresh-token family), which
        was just revoked."""
        ...
