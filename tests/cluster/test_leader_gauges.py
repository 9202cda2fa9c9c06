"""The group-call gauges in cluster mode: only the call leader sweeps the SFU workers and so
exports live `fastsock_sfu_workers` / `fastsock_group_calls_active`; a node that stops leading
exports 0, not the figures of its last sweep (the dashboard's `max by (state)` and the
FastSockSfuWorkerLost alert read every node)."""

from __future__ import annotations

from pathlib import Path

from fastsock.cluster.calls import LEASE
from tests.cluster.conftest import Nodes, until
from tests.cluster.test_calls import _leader, _taken_over
from tests.conftest import SFU_SECRET
from tests.realtime.fake_workers import FakeWorker, joined


def gauges(cluster: Nodes, index: int) -> tuple[float | None, float | None]:
    """(fastsock_sfu_workers{state="up"}, fastsock_group_calls_active) as node `index`
    exports them."""
    ctx = cluster.servers[index].ctx
    assert ctx is not None
    registry = ctx.metrics.registry
    return (
        registry.get_sample_value("fastsock_sfu_workers", {"state": "up"}),
        registry.get_sample_value("fastsock_group_calls_active"),
    )


async def test_a_node_that_stops_leading_exports_0_for_the_sfu_gauges(
    cluster_db: str, redis_url: str, tmp_path: Path
) -> None:
    cluster = Nodes(cluster_db, redis_url, tmp_path)
    worker: FakeWorker | None = None
    try:
        for _ in range(2):  # node 0, started first, leads
            await cluster.start(sfu_secret=SFU_SECRET, sfu_heartbeat_s=1.0)
        api = cluster.api(1)
        worker = await FakeWorker(api).start()
        alice = await api.register()
        room = await api.group(alice)
        await joined(await api.ws(alice), room, worker)
        await until(lambda: gauges(cluster, 0) == (1, 1), "the leader's sweep counts them")

        # As if node 0's lease had lapsed (a stall) and node 1 had taken it.
        old = await _leader(cluster)
        await cluster.hub(0).link.redis.set(LEASE, cluster.hub(1).node_id, px=5000)
        await _taken_over(cluster, old)
        await until(lambda: gauges(cluster, 1) == (1, 1), "the new leader's sweep counts them")
        # Node 0 may have heard of the new leader first: it stops leading at its next look at
        # the lease.
        await until(lambda: gauges(cluster, 0) == (0, 0), "the former leader's gauges read 0")
    finally:
        if worker is not None:
            await worker.die()
        await cluster.stop()
