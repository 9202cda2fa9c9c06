"""Directories that hold private data (the database, secrets, uploads)."""

from __future__ import annotations

import os
from pathlib import Path


def private_dir(path: Path) -> None:
    """Create `path` (and missing parents) readable by its owner only, and tighten an existing
    one we own; a directory shared on purpose by someone else is left as it is."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_mode & 0o077 and info.st_uid == os.getuid():
        path.chmod(0o700)
