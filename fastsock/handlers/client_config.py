"""GET /config: the server's limits a client checks input against before sending it."""

from __future__ import annotations

from fastsock.handlers.base import BaseHandler
from fastsock.services.client_config import client_config


class ConfigHandler(BaseHandler):
    route = "/config"

    def get(self) -> None:
        self.send_json(client_config(self.ctx.settings))
