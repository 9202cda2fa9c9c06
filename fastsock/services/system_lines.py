"""Room history lines: `type: "system"` messages saying what changed in a group (who was
added, removed, joined or left, a rename, a privacy change), sent by whoever changed it.

Rooms make the changes but cannot depend on Messages (Messages depends on Rooms), so they
hand each line to their `on_history_line` hooks; `Messages.post_system` is the one hook
(services/__init__.py), and stores and announces the line like any message. The line's
`system` field is the data clients word from the viewer's side (docs/api.md, "System lines")."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Doc = dict[str, Any]

SYSTEM_PREFIX = "system:"  # client_msg_id of history lines; refused in client sends

# Told (room_id, actor_id, line) once the change is stored and its room event published.
HistoryLine = Callable[[str, str, Doc], Awaitable[None]]


def line(event: str, actor_id: str, user_ids: list[str], **details: Any) -> Doc:
    """A line's `system` field: `event`, who acted, whom it concerns, and the event's details
    (`name`/`old_name`, `private`, `banned`, `role`)."""
    return {"event": event, "actor_id": actor_id, "user_ids": user_ids, **details}


def room_updated(actor_id: str, before: Doc, after: Doc) -> list[Doc]:
    """The lines of a room update: one per setting that really changed, rename first."""
    lines = []
    if after["name"] != before["name"]:
        lines.append(
            line("room_renamed", actor_id, [], name=after["name"], old_name=before["name"])
        )
    if after["private"] != before["private"]:
        lines.append(line("privacy_changed", actor_id, [], private=after["private"]))
    return lines
