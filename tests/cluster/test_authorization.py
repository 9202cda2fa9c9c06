"""The authorization matrix (tests/handlers/test_authorization.py) in cluster mode: the same
tests, with every request and socket going to the next of three nodes in turn, so a change
made on one node is checked on another (member caches invalidated through the bus)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tests.cluster.conftest import Nodes
from tests.handlers.test_authorization import (  # noqa: F401 (collected here, on the cluster)
    test_direct_rooms_cannot_be_changed_even_by_their_members,
    test_only_the_author_edits_and_author_or_admin_deletes,
    test_outsider_socket_events_are_refused_and_the_socket_stays_open,
    test_outsider_sockets_receive_none_of_the_room_events,
    test_outsiders_get_not_a_member_from_every_endpoint,
    test_plain_member_cannot_administer_the_group,
    test_private_rooms_cannot_be_joined_and_public_ones_can,
    test_room_lists_show_only_my_rooms_and_public_groups,
)
from tests.support import Api, Response, Socket, User


class RoundRobinApi(Api):
    """One client of the whole cluster: each request and socket goes to the next node."""

    def __init__(self, ports: list[int]) -> None:
        super().__init__(ports[0])
        self._ports = itertools.cycle(ports)

    def _next(self) -> None:
        self.port = next(self._ports)
        self.base = f"http://127.0.0.1:{self.port}"

    async def request(self, method: str, path: str, body: Any = None, **kw: Any) -> Response:
        self._next()
        return await super().request(method, path, body, **kw)

    async def ws(self, user: User, **auth: Any) -> Socket:
        self._next()
        return await super().ws(user, **auth)


@pytest.fixture
def api(nodes: Nodes) -> Api:
    return RoundRobinApi([server.port for server in nodes.servers])
