"""What a client needs to know of this server's settings to check input before sending it
(GET /config): upload size and types, message length, attachments per message."""

from __future__ import annotations

from typing import Any

from fastsock.config import Settings
from fastsock.services.schemas import ATTACHMENTS_MAX, TEXT_MAX
from fastsock.services.sniff import ALIASES


def client_config(settings: Settings) -> dict[str, Any]:
    allowed = settings.upload_types
    return {
        "max_upload_bytes": settings.max_upload_bytes,
        "upload_types": list(allowed),
        # Other names browsers give the same types (a ZIP from Windows is
        # application/x-zip-compressed): the server accepts them as the type they stand for.
        "upload_type_aliases": {alias: t for alias, t in ALIASES.items() if t in allowed},
        "max_message_chars": TEXT_MAX,
        "max_attachments": ATTACHMENTS_MAX,
    }
