"""`fastsock serve`, `turn`, `migrate`, `backup`, `restore` and `admin` (also `python -m fastsock
...`).

`turn` needs only the standard library (no database driver, no Tornado), so it runs on a
TURN host with a bare Python 3.13 and this checkout (turn/run)."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys

from fastsock.config import ConfigError, load_settings


async def _serve(config_file: str | None) -> int:
    from fastsock import logs
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
    assert server.store is not None
    # One line for people, besides the JSON log (which goes to stderr).
    host = settings.host if ":" not in settings.host else f"[{settings.host}]"
    print(
        f"FastSock is running at http://{host}:{server.port} ({server.store.description})",
        flush=True,
    )
    await stop.wait()
    await server.stop()
    return 0


def _turn(config_file: str | None, print_only: bool) -> int:
    from fastsock.calls import coturn

    settings = load_settings(config_file=config_file)
    if print_only:
        print(coturn.render(settings, redact=True), end="")
        return 0
    binary = shutil.which("turnserver")
    if binary is None:
        raise RuntimeError("turnserver not found on PATH (install coturn)")
    path = coturn.write_config(settings)
    # coturn replaces this process, so a supervisor's signals reach it directly.
    os.execv(binary, [binary, "-c", str(path)])


def _backup_or_restore(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fastsock import backup, restore

    settings = load_settings(config_file=args.config)
    try:
        if args.command == "backup":
            outcome = backup.backup(settings, Path(args.out))
        else:
            outcome = restore.restore(settings, Path(args.archive), args.force)
    except backup.BackupError as exc:
        print(f"fastsock {args.command}: {exc}", file=sys.stderr)
        return backup.FAILED
    except OSError as exc:  # disk full, permissions...: the temporary files are gone
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"fastsock {args.command}: {exc.strerror or exc}{where}", file=sys.stderr)
        return backup.FAILED
    except KeyboardInterrupt:
        after = "nothing written at OUT" if args.command == "backup" else "run it again"
        print(f"fastsock {args.command}: interrupted; {after}", file=sys.stderr)
        return 130
    return backup.report(outcome)


ADMIN_DB_TIMEOUT_S = 30.0


async def _admin(args: argparse.Namespace) -> int:
    """`fastsock admin grant|revoke USERNAME`, on the configured store (MongoDB: the servers may
    run; the embedded database: stop the server first, it holds the database)."""
    from fastsock.errors import ApiError
    from fastsock.services.server_admins import set_server_admin
    from fastsock.store import open_store

    store = open_store(load_settings(config_file=args.config))
    try:
        await store.prepare(ADMIN_DB_TIMEOUT_S)
        print(await set_server_admin(store, args.username, args.action == "grant"))
    except ApiError as exc:
        print(f"fastsock admin: {exc.message}", file=sys.stderr)
        return 1
    finally:
        await store.close()
    return 0


def _batch(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {raw!r}")
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="fastsock", description="FastSock chat server")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--config", help="file of FASTSOCK_KEY=value lines (env wins)")
    turn = sub.add_parser(
        "turn",
        help="run coturn configured from the FASTSOCK_TURN_* settings",
        description="Render coturn's config from the FASTSOCK_TURN_* settings into "
        "$FASTSOCK_DATA_DIR/turnserver.conf (mode 0600: it holds FASTSOCK_TURN_SECRET) and "
        "replace this process with `turnserver -c` on it.",
    )
    turn.add_argument("--config", help="file of FASTSOCK_KEY=value lines (env wins)")
    turn.add_argument(
        "--print",
        dest="print_only",
        action="store_true",
        help="print the config with the secret redacted, write nothing and start nothing",
    )
    migrate = sub.add_parser(
        "migrate",
        help="copy all data between the embedded database and MongoDB",
        description="Copy every collection from one store to another (stop the servers first), "
        "then compare the counts. SRC and DST are each a mongodb:// or mongodb+srv:// URI or a "
        "SQLite file path. An interrupted copy resumes where it stopped when run again.",
    )
    migrate.add_argument(
        "--from",
        dest="source",
        metavar="SRC",
        help="default: the embedded database, $FASTSOCK_DATA_DIR/fastsock.db",
    )
    migrate.add_argument("--to", dest="target", metavar="DST", help="default: $FASTSOCK_MONGO_URI")
    migrate.add_argument(
        "--batch", type=_batch, default=1000, help="documents per write (default 1000)"
    )
    migrate.add_argument("--config", help="file of FASTSOCK_KEY=value lines (env wins)")
    backup = sub.add_parser(
        "backup",
        help="archive the embedded database, the uploads and the generated JWT secret",
        description="Write OUT, a .tar.gz (mode 0600) with an online snapshot of the embedded "
        "database, the local uploads and the generated JWT secret, while the server runs. Exit "
        "0: written; 1: failed, OUT untouched; 2: usage or configuration error; 3: MongoDB: "
        "the database is not in OUT (only local uploads, if any): dump it with mongodump as "
        "printed.",
    )
    backup.add_argument("out", metavar="OUT", help="the archive to write, e.g. fastsock.tar.gz")
    backup.add_argument("--config", help="file of FASTSOCK_KEY=value lines (env wins)")
    restore = sub.add_parser(
        "restore",
        help="restore a `fastsock backup` archive into the data dir (server stopped)",
        description="Check ARCHIVE entirely, then put its uploads, database and JWT secret in "
        "place, in that order, then remove the uploads only the old database used. Exit 0: "
        "restored; 1: refused or failed (an interrupted restore leaves the old database or "
        "the new one: run it again with --force); 2: usage or configuration error.",
    )
    restore.add_argument("archive", metavar="ARCHIVE")
    restore.add_argument(
        "--force", action="store_true", help="replace an existing database, secret and uploads"
    )
    restore.add_argument("--config", help="file of FASTSOCK_KEY=value lines (env wins)")
    admin = sub.add_parser(
        "admin",
        help="make an account a server admin, or no longer one",
        description="Server admins can deactivate and reactivate accounts. The first account "
        "registered is always one; `grant` makes another account one, `revoke` undoes that. "
        "On MongoDB it also works while the servers run; on the embedded database (SQLite) "
        "stop the server first. Exit 0: done; 1: no such user, or the first account named "
        "for revoke.",
    )
    admin.add_argument("action", choices=("grant", "revoke"))
    admin.add_argument("username", metavar="USERNAME")
    admin.add_argument("--config", help="file of FASTSOCK_KEY=value lines (env wins)")
    args = parser.parse_args(argv)
    try:
        if args.command in ("backup", "restore"):
            sys.exit(_backup_or_restore(args))
        if args.command == "migrate":
            from fastsock.migrate import run
            from fastsock.store.locations import UsageError

            try:
                sys.exit(asyncio.run(run(args.source, args.target, args.batch, args.config)))
            except UsageError as exc:
                print(f"fastsock migrate: {exc}", file=sys.stderr)
                sys.exit(2)
            except KeyboardInterrupt:
                print("fastsock migrate: interrupted; run it again to resume", file=sys.stderr)
                sys.exit(130)
        if args.command == "admin":
            sys.exit(asyncio.run(_admin(args)))
        if args.command == "turn":
            sys.exit(_turn(args.config, args.print_only))
        sys.exit(asyncio.run(_serve(args.config)))
    except ConfigError as exc:
        print(f"fastsock: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    except (OSError, RuntimeError) as exc:
        print(f"fastsock: cannot start: {exc}", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:
        from fastsock.store import is_unavailable  # not at the top: `turn` runs without pymongo

        if not is_unavailable(exc):
            raise
        print(f"fastsock: cannot start: database unreachable: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
