"""Finding the offline validators the tests/deploy checks run."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest


def tool(name: str, package: str) -> str:
    """The virtualenv's copy first (PyPI-pinned validators), then the system's; a missing one
    fails the test (never skips it): CI installs every one."""
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: install {package} (.ci/run does)")
    return path
