"""Deactivating an account on one node ends it on every node at once: its sockets close with
4403 wherever they are, and its access tokens are refused there, although those nodes had just
checked its login with the database (accounts.CONFIRM_S)."""

from __future__ import annotations

from tests.cluster.conftest import Nodes
from tests.realtime.test_logout import another_login, refused_socket


async def test_deactivation_on_one_node_closes_and_refuses_the_account_everywhere(
    nodes: Nodes,
) -> None:
    apis = [nodes.api(i) for i in range(3)]
    admin, bob, carol = [await apis[0].register() for _ in range(3)]  # admin: the first account
    laptop = await another_login(apis[0], bob)
    tabs = [await apis[1].ws(bob), await apis[2].ws(laptop)]
    bystander = await apis[1].ws(carol)
    for api in apis:  # each node confirms both logins with the database, and remembers that
        for login in (bob, laptop):
            assert (await api.get("/users/me", login)).status == 200

    r = await apis[0].post(f"/admin/users/{bob.id}/deactivate", None, admin)
    assert r.status == 200, r.body

    for tab in tabs:
        assert await tab.close_code() == 4403
    for api in apis:  # the tabs' close shows each node heard of it: refused there at once
        for login in (bob, laptop):
            r = await api.get("/users/me", login)
            assert r.status == 401 and r.error_code == "unauthenticated", r.body
            assert await refused_socket(api, login.access_token) == 4401
    assert (await apis[1].get("/users/me", carol)).status == 200
    assert not bystander.closed


async def test_the_accounts_detached_sessions_are_dropped_on_every_node(nodes: Nodes) -> None:
    """A session whose socket had gone (kept for a resume) is forgotten at the deactivation,
    on its node: it stops collecting the account's events, and cannot be resumed later."""
    apis = [nodes.api(i) for i in range(3)]
    admin, bob = await apis[0].register(), await apis[0].register()  # admin: the first account
    away = await apis[2].ws(bob)
    session = away.ready["session"] if away.ready else ""
    away.close()
    here = await apis[1].ws(bob)

    r = await apis[0].post(f"/admin/users/{bob.id}/deactivate", None, admin)
    assert r.status == 200, r.body
    assert await here.close_code() == 4403
    r = await apis[0].post(f"/admin/users/{bob.id}/reactivate", None, admin)
    assert r.status == 200, r.body
    again = await another_login(apis[2], bob)
    back = await apis[2].ws(again, resume={"session": session, "last_seq": 0})
    assert back.ready is not None and back.ready["resume"] == "resync"
