"""Tracing's settings (fastsock/tracing.py load_config): which OTEL_* variables turn it on, and
a bad value of any the SDK would only warn about (or raise on deep inside) stops start-up with
one line naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastsock import tracing
from fastsock.config_values import ConfigError
from tests.test_tracing import no_otel_env  # noqa: F401  (autouse: no OTEL_* from outside)

pytestmark = pytest.mark.once  # no store in these


OTLP = {"OTEL_TRACES_EXPORTER": "otlp"}


@pytest.mark.parametrize(
    ("environ", "exporter"),
    [
        ({}, None),
        ({"OTEL_SERVICE_NAME": "chat"}, None),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, "otlp"),
        ({"OTEL_TRACES_EXPORTER": "console"}, "console"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "otlp"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://c/v1/traces"}, "otlp"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, None),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, None),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "false"}, "otlp"),
        # Off: the exporter's other settings are not read, so not checked.
        ({"OTEL_PROPAGATORS": "b3", "OTEL_EXPORTER_OTLP_TIMEOUT": "abc"}, None),
        (
            OTLP
            | {
                "OTEL_PROPAGATORS": "tracecontext, baggage",
                "OTEL_EXPORTER_OTLP_COMPRESSION": "GZIP",
                "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "none",
                "OTEL_EXPORTER_OTLP_TIMEOUT": "2.5",
                "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "10",
            },
            "otlp",
        ),
        (OTLP | {"OTEL_PROPAGATORS": "none"}, "otlp"),
    ],
)
def test_which_settings_turn_tracing_on(environ: dict[str, str], exporter: str | None) -> None:
    assert tracing.load_config(environ).exporter == exporter


@pytest.mark.parametrize(
    ("environ", "named_variable"),
    [
        ({"OTEL_TRACES_EXPORTER": "jaeger"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_SDK_DISABLED": "yes"}, "OTEL_SDK_DISABLED"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER": "sometimes"},
            "OTEL_TRACES_SAMPLER",
        ),
        (
            {
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                "OTEL_TRACES_SAMPLER_ARG": "10%",
            },
            "OTEL_TRACES_SAMPLER_ARG",
        ),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_BSP_SCHEDULE_DELAY": "soon"},
            "OTEL_BSP_SCHEDULE_DELAY",
        ),
        (OTLP | {"OTEL_PROPAGATORS": "tracecontex"}, "OTEL_PROPAGATORS"),
        (OTLP | {"OTEL_PROPAGATORS": "tracecontext,b3"}, "OTEL_PROPAGATORS"),
        (OTLP | {"OTEL_PROPAGATORS": "tracecontext,"}, "OTEL_PROPAGATORS"),
        (OTLP | {"OTEL_EXPORTER_OTLP_COMPRESSION": "zip"}, "OTEL_EXPORTER_OTLP_COMPRESSION"),
        (
            OTLP | {"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "br"},
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
        ),
        (OTLP | {"OTEL_EXPORTER_OTLP_TIMEOUT": "abc"}, "OTEL_EXPORTER_OTLP_TIMEOUT"),
        (OTLP | {"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "0"}, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"),
        (OTLP | {"OTEL_EXPORTER_OTLP_CERTIFICATE": "/no/ca.pem"}, "OTEL_EXPORTER_OTLP_CERTIFICATE"),
        (
            OTLP | {"OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY": "/no/key.pem"},
            "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
        ),
        (
            OTLP | {"OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE": "/no/cert.pem"},
            "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
        ),
    ],
)
def test_a_bad_value_names_its_variable(environ: dict[str, str], named_variable: str) -> None:
    with pytest.raises(ConfigError, match=named_variable):
        tracing.load_config(environ)


def test_readable_tls_files_pass(tmp_path: Path) -> None:
    pem = tmp_path / "ca.pem"
    pem.write_text("not parsed here: the exporter reads it")
    names = ("CERTIFICATE", "CLIENT_CERTIFICATE", "CLIENT_KEY")
    environ = OTLP | {f"OTEL_EXPORTER_OTLP_TRACES_{n}": str(pem) for n in names}
    assert tracing.load_config(environ).exporter == "otlp"


def clean_env(**otel: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "FASTSOCK_"))}
    return env | otel


@pytest.mark.parametrize(
    ("otel", "line"),
    [
        (
            {"OTEL_TRACES_SAMPLER": "sometimes"},
            "OTEL_TRACES_SAMPLER must be one of "
            + ", ".join(tracing.SAMPLERS)
            + ", got 'sometimes'",
        ),
        (
            {"OTEL_PROPAGATORS": "tracecontex"},  # the SDK raised on import: a traceback
            "OTEL_PROPAGATORS must list propagators of baggage, none, tracecontext, "
            "got 'tracecontex'",
        ),
    ],
)
def test_a_bad_value_stops_start_up_with_one_line(
    tmp_path: Path, otel: dict[str, str], line: str
) -> None:
    env = clean_env(OTEL_TRACES_EXPORTER="otlp", **otel)
    env |= {"FASTSOCK_DATA_DIR": str(tmp_path), "FASTSOCK_PORT": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "fastsock", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == ["fastsock: configuration error: " + line]


def test_an_unknown_propagator_is_harmless_while_tracing_is_off() -> None:
    """opentelemetry.propagate raises on import for an unknown OTEL_PROPAGATORS: FastSock and
    the SFU worker import it only once tracing is on (and the value checked)."""
    done = subprocess.run(
        [sys.executable, "-c", "import fastsock.tracing, fastsock.app, sfu.__main__"],
        env=clean_env(OTEL_PROPAGATORS="b3"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
