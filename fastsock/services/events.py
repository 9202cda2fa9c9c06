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
    """Delivery to users' sessions wherever they are connected: this process (realtime/hub.py)
    or, in cluster mode, any node (cluster/hub.py). Publishing never waits for a socket."""

    async def publish(
        self,
        user_ids: Iterable[str],
        type_: str,
        data: dict[str, Any],
        *,
        origin: Origin | None = None,
        room_id: str | None = None,
    ) -> None:
        """Deliver to every session of the users. `room_id`: a room event sent to the room's
        members; a node that learnt a recipient left the room drops it (cluster mode)."""
        ...

    def publish_devices(
        self,
        user_id: str,
        type_: str,
        data: dict[str, Any],
        device: str | None,
        *,
        origin: Origin | None = None,
    ) -> None:
        """Deliver to every session of the user, each with `here` (whether it is `device`)."""
        ...

    def publish_session(
        self, session_id: str, type_: str, data: dict[str, Any], *, origin: Origin | None = None
    ) -> None:
        """Deliver to one session only (buffered for its resume if it is away); nothing if
        it no longer exists."""
        ...

    def is_online(self, user_id: str) -> bool:
        """Whether any socket of the user is open (on any node)."""
        ...

    async def session_attached(self, user_id: str, session_id: str) -> bool:
        """Whether the user's session has a connected socket now."""
        ...

    async def presence_flipped(self, user_id: str, online: bool) -> bool:
        """This node's sockets of the user went from none to some (`online`) or back: True
        if that changes whether the user is online at all (on any node)."""
        ...

    def close_login(self, user_id: str, family: str) -> None:
        """Close the user's sockets signed in with one login (refresh-token family), which
        was just revoked."""
        ...

    def close_user(self, user_id: str, families: list[str]) -> None:
        """Close every socket of the user (its account was deactivated); `families`, its
        logins just revoked, are refused from now on on every node."""
        ...
