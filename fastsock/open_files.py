"""The process's open-file limit (RLIMIT_NOFILE), raised at start by FastSock (each connection
is a descriptor: the soft limit bounds them, app.py) and by an SFU worker (one UDP socket per
peer). Containers and systemd often start processes with a soft limit of 1024 under a far
higher hard limit, which an unprivileged process may raise its soft limit to."""

from __future__ import annotations

import logging
import resource

log = logging.getLogger("fastsock")


def raise_open_files_limit() -> int:
    """Raise the soft limit to the hard one; the soft limit now (logged when raised, or when
    the system refuses)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:  # a hard limit above the kernel's cap (macOS)
        fields = {"soft": soft, "hard": hard, "error": str(exc)}
        log.warning("open_files_limit_not_raised", extra={"fields": fields})
        return soft
    log.info("open_files_limit_raised", extra={"fields": {"from": soft, "to": hard}})
    return hard
