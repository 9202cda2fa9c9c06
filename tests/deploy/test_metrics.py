"""Metrics, dashboard and alert rules (design.md section 7; issue 13).

Real tools on real scrapes: a FastSock node (and a cluster node, for Redis) and an SFU worker
are started, given traffic so that labelled series exist, and their `/metrics` goes through
`promtool check metrics` and prometheus_client's parser. The alert rules go through
`promtool check rules` and their unit tests (`promtool test rules`); every metric the Grafana
dashboard and the rules query must be one of those exported. promtool is Debian's
`prometheus` package: without it these tests fail (CI installs it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import AsyncHTTPClient

from fastsock.app import Server
from fastsock.metrics import Metrics
from fastsock.services.group_call import MOVE_DRAIN, MOVE_LOST
from tests.conftest import RELAXED, make_settings
from tests.deploy.tools import tool
from tests.mongo_standin import EmbeddedMongo
from tests.redis_server import RedisServer
from tests.sfu.conftest import SFU_SECRET, StubControl
from tests.sfu.workers import SfuWorker
from tests.support import Api

pytestmark = pytest.mark.once  # no store-dependent behaviour: the sqlite pass runs it

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "config" / "deploy" / "prometheus"
ALERTS = RULES_DIR / "alerts.yml"
ALERTS_TEST = RULES_DIR / "alerts_test.yml"
DASHBOARDS = sorted((ROOT / "config" / "grafana" / "dashboards").glob("*.json"))
METRICS_TOKEN = "metrics-scrape-token-" + "m" * 24
WAIT_S = 20.0

# design.md section 7, plus what the alert rules need: exposed name -> (type, label names).
SERVER_SPEC: dict[str, tuple[str, set[str]]] = {
    "fastsock_ws_connections": ("gauge", set()),
    "fastsock_messages_total": ("counter", set()),
    "fastsock_events_delivered_total": ("counter", {"type"}),
    "fastsock_event_delivery_seconds": ("histogram", set()),
    "fastsock_http_request_seconds": ("histogram", {"method", "route", "status"}),
    "fastsock_db_operation_seconds": ("histogram", {"command"}),
    "fastsock_calls_active": ("gauge", set()),
    "fastsock_rate_limited_total": ("counter", {"kind"}),
    "fastsock_resume_total": ("counter", {"outcome"}),
    "fastsock_database_up": ("gauge", set()),
    "process_cpu_seconds_total": ("counter", set()),
    "process_resident_memory_bytes": ("gauge", set()),
}
CLUSTER_SPEC = {"fastsock_redis_up": ("gauge", set[str]())}
SFU_SPEC: dict[str, tuple[str, set[str]]] = {
    "sfu_peers": ("gauge", set()),
    "sfu_tracks_forwarded": ("gauge", set()),
    "sfu_forward_seconds": ("histogram", set()),
    "sfu_cpu_ratio": ("gauge", set()),
    "process_cpu_seconds_total": ("counter", set()),
}
# Prometheus's own series about each scrape target, not exported by the targets.
SCRAPE_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}


def promtool(*args: str, stdin: str | None = None, cwd: Path | None = None) -> str:
    """Run promtool; fail the test with its output unless it exits 0."""
    binary = tool("promtool", "Debian's `prometheus` package (apt-get install prometheus)")
    done = subprocess.run(
        [binary, *args], input=stdin, capture_output=True, text=True, cwd=cwd, timeout=60
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    return output


async def scrape(url: str, token: str | None = METRICS_TOKEN) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await AsyncHTTPClient().fetch(url, headers=headers, raise_error=False)
    assert response.code == 200, f"{url}: {response.code} {response.body[:200]!r}"
    return response.body.decode()


def families(exposition: str) -> dict[str, tuple[str, set[str]]]:
    """Exposed metric name -> (type, label names of its samples, `le` left out)."""
    found: dict[str, tuple[str, set[str]]] = {}
    for family in text_string_to_metric_families(exposition):
        name = family.name + ("_total" if family.type == "counter" else "")
        labels = {key for sample in family.samples for key in sample.labels} - {"le"}
        found[name] = (family.type, labels)
    return found


def series_names(exposition: str) -> set[str]:
    """The names PromQL can select: a histogram's _bucket/_sum/_count, a counter's _total,
    whether or not the family has samples yet (a labelled one before its first use)."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "info": ("_info",),
    }
    names = set()
    for family in text_string_to_metric_families(exposition):
        names |= {family.name + s for s in suffixes.get(family.type, ("",))}
    return names


# --- live scrapes ------------------------------------------------------------------------------


async def single_node_scrape(data_dir: Path) -> str:
    """A node on the embedded database after traffic touching each labelled metric."""
    limits = dataclasses.replace(RELAXED, pings_per_s=0.001, pings_burst=1)
    server = Server(make_settings(None, data_dir, metrics_token=METRICS_TOKEN, limits=limits))
    await server.start()
    try:
        api = Api(server.port)
        alice, bob = await api.register(), await api.register()
        room_id = await api.group(alice, bob)
        ws = await api.ws(bob)
        await api.send(alice, room_id, "hello")
        await ws.expect("message.new")
        # A path with an id in it: counted under its route template, /rooms/{id}.
        assert (await api.get(f"/rooms/{'f' * 24}", alice)).status == 403
        await ws.send("ping", ref="p1")
        await ws.expect("pong")
        await ws.send("ping", ref="p2")
        assert (await ws.expect("error"))["code"] == "rate_limited"
        resumed = await api.ws(bob, resume={"session": "s" * 24, "last_seq": 0})
        assert resumed.ready is not None and resumed.ready["resume"] == "resync"
        ws.close()
        resumed.close()
        return await scrape(f"http://127.0.0.1:{server.port}/metrics")
    finally:
        await server.stop()


async def cluster_node_scrape(mongo: EmbeddedMongo, redis: RedisServer, data_dir: Path) -> str:
    server = Server(
        make_settings(
            mongo.uri_for("metrics" + uuid.uuid4().hex[:12]),
            data_dir,
            redis_url=redis.url,
            metrics_token=METRICS_TOKEN,
        )
    )
    await server.start()
    try:
        return await scrape(f"http://127.0.0.1:{server.port}/metrics")
    finally:
        await server.stop()


async def sfu_worker_scrape() -> str:
    """An idle worker after two heartbeats (the first has no CPU figure)."""
    control = await StubControl().start()
    try:
        async with SfuWorker(control.url, SFU_SECRET, metrics_token=METRICS_TOKEN) as worker:
            await control.wait_for(lambda: len(control.heartbeats.get(worker.id, [])) >= 2, WAIT_S)
            return await scrape(f"http://127.0.0.1:{worker.port}/metrics")
    finally:
        await control.stop()


@pytest.fixture(scope="module")
async def expositions(
    tmp_path_factory: pytest.TempPathFactory, mongo: EmbeddedMongo
) -> AsyncIterator[dict[str, str]]:
    redis = RedisServer(tmp_path_factory.mktemp("redis"))
    redis.start()
    try:
        yield {
            "server": await single_node_scrape(tmp_path_factory.mktemp("node")),
            "cluster": await cluster_node_scrape(mongo, redis, tmp_path_factory.mktemp("cluster")),
            "sfu": await sfu_worker_scrape(),
        }
    finally:
        redis.stop()


@pytest.mark.parametrize("target", ["server", "cluster", "sfu"])
def test_scrape_passes_promtool_check_metrics(expositions: dict[str, str], target: str) -> None:
    promtool("check", "metrics", stdin=expositions[target])


@pytest.mark.parametrize(
    ("target", "spec"),
    [("server", SERVER_SPEC), ("cluster", CLUSTER_SPEC), ("sfu", SFU_SPEC)],
)
def test_spec_metrics_have_their_type_and_labels(
    expositions: dict[str, str], target: str, spec: dict[str, tuple[str, set[str]]]
) -> None:
    found = families(expositions[target])
    wrong = {name: found.get(name) for name, want in spec.items() if found.get(name) != want}
    assert not wrong, f"{target}: expected {[(n, spec[n]) for n in wrong]}, got {wrong}"


def test_http_route_label_is_the_route_template(expositions: dict[str, str]) -> None:
    """Raw paths would make a series per room id: unbounded cardinality."""
    routes = {
        sample.labels["route"]
        for family in text_string_to_metric_families(expositions["server"])
        if family.name == "fastsock_http_request_seconds"
        for sample in family.samples
        if "route" in sample.labels
    }
    assert {"/rooms/{id}", "/rooms/{id}/messages", "/ws"} <= routes, routes
    assert not any(re.search(r"/[0-9a-f]{24}", route) for route in routes), routes


def test_counters_the_alerts_watch_are_exported_at_0_from_the_start() -> None:
    """increase() sees nothing of a series first scraped at 1: the first SFU worker lost or
    join refused after a start would never alert. Their label values are known up front."""
    exposition = Metrics().render().decode()
    for reason in (MOVE_DRAIN, MOVE_LOST):
        assert f'fastsock_sfu_moves_total{{reason="{reason}"}} 0.0' in exposition
    for outcome in ("admitted", "no_worker", "worker_full", "call_full", "not_configured"):
        assert f'fastsock_sfu_admissions_total{{outcome="{outcome}"}} 0.0' in exposition


def test_redis_up_only_in_cluster_mode(expositions: dict[str, str]) -> None:
    assert "fastsock_redis_up" not in families(expositions["server"])
    assert "fastsock_redis_up 1.0" in expositions["cluster"].splitlines()
    assert "fastsock_database_up 1.0" in expositions["server"].splitlines()


async def test_up_gauges_follow_the_database_and_redis(tmp_path: Path) -> None:
    """The gauges the outage alerts watch turn 0 while Redis, then MongoDB, are away, and 1
    again once they are back (each scrape checks)."""
    mongo = EmbeddedMongo(sqlite_path=None)
    await mongo.start()
    (tmp_path / "redis").mkdir()
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    settings = make_settings(
        mongo.uri_for("outage"), tmp_path / "node", redis_url=redis.url, metrics_token=METRICS_TOKEN
    )
    server = Server(settings)
    try:
        await server.start()
        url = f"http://127.0.0.1:{server.port}/metrics"
        await until_scraped(url, "fastsock_database_up 1.0", "fastsock_redis_up 1.0")
        redis.stop()
        await until_scraped(url, "fastsock_database_up 1.0", "fastsock_redis_up 0.0")
        redis.start(redis.port)  # the same address: the node reconnects by itself
        await until_scraped(url, "fastsock_redis_up 1.0")
        await mongo.stop()
        await until_scraped(url, "fastsock_database_up 0.0", "fastsock_redis_up 1.0")
        await mongo.start()  # the same port
        await until_scraped(url, "fastsock_database_up 1.0")
    finally:
        await server.stop()
        redis.stop()
        await mongo.stop()


async def until_scraped(url: str, *lines: str) -> None:
    """Scrape until every line is in the exposition, at most WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while not set(lines) <= set(exposed := (await scrape(url)).splitlines()):
        assert time.monotonic() < deadline, f"not within {WAIT_S}s: {lines}; last: " + str(
            [line for line in exposed if line.startswith(("fastsock_database", "fastsock_redis"))]
        )
        await asyncio.sleep(0.05)


# --- alert rules -------------------------------------------------------------------------------


def test_alert_rules_pass_promtool_check_rules() -> None:
    promtool("check", "rules", str(ALERTS))


def test_alert_rules_unit_tests_pass() -> None:
    """alerts_test.yml: each alert fires on a synthetic failure and not on a healthy series."""
    promtool("test", "rules", ALERTS_TEST.name, cwd=RULES_DIR)


def test_every_alert_has_severity_for_and_runbook() -> None:
    rules = [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]
    alerts = {rule["alert"] for rule in rules}
    needed = {
        "FastSockNodeDown",
        "FastSockDatabaseDown",
        "FastSockRedisDown",
        "FastSockSfuWorkerLost",
        "FastSockDeliveryLatencyHigh",
        "FastSockHigh5xxRate",
    }
    assert needed <= alerts, needed - alerts
    for rule in rules:
        assert rule.get("for"), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]
    tested = {
        case["alertname"]
        for test in load_yaml(ALERTS_TEST)["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert alerts <= tested, f"alerts never shown firing in alerts_test.yml: {alerts - tested}"


# --- what the dashboard and the rules query ----------------------------------------------------

# PromQL words that are not metric names, and the clauses whose parentheses hold label names.
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
PROMQL_WORDS |= {"and", "or", "unless", "inf", "nan"}
LABEL_LISTS = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (Grafana variables allowed)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings: label values, regexes
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range durations, $__rate_interval
    expr = LABEL_LISTS.sub("", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.$])([a-zA-Z_:][\w:]*)(\s*\()?", expr):
        word, call = match.groups()
        if not call and word.lower() not in PROMQL_WORDS:
            names.add(word)
    return names


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for panel in panels_of(dashboard) for t in panel.get("targets", [])]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            exprs += re.findall(r"label_values\(([^,)]+)", query)
    return exprs


def rule_exprs() -> list[str]:
    return [rule["expr"] for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]


def test_metric_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (instance, le) (rate(a_bucket{x=~"b|c"}[5m])))'
        ' / on(instance) group_left up{job="x"} > bool 0.9 * 256 or max(b) unless c'
        ' + label_replace(rate(d_count{instance=~"$instance"}[$__rate_interval]),'
        ' "k", "$1", "s", "(.)")'
    )
    assert metric_names(expr) == {"a_bucket", "up", "b", "c", "d_count"}


def test_dashboards_and_rules_query_only_exported_metrics(expositions: dict[str, str]) -> None:
    exported = SCRAPE_SERIES.union(*(series_names(text) for text in expositions.values()))
    used: dict[str, set[str]] = {}
    for source, exprs in [
        *((path.name, dashboard_exprs(load_json(path))) for path in DASHBOARDS),
        (ALERTS.name, rule_exprs()),
    ]:
        for expr in exprs:
            for name in metric_names(expr):
                used.setdefault(name, set()).add(source)
    assert len(used) > 20, used  # the extraction found the queries
    missing = {name: sorted(sources) for name, sources in used.items() if name not in exported}
    assert not missing, f"queried but not exported: {missing}"


# --- dashboard structure -----------------------------------------------------------------------


def test_dashboard_is_structurally_sound() -> None:
    assert DASHBOARDS, "no dashboard in config/grafana/dashboards"
    for path in DASHBOARDS:
        dashboard = load_json(path)
        variables = {var["name"]: var for var in dashboard["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource", path.name
        assert variables["datasource"]["query"] == "prometheus", path.name
        assert "instance" in variables, path.name
        assert dashboard.get("uid") and dashboard.get("title"), path.name
        assert dashboard["schemaVersion"] >= 36, path.name
        panels = panels_of(dashboard)
        ids = [panel["id"] for panel in panels]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        boxes = []
        for panel in panels:
            where = f"{path.name}: panel {panel['id']} {panel.get('title')!r}"
            pos = panel["gridPos"]
            assert all(isinstance(pos.get(k), int) for k in "hwxy"), where
            assert pos["h"] > 0 and pos["w"] > 0 and pos["x"] >= 0 and pos["y"] >= 0, where
            assert pos["x"] + pos["w"] <= 24, f"{where}: wider than the 24-column grid"
            boxes.append((pos, where))
            if panel["type"] == "row":
                continue
            assert panel.get("title"), where
            assert panel.get("datasource") == {"type": "prometheus", "uid": "${datasource}"}, where
            targets = panel.get("targets")
            assert targets, f"{where}: no queries"
            refs = [target["refId"] for target in targets]
            assert len(refs) == len(set(refs)), f"{where}: duplicate refIds"
            assert all(target.get("expr") for target in targets), where
        for i, (a, where_a) in enumerate(boxes):
            for b, where_b in boxes[i + 1 :]:
                assert not overlap(a, b), f"{where_a} overlaps {where_b}"


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    """Every panel query is valid PromQL: promtool checks them as recording rules, with the
    Grafana variables given values."""
    exprs = [expr for path in DASHBOARDS for expr in dashboard_exprs(load_json(path))]
    rules = [
        {"record": f"dashboard:query{i}", "expr": grafana_to_promql(expr)}
        for i, expr in enumerate(exprs)
    ]
    queries = tmp_path / "dashboard_queries.yml"
    queries.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    promtool("check", "rules", str(queries))


def test_grafana_provisioning() -> None:
    datasources = load_yaml(ROOT / "config/grafana/provisioning/datasources/prometheus.yml")
    [source] = datasources["datasources"]
    assert (source["type"], source["url"]) == ("prometheus", "http://prometheus:9090")
    providers = load_yaml(ROOT / "config/grafana/provisioning/dashboards/fastsock.yml")
    assert [p["options"]["path"] for p in providers["providers"]] == ["/etc/grafana/dashboards"]


# --- helpers -----------------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_json(path: Path) -> Any:
    return json.loads(path.read_text())


def panels_of(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    out: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out += panel.get("panels", [])
    return out


def overlap(a: dict[str, int], b: dict[str, int]) -> bool:
    return (
        a["x"] < b["x"] + b["w"]
        and b["x"] < a["x"] + a["w"]
        and a["y"] < b["y"] + b["h"]
        and b["y"] < a["y"] + a["h"]
    )


def grafana_to_promql(expr: str) -> str:
    for variable, value in (("$__rate_interval", "5m"), ("$instance", ".*"), ("$worker", ".*")):
        expr = expr.replace(variable, value)
    assert "$" not in expr.replace("${1}", ""), f"unknown Grafana variable in {expr}"
    return expr
