"""Ending a login on one node ends it on every node at once: its sockets close with 4401
wherever they are, and its access tokens are refused there, although those nodes had just
checked the login with the database (accounts.CONFIRM_S). Other logins carry on."""

from __future__ import annotations

from tests.cluster.conftest import Nodes
from tests.realtime.test_logout import another_login, refused_socket


async def test_logout_on_one_node_ends_the_login_on_every_node(nodes: Nodes) -> None:
    apis = [nodes.api(i) for i in range(3)]
    alice, bob = await apis[0].register(), await apis[0].register()
    laptop = await another_login(apis[0], alice)
    room = await apis[0].group(bob, alice)
    tabs = [await apis[1].ws(alice), await apis[2].ws(alice)]
    other_device = await apis[1].ws(laptop)
    for api in apis:  # each node confirms the login with the database, and remembers it
        assert (await api.get("/users/me", alice)).status == 200

    r = await apis[0].post("/auth/logout", {"refresh_token": alice.refresh_token}, alice)
    assert r.status == 204, r.body

    for tab in tabs:
        assert await tab.close_code() == 4401
    for api in apis:  # the tabs' close shows each node heard of it: refused there at once
        r = await api.get("/users/me", alice)
        assert r.status == 401 and r.error_code == "unauthenticated", r.body
        assert await refused_socket(api, alice.access_token) == 4401
    await apis[2].send(bob, room, "still signed in elsewhere")
    got = await other_device.expect("message.new")
    assert got["message"]["text"] == "still signed in elsewhere"
    assert (await apis[1].get("/users/me", laptop)).status == 200
