"""SFU worker settings (sfu/config.py): every bad SFU_* value stops the start with one line
naming the variable."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from fastsock.config_values import ConfigError
from sfu.config import SfuSettings, load_sfu_settings

pytestmark = pytest.mark.once

SECRET = "w" * 40
BASE = {
    "SFU_PUBLIC_URL": "ws://127.0.0.1:8890/ws",
    "SFU_CONTROL_URL": "http://127.0.0.1:8888",
    "SFU_SECRET": SECRET,
}


def test_defaults() -> None:
    settings = load_sfu_settings(BASE)
    assert settings == SfuSettings(
        public_url="ws://127.0.0.1:8890/ws", control_url="http://127.0.0.1:8888", secret=SECRET
    )
    assert settings.probe_url == "http://127.0.0.1:8890/healthz"
    assert (settings.rtc_min_port, settings.rtc_max_port, settings.capacity) == (40000, 40999, 48)


def test_every_setting() -> None:
    settings = load_sfu_settings(
        BASE
        | {
            "SFU_PUBLIC_URL": "wss://sfu1.example.com/ws",
            "SFU_HOST": "0.0.0.0",
            "SFU_PORT": "9000",
            "SFU_HEALTH_URL": "http://10.0.0.5:9000/healthz",
            "SFU_RTC_IPS": "10.0.0.5, 192.168.1.5",
            "SFU_RTC_PUBLIC_IP": "203.0.113.7",
            "SFU_RTC_MIN_PORT": "50000",
            "SFU_RTC_MAX_PORT": "50099",
            "SFU_CAPACITY": "100",
            "SFU_DRAIN_TIMEOUT_S": "5.5",
            "SFU_METRICS_TOKEN": "m" * 20,
            "SFU_LOG_LEVEL": "debug",
            "SFU_ENV": "production",
        }
    )
    assert settings.rtc_ips == ("10.0.0.5", "192.168.1.5")
    assert settings.rtc_public_ip == "203.0.113.7"
    assert (settings.port, settings.capacity, settings.drain_timeout_s) == (9000, 100, 5.5)
    assert settings.probe_url == "http://10.0.0.5:9000/healthz"
    assert (settings.log_level, settings.env) == ("DEBUG", "production")


@pytest.mark.parametrize(
    ("changes", "variable"),
    [
        ({"SFU_PUBLIC_URL": ""}, "SFU_PUBLIC_URL must be set"),
        ({"SFU_PUBLIC_URL": "http://127.0.0.1:8890/ws"}, "SFU_PUBLIC_URL"),
        ({"SFU_PUBLIC_URL": "ws://127.0.0.1:8890/"}, "SFU_PUBLIC_URL"),
        ({"SFU_PUBLIC_URL": "ws:///ws"}, "SFU_PUBLIC_URL"),
        ({"SFU_CONTROL_URL": ""}, "SFU_CONTROL_URL must be set"),
        ({"SFU_CONTROL_URL": "ftp://fastsock"}, "SFU_CONTROL_URL"),
        ({"SFU_CONTROL_URL": "http://fast\nsock"}, "SFU_CONTROL_URL"),
        ({"SFU_SECRET": ""}, "SFU_SECRET must be set"),
        ({"SFU_SECRET": "short"}, "SFU_SECRET must be at least 32"),
        ({"SFU_SECRET": " " + SECRET}, "SFU_SECRET must not begin"),
        ({"SFU_SECRET": '"' + SECRET + '"'}, "SFU_SECRET must not begin"),
        ({"SFU_SECRET": SECRET + "\x01x"}, "SFU_SECRET must not contain"),
        ({"SFU_PORT": "http"}, "SFU_PORT"),
        ({"SFU_PORT": "0"}, "SFU_PORT"),
        ({"SFU_PORT": "70000"}, "SFU_PORT"),
        ({"SFU_HEALTH_URL": "ws://x/healthz"}, "SFU_HEALTH_URL"),
        ({"SFU_RTC_IPS": "10.0.0.300"}, "SFU_RTC_IPS"),
        ({"SFU_RTC_IPS": " , "}, "SFU_RTC_IPS"),
        ({"SFU_RTC_PUBLIC_IP": "sfu.example.com"}, "SFU_RTC_PUBLIC_IP"),
        ({"SFU_RTC_MIN_PORT": "80"}, "SFU_RTC_MIN_PORT"),
        ({"SFU_RTC_MAX_PORT": "x"}, "SFU_RTC_MAX_PORT"),
        ({"SFU_RTC_MIN_PORT": "41000"}, "SFU_RTC_MIN_PORT must not be above SFU_RTC_MAX_PORT"),
        ({"SFU_RTC_MAX_PORT": "40009"}, "must hold at least SFU_CAPACITY (48) ports"),
        ({"SFU_CAPACITY": "0"}, "SFU_CAPACITY"),
        ({"SFU_CAPACITY": "1001"}, "SFU_CAPACITY must be at most 1000"),
        ({"SFU_DRAIN_TIMEOUT_S": "-1"}, "SFU_DRAIN_TIMEOUT_S"),
        ({"SFU_DRAIN_TIMEOUT_S": "nan"}, "SFU_DRAIN_TIMEOUT_S"),
        ({"SFU_LOG_LEVEL": "loud"}, "SFU_LOG_LEVEL"),
        ({"SFU_ENV": "prod"}, "SFU_ENV"),
        ({"SFU_ENV": "production"}, "SFU_PUBLIC_URL must be a wss:// URL when SFU_ENV=production"),
    ],
)
def test_bad_values_name_the_variable(changes: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(variable)) as raised:
        load_sfu_settings(BASE | changes)
    assert "\n" not in str(raised.value)


def test_bad_setting_stops_the_process_with_one_line() -> None:
    """`python -m sfu` exits 2 with one stderr line, before it imports aiortc or listens."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFU_")}
    result = subprocess.run(
        [sys.executable, "-m", "sfu"],
        env=env | BASE | {"SFU_CAPACITY": "lots"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "sfu: configuration error: SFU_CAPACITY must be a positive number, got 'lots'"
    ]
    assert result.stdout == ""


def test_mismatched_aiortc_stops_the_process_with_one_line() -> None:
    """The worker relies on private aiortc internals: another version must not start."""
    shim = (
        "import importlib.metadata as m, runpy; real = m.version; "
        "m.version = lambda name: '9.9.9' if name == 'aiortc' else real(name); "
        "runpy.run_module('sfu', run_name='__main__', alter_sys=True)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFU_")}
    result = subprocess.run(
        [sys.executable, "-c", shim], env=env | BASE, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("sfu: aiortc 9.9.9 is not the pinned 1.16.0"), line
