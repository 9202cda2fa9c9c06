"""`fastsock serve` (also `python -m fastsock serve`)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from fastsock import logs
from fastsock.config import ConfigError, load_settings
from fastsock.store import is_unavailable


async def _serve(config_file: str | None) -> int:
    from fastsock.app import Server

    settings = load_settings(config_file=config_file)
    logs.setup(settings.log_level)
    server = Server(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
    except BaseException:
        await server.stop()
        raise
    await stop.wait()
    await server.stop()
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="fastsock", description="FastSock chat server")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--config", help="file of FASTSOCK_KEY=value lines (env wins)")
    args = parser.parse_args(argv)
    try:
        sys.exit(asyncio.run(_serve(args.config)))
    except ConfigError as exc:
        print(f"fastsock: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    except (OSError, RuntimeError) as exc:
        print(f"fastsock: cannot start: {exc}", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:
        if not is_unavailable(exc):
            raise
        print(f"fastsock: cannot start: database unreachable: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
