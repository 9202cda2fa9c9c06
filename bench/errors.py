"""The benchmarks' one error: a run that could not complete. Its own module because both
common.py (HTTP, WebSocket) and processes.py (the servers) raise it."""


class BenchError(Exception):
    """The run could not complete (server, HTTP or protocol failure)."""
