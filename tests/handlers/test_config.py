"""Issue 10, item 5: GET /config tells a signed-in client the limits it checks input against
before sending: this server's FASTSOCK_MAX_UPLOAD_BYTES and FASTSOCK_UPLOAD_TYPES, not
figures built into the client."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastsock.app import Server
from fastsock.config import DEFAULT_UPLOAD_TYPES, load_settings
from tests.conftest import make_settings
from tests.support import Api

pytestmark = pytest.mark.once  # settings only: the store backend plays no part


async def test_config_reports_the_default_limits(api: Api) -> None:
    user = await api.register()
    r = await api.get("/config", user)
    assert r.status == 200, r.body
    assert r.headers["Cache-Control"] == "no-store"
    assert r.body == {
        "max_upload_bytes": 25 * 1024 * 1024,
        "upload_types": list(DEFAULT_UPLOAD_TYPES),
        "upload_type_aliases": {
            "image/jpg": "image/jpeg",
            "image/pjpeg": "image/jpeg",
            "audio/mp3": "audio/mpeg",
            "audio/mp4": "video/mp4",
            "audio/x-m4a": "video/mp4",
            "application/ogg": "audio/ogg",
            "video/ogg": "audio/ogg",
            "audio/webm": "video/webm",
            "video/x-matroska": "video/webm",
            "application/x-zip-compressed": "application/zip",
        },
        "max_message_chars": 4000,
        "max_attachments": 10,
    }


async def test_config_needs_an_access_token(api: Api) -> None:
    r = await api.get("/config")
    assert r.status == 401 and r.error_code == "unauthenticated", r.body


async def test_config_follows_the_upload_settings(tmp_path: Path) -> None:
    env = {
        "FASTSOCK_MAX_UPLOAD_BYTES": "2048",
        "FASTSOCK_UPLOAD_TYPES": "text/plain, application/zip",
    }
    configured = load_settings(env)
    settings = make_settings(
        None,
        tmp_path,
        max_upload_bytes=configured.max_upload_bytes,
        upload_types=configured.upload_types,
    )
    server = Server(settings)
    await server.start()
    try:
        api = Api(server.port)
        r = await api.get("/config", await api.register())
        assert r.status == 200, r.body
        assert r.body["max_upload_bytes"] == 2048
        assert r.body["upload_types"] == ["text/plain", "application/zip"]
        # Only the other names of allowed types.
        assert r.body["upload_type_aliases"] == {"application/x-zip-compressed": "application/zip"}
    finally:
        await server.stop()
