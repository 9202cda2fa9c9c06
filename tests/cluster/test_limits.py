"""Rate limits across nodes: one budget per user and per address, whichever node a request
reaches (fastsock/cluster/limits.py)."""

from __future__ import annotations

import uuid
from pathlib import Path

from fastsock.config import Limits
from tests.cluster.conftest import Nodes
from tests.support import PASSWORD

SLOW = 0.01  # per second: nothing refills while a test runs


async def test_one_send_budget_across_nodes(
    cluster_db: str, redis_url: str, tmp_path: Path
) -> None:
    cluster = Nodes(cluster_db, redis_url, tmp_path)
    try:
        for _ in range(2):
            await cluster.start(limits=Limits(send_per_s=SLOW, send_burst=4))
        apis = [cluster.api(0), cluster.api(1)]
        alice, bob = await apis[0].register(), await apis[1].register()
        room = await apis[0].group(alice, bob)
        sockets = [await api.ws(alice) for api in apis]
        sent = []
        for i in range(4):  # the burst, spent half on each node
            cid = uuid.uuid4().hex
            reply = await sockets[i % 2].request(
                "message.send", {"room_id": room, "client_msg_id": cid, "text": f"m{i}"}
            )
            assert reply["type"] == "message.ack", reply
            sent.append(cid)
        for sock in sockets:  # each node alone would still have two left
            refused_cid = uuid.uuid4().hex
            reply = await sock.request(
                "message.send", {"room_id": room, "client_msg_id": refused_cid, "text": "more"}
            )
            assert reply["type"] == "error", reply
            assert reply["data"]["code"] == "rate_limited"
            assert reply["data"]["retry_after"] > 0
        history = await apis[1].get(f"/history/room/{room}?changed_after=0", bob)
        assert [m["client_msg_id"] for m in history.body["messages"]] == sent  # refused: not stored
    finally:
        await cluster.stop()


async def test_one_login_budget_per_address_across_nodes(
    cluster_db: str, redis_url: str, tmp_path: Path
) -> None:
    cluster = Nodes(cluster_db, redis_url, tmp_path)
    try:
        for _ in range(3):
            await cluster.start(limits=Limits(logins_per_min=3))
        user = await cluster.api(0).register()
        wrong = {"username": user.username, "password": PASSWORD + "?"}
        for i in range(3):  # one address, one username: three tries, one per node
            r = await cluster.api(i).post("/auth/login", wrong)
            assert r.status == 401, r.body
        for i in range(3):
            r = await cluster.api(i).post("/auth/login", wrong)
            assert r.status == 429 and r.error_code == "rate_limited", r.body
            assert float(r.headers["Retry-After"]) > 0
    finally:
        await cluster.stop()
