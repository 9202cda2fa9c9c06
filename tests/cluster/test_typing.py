"""Typing across nodes: relayed to members on every node, expired there, and ended by a send
or by the user's last socket closing on any node, even one that does not hold the indicator;
a node that dies holding one has its stop relayed by the node that buries it."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import pytest

from fastsock.services import typing as typing_module
from fastsock.services.typing import Typing
from tests.cluster.conftest import Nodes, until
from tests.cluster.processes import NodeProcess
from tests.support import Api, Socket, User


def _typing(user: User, active: bool) -> Callable[[dict], bool]:
    return lambda f: f["data"]["user_id"] == user.id and f["data"]["active"] is active


async def _type(ws: Socket, room: str) -> None:
    """A typing frame, handled (acked) by the node the socket is on."""
    reply = await ws.request("typing", {"room_id": room, "active": True})
    assert reply["type"] == "ack", reply


async def _no_more_typing(*sockets: Socket) -> None:
    for ws in sockets:
        await ws.drain()
        assert [f for f in ws.frames if f["type"] == "typing"] == []


async def _world(nodes: Nodes) -> tuple[list[Api], User, User, User, str]:
    apis = [nodes.api(i) for i in range(3)]
    alice, bob, carol = [await apis[0].register() for _ in range(3)]
    room = await apis[0].group(alice, bob, carol)
    return apis, alice, bob, carol, room


async def test_relayed_to_members_on_other_nodes_and_expired_there(
    nodes: Nodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(typing_module, "EXPIRY_S", 0.5)
    apis, alice, bob, carol, room = await _world(nodes)
    alice_ws, bob_ws, carol_ws = [await apis[i].ws(u) for i, u in enumerate((alice, bob, carol))]
    await _type(alice_ws, room)
    for ws in (bob_ws, carol_ws):
        assert await ws.expect("typing", _typing(alice, True)) == {
            "room_id": room,
            "user_id": alice.id,
            "active": True,
        }
        await ws.expect("typing", _typing(alice, False))
    await _no_more_typing(bob_ws, carol_ws, alice_ws)


@pytest.mark.parametrize("via", ["rest", "socket"])
async def test_a_send_on_another_node_ends_the_indicator(
    nodes: Nodes, monkeypatch: pytest.MonkeyPatch, via: str
) -> None:
    monkeypatch.setattr(typing_module, "EXPIRY_S", 300.0)  # only the send can end it
    apis, alice, bob, carol, room = await _world(nodes)
    typing_ws = await apis[0].ws(alice)
    carol_ws, bob_ws = await apis[1].ws(carol), await apis[2].ws(bob)
    await _type(typing_ws, room)
    for ws in (bob_ws, carol_ws):  # carol's: node 1 has seen the relay
        await ws.expect("typing", _typing(alice, True))
    cid = uuid.uuid4().hex
    if via == "rest":
        await apis[1].send(alice, room, "sent on node 1", cid)
    else:
        sending_ws = await apis[1].ws(alice)
        sent = await sending_ws.request(
            "message.send", {"room_id": room, "client_msg_id": cid, "text": "sent on node 1"}
        )
        assert sent["type"] == "message.ack", sent
    for ws in (bob_ws, carol_ws):
        await ws.expect("typing", _typing(alice, False))
        await ws.expect("message.new", lambda f: f["data"]["message"]["client_msg_id"] == cid)
    await _no_more_typing(bob_ws, carol_ws)


async def test_the_last_socket_closing_on_another_node_ends_the_indicator(
    nodes: Nodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(typing_module, "EXPIRY_S", 300.0)  # only going offline can end it
    apis, alice, bob, carol, room = await _world(nodes)
    typing_ws, other_ws = await apis[0].ws(alice), await apis[1].ws(alice)
    carol_ws, bob_ws = await apis[1].ws(carol), await apis[2].ws(bob)
    await _type(typing_ws, room)
    for ws in (bob_ws, carol_ws):
        await ws.expect("typing", _typing(alice, True))

    typing_ws.close()  # not her last socket: the indicator lives on
    await typing_ws.close_code()
    assert typing_ws.ready is not None
    session = typing_ws.ready["session"]
    await until(lambda: not nodes.hub(0).attached(session), "node 0 detached her socket")
    await nodes.hub(0).wait_tasks(timeout=10)
    await _no_more_typing(bob_ws)

    other_ws.close()  # her last socket anywhere: she goes offline, and stops typing
    for ws in (bob_ws, carol_ws):
        await ws.expect("typing", _typing(alice, False))
        await ws.expect("presence", lambda f: f["data"] == {"user_id": alice.id, "online": False})
    await _no_more_typing(bob_ws, carol_ws)


async def test_the_stop_of_a_killed_nodes_indicator_is_relayed_by_its_burier(
    nodes: Nodes, node_process: Callable[[], Awaitable[NodeProcess]]
) -> None:
    doomed = await node_process()
    apis = [nodes.api(i) for i in range(3)]
    users = [await apis[0].register() for _ in range(4)]
    alice, watchers = users[0], users[1:]
    room = await apis[0].group(alice, *watchers)
    # A watcher on each node that stays: whichever buries the dead one knows the indicator.
    watching = [await apis[i].ws(user) for i, user in enumerate(watchers)]
    typing_ws = await doomed.api().ws(alice)
    await _type(typing_ws, room)
    for ws in watching:
        await ws.expect("typing", _typing(alice, True))
    await doomed.kill()
    for ws in watching:
        await ws.expect("typing", _typing(alice, False), timeout=20)
    await _no_more_typing(*watching)


async def test_an_indicator_not_relayed_again_for_too_long_is_not_asked_to_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its node stopped without relaying the stop (a clean shutdown drops indicators): a send
    that would end it costs no bus message."""
    asked: list[tuple[str, str, str]] = []
    typing = Typing(rooms=None)  # type: ignore[arg-type]  # no local indicator: never used
    typing.ask_stop = lambda node, room_id, user_id: asked.append((node, room_id, user_id))
    typing.seen_elsewhere("node1", {"room_id": "room", "user_id": "alice", "active": True})
    await typing.stop("alice", "room")
    assert asked == [("node1", "room", "alice")]  # kept until its stop passes by
    monkeypatch.setattr(typing_module, "RELAYED_AGAIN_S", -1.0)  # any age is too old
    await typing.stop("alice", "room")
    assert len(asked) == 1
