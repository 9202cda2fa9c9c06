"""`fastsock backup` / `fastsock restore`: a round trip while the server runs and a writer keeps
sending, and every refusal (damaged or malformed archive, existing data, running server, newer
schema, MongoDB, an OUT inside the live data) leaving the data dir as it was."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import gzip
import hashlib
import io
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import tarfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from fastsock import backup, restore
from fastsock.__main__ import main
from fastsock.app import Server
from fastsock.blobs.local import LocalBlobs, lock_dir
from fastsock.config import ConfigError
from fastsock.store.sqlite import schema
from fastsock.store.sqlite.engine import InUse, open_private
from tests.conftest import make_settings
from tests.support import Api, User

pytestmark = pytest.mark.once  # the embedded database, whichever pass this is

FASTSOCK = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "fastsock"
MAX_LIVE_SENDS = 400  # the writer's bound while the backup runs
PASSWORD = "mongo-pa55word"
MONGO_URI = f"mongodb://admin:{PASSWORD}@db1:27017,db2:27017/fastsock?replicaSet=rs0"
S3 = {"FASTSOCK_BLOB_BACKEND": "s3", "FASTSOCK_S3_BUCKET": "chat-files"}
UPLOAD = "naïve café ☕ — 日本語 😀\n".encode() * 500 + bytes(range(32, 127))


def env_for(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTSOCK_")}
    return env | {"FASTSOCK_DATA_DIR": str(data_dir)} | extra


async def cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(FASTSOCK), *args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def run_main(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    data_dir: Path,
    *args: str,
    **env: str,
) -> tuple[int, str, str]:
    """The CLI in this process (faster than a subprocess for the refusals)."""
    for key in list(os.environ):
        if key.startswith("FASTSOCK_"):
            monkeypatch.delenv(key)
    for key, value in (env | {"FASTSOCK_DATA_DIR": str(data_dir)}).items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exit_.value.code or 0), out, err


async def start(data_dir: Path, **overrides: object) -> Server:
    # The data dir's own secret.
    server = Server(make_settings(None, data_dir, jwt_secret="", **overrides))
    await server.start()
    return server


async def stop(server: Server) -> None:
    await server.stop()


async def history(api: Api, user: User, room: str) -> list[dict[str, Any]]:
    """Every message of the room, oldest first."""
    seen: list[dict[str, Any]] = []
    before = None
    while True:
        r = await api.get(
            f"/history/room/{room}?limit=100" + (f"&before={before}" if before else ""), user
        )
        assert r.status == 200, r.body
        seen.extend(r.body["messages"])
        if not r.body["has_more"]:
            return seen[::-1]
        before = seen[-1]["id"]


async def download(api: Api, user: User, upload_id: str) -> bytes:
    request = HTTPRequest(
        f"{api.base}/uploads/{upload_id}", headers={"Authorization": f"Bearer {user.access_token}"}
    )
    resp = await AsyncHTTPClient().fetch(request, raise_error=False)
    assert resp.code == 200, resp.body
    return resp.body


async def attach(api: Api, user: User, room: str) -> str:
    """Upload UPLOAD and send it in `room`; returns the upload's id."""
    r = await api.request(
        "POST",
        "/uploads?filename=notes.txt",
        raw=UPLOAD,
        token=user.access_token,
        headers={"Content-Type": "text/plain"},
    )
    assert r.status == 201, r.body
    body = {"client_msg_id": uuid.uuid4().hex, "text": "file", "attachment_ids": [r.body["id"]]}
    r2 = await api.post(f"/rooms/{room}/messages", body, user)
    assert r2.status == 201, r2.body
    return str(r.body["id"])


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def tree(root: Path) -> dict[str, str]:
    """Every file under root with its sha256: what 'nothing changed' compares."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


async def populated(data_dir: Path) -> None:
    """A stopped server's data dir with a user, a message and an attached upload."""
    server = await start(data_dir)
    try:
        api = Api(server.port)
        alice = await api.register()
        room = await api.group(alice)
        await api.send(alice, room, "before")
        await attach(api, alice, room)
    finally:
        await stop(server)


def repack(
    archive: Path,
    out: Path,
    change: dict[str, bytes],
    *,
    fix_checksums: bool,
    edit: Callable[[dict[str, Any]], None] = lambda manifest: None,
) -> None:
    """A copy of `archive` with some members' bytes replaced, the manifest's checksums updated
    to match them or not, and `edit` applied to the manifest."""
    with tarfile.open(archive, "r:gz") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]
    members.update(change)
    manifest = json.loads(members.pop("manifest.json"))
    if fix_checksums:
        for name, data in change.items():
            manifest["members"][name] = {
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
    edit(manifest)
    members["manifest.json"] = json.dumps(manifest).encode()
    with tarfile.open(out, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def plant_stale_wal(db: Path) -> None:
    """Leave a WAL beside `db` as a server killed with -9 would: committed frames not yet
    checkpointed into the file."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("INSERT INTO messages SELECT * FROM messages LIMIT 0")  # opens the WAL
    for _ in range(3):
        conn.execute("UPDATE messages SET text = text || ' edited'")
    wal = Path(f"{db}-wal").read_bytes()
    conn.close()  # checkpoints and removes the WAL
    Path(f"{db}-wal").write_bytes(wal)


# --- the round trip -----------------------------------------------------------------------------


async def test_round_trip_while_a_writer_keeps_sending(tmp_path: Path) -> None:
    source, target, archive = tmp_path / "a", tmp_path / "b", tmp_path / "backup.tar.gz"
    server = await start(source)
    try:
        api = Api(server.port)
        alice, bob = await api.register(), await api.register()
        room = await api.group(alice, bob)
        for text in ("hello", "naïve café ☕", "emoji 😀🎉👩‍👩‍👧 done", "日本語のテキスト"):
            await api.send(bob, room, text)
        upload_id = await attach(api, alice, room)
        file_message = (await history(api, alice, room))[-1]["id"]
        r = await api.request(
            "PUT", f"/messages/{file_message}/reactions/{quote('👍')}", token=bob.access_token
        )
        assert r.status == 200, r.body
        before_backup = await history(api, alice, room)

        # The backup runs in another process while this one keeps sending (bounded).
        proc = await asyncio.create_subprocess_exec(
            str(FASTSOCK),
            "backup",
            str(archive),
            env=env_for(source),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        live = 0
        while proc.returncode is None and live < MAX_LIVE_SENDS:
            await api.send(alice, room, f"live {live} ✓")
            live += 1
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        full = await history(api, alice, room)
    finally:
        await stop(server)
    assert mode(archive) == 0o600
    assert "fastsock backup: wrote" in out.decode()

    code, _, err_text = await cli("restore", str(archive), env=env_for(target))
    assert code == 0, err_text
    server = await start(target)
    try:
        api = Api(server.port)
        restored = await history(api, alice, room)  # alice's token from before: still valid
        # The snapshot is one point in the original history: a prefix of it, each message
        # exactly once, with everything sent before the backup started.
        assert len(restored) >= len(before_backup)
        assert restored == full[: len(restored)]
        assert len({m["id"] for m in restored}) == len(restored)
        assert [m["text"] for m in restored[:4]] == [m["text"] for m in before_backup[:4]]
        assert restored[4]["reactions"] == before_backup[4]["reactions"] != {}
        assert await download(api, bob, upload_id) == UPLOAD
    finally:
        await stop(server)


# --- refusals: nothing changes ------------------------------------------------------------------


@pytest.fixture
async def archive(tmp_path: Path) -> Path:
    """A backup of a stopped server's data dir."""
    await populated(tmp_path / "origin")
    path = tmp_path / "origin.tar.gz"
    code, _, err = await cli("backup", str(path), env=env_for(tmp_path / "origin"))
    assert code == 0, err
    return path


@pytest.fixture
async def existing(tmp_path: Path) -> Path:
    """Another stopped server's data dir, that restores must leave alone or replace."""
    await populated(tmp_path / "existing")
    return tmp_path / "existing"


def test_a_damaged_archive_changes_nothing(
    tmp_path: Path,
    archive: Path,
    existing: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fresh = tmp_path / "fresh"
    before = tree(existing)
    with tarfile.open(archive, "r:gz") as tar:
        db = tar.extractfile("fastsock.db").read()  # type: ignore[union-attr]
    flipped = db[:5000] + bytes([db[5000] ^ 0xFF]) + db[5001:]
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    tampered = tmp_path / "tampered.tar.gz"
    repack(archive, tampered, {"fastsock.db": flipped}, fix_checksums=False)
    not_gzip = tmp_path / "plain.tar.gz"
    not_gzip.write_bytes(gzip.decompress(archive.read_bytes())[:1000])
    escaping = tmp_path / "escaping.tar.gz"  # a member outside the data dir, checksum and all
    repack(archive, escaping, {"../../escaped": b"x"}, fix_checksums=True)
    for bad, words in (
        (escaping, "unexpected member"),
        (truncated, "damaged"),
        (tampered, "do not match their checksums"),
        (not_gzip, "damaged"),
    ):
        for data_dir, force in ((existing, "--force"), (fresh, "--force"), (fresh, "")):
            args = ["restore", str(bad)] + ([force] if force else [])
            code, _, err = run_main(monkeypatch, capsys, data_dir, *args)
            assert code == 1, (bad, err)
            assert len(err.splitlines()) == 1 and words in err, err
            assert tree(existing) == before
            assert not fresh.exists()
            assert not (tmp_path / "escaped").exists()


def test_an_archive_from_a_newer_schema_is_refused(
    tmp_path: Path,
    archive: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    work = tmp_path / "newer.db"
    with tarfile.open(archive, "r:gz") as tar:
        work.write_bytes(tar.extractfile("fastsock.db").read())  # type: ignore[union-attr]
    conn = sqlite3.connect(work)
    conn.execute(f"PRAGMA user_version = {schema.VERSION + 1}")
    conn.close()
    newer = tmp_path / "newer.tar.gz"

    def bump(manifest: dict[str, Any]) -> None:
        manifest["database"]["schema_version"] = schema.VERSION + 1

    repack(archive, newer, {"fastsock.db": work.read_bytes()}, fix_checksums=True, edit=bump)
    code, _, err = run_main(monkeypatch, capsys, tmp_path / "fresh", "restore", str(newer))
    assert code == 1
    assert "newer than this FastSock" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "fresh").exists()


def test_restore_over_existing_data_needs_force(
    tmp_path: Path,
    archive: Path,
    existing: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stray = existing / "uploads" / "ab" / "ab0000000000000000000000"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"only the old database knew this file")
    before = tree(existing)
    code, _, err = run_main(monkeypatch, capsys, existing, "restore", str(archive))
    assert code == 1 and "--force" in err and len(err.splitlines()) == 1, err
    assert tree(existing) == before

    plant_stale_wal(existing / "fastsock.db")
    code, _, err = run_main(monkeypatch, capsys, existing, "restore", str(archive), "--force")
    assert code == 0, err
    with tarfile.open(archive, "r:gz") as tar:
        expected = tar.extractfile("fastsock.db").read()  # type: ignore[union-attr]
    assert (existing / "fastsock.db").read_bytes() == expected
    assert not Path(f"{existing}/fastsock.db-wal").exists()  # the old WAL is not replayed
    conn = sqlite3.connect(existing / "fastsock.db")
    try:
        assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        assert (
            conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 2
        )  # the text and the file
    finally:
        conn.close()
    assert not stray.exists()
    assert (existing / "jwt-secret").read_bytes() == (tmp_path / "origin/jwt-secret").read_bytes()


async def test_restore_while_the_server_runs_is_refused(
    tmp_path: Path,
    archive: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    running = tmp_path / "running"
    server = await start(running)
    try:
        before = tree(running)
        code, _, err = run_main(monkeypatch, capsys, running, "restore", str(archive), "--force")
        assert code == 1 and "running" in err and len(err.splitlines()) == 1, err
        assert tree(running) == before
        assert await server.store.ping()  # type: ignore[union-attr]
    finally:
        await stop(server)


def test_a_failed_backup_leaves_the_previous_archive(
    tmp_path: Path,
    archive: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    previous = archive.read_bytes()

    def fail(*args: object) -> set[str]:
        raise OSError(errno.ENOSPC, "No space left on device")  # writing: no file name

    monkeypatch.setattr(backup, "_add_uploads", fail)
    code, _, err = run_main(monkeypatch, capsys, tmp_path / "origin", "backup", str(archive))
    assert code == 1 and len(err.splitlines()) == 1, err
    assert f"cannot write the archive in {tmp_path}: No space left" in err
    assert archive.read_bytes() == previous
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    assert not list((tmp_path / "origin").glob(".backup-*"))  # the staged snapshot

    code, _, err = run_main(monkeypatch, capsys, tmp_path / "nothing", "backup", str(archive))
    assert code == 1 and "no database" in err, err
    assert archive.read_bytes() == previous


# --- MongoDB and S3 -----------------------------------------------------------------------------


def test_mongodb_prints_guidance_and_archives_only_the_uploads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    blob = data / "uploads" / "ab" / "ab1111111111111111111111"
    blob.parent.mkdir(parents=True)
    blob.write_bytes(UPLOAD)
    out_file = tmp_path / "uploads.tar.gz"
    code, out, err = run_main(
        monkeypatch, capsys, data, "backup", str(out_file), FASTSOCK_MONGO_URI=MONGO_URI
    )
    assert code == backup.DATABASE_NOT_INCLUDED == 3
    assert PASSWORD not in out + err
    assert "mongodump --uri='mongodb://admin:<password>@db1:27017,db2:27017/" in err
    assert "--oplog" in err and "mongorestore" in err
    # mongorestore refuses --oplogReplay with --nsInclude: never one command with both.
    restores = [line for line in err.splitlines() if "mongorestore" in line]
    assert restores and not any("--oplogReplay" in r and "--nsInclude" in r for r in restores)
    with tarfile.open(out_file, "r:gz") as tar:
        assert tar.extractfile(f"uploads/ab/{blob.name}").read() == UPLOAD  # type: ignore[union-attr]
    assert mode(out_file) == 0o600

    # With S3 as well there is nothing to archive: guidance only, no file.
    nothing = tmp_path / "nothing.tar.gz"
    code, out, err = run_main(
        monkeypatch, capsys, data, "backup", str(nothing), FASTSOCK_MONGO_URI=MONGO_URI, **S3
    )
    assert code == 3 and not nothing.exists()
    assert "chat-files" in err and "mongodump" in err and PASSWORD not in out + err


async def test_sqlite_with_s3_uploads_archives_the_database_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    await populated(tmp_path / "data")
    (tmp_path / "data" / "uploads" / "ab").mkdir(parents=True)
    (tmp_path / "data" / "uploads" / "ab" / "ab2222222222222222222222").write_bytes(b"x")
    out_file = tmp_path / "db.tar.gz"
    code, _, err = run_main(monkeypatch, capsys, tmp_path / "data", "backup", str(out_file), **S3)
    assert code == 0, err
    assert "chat-files" in err
    with tarfile.open(out_file, "r:gz") as tar:
        assert sorted(tar.getnames()) == ["fastsock.db", "jwt-secret", "manifest.json"]


async def test_an_archive_from_an_older_schema_is_migrated_at_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    old = tmp_path / "old"
    old.mkdir()
    conn = sqlite3.connect(old / "fastsock.db", isolation_level=None)
    for statement in schema.MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    archive = tmp_path / "old.tar.gz"
    code, _, err = run_main(monkeypatch, capsys, old, "backup", str(archive))
    assert code == 0, err
    code, _, err = run_main(monkeypatch, capsys, tmp_path / "new", "restore", str(archive))
    assert code == 0, err
    server = await start(tmp_path / "new")
    try:
        assert (await Api(server.port).register()).id
    finally:
        await stop(server)
    conn = sqlite3.connect(tmp_path / "new" / "fastsock.db")
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.VERSION
    finally:
        conn.close()


# --- where backup writes ------------------------------------------------------------------------


async def test_backup_refuses_an_out_inside_the_live_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """OUT's rename would replace the database, an upload...: refused, however it is reached."""
    data, shared = tmp_path / "data", tmp_path / "shared-uploads"
    await populated(data)
    (data / "uploads" / "ab").mkdir(parents=True)
    (shared / "ab").mkdir(parents=True)
    (tmp_path / "link").symlink_to(data)
    before = tree(data), tree(shared)
    for out in (
        data / "fastsock.db",
        data / "jwt-secret",
        data / "uploads" / "ab" / "nightly.tar.gz",
        tmp_path / "link" / "fastsock.db",
    ):
        code, _, err = run_main(monkeypatch, capsys, data, "backup", str(out))
        assert code == 1 and len(err.splitlines()) == 1, err
        assert f"is inside {data}" in err, err
    out = shared / "ab" / "nightly.tar.gz"
    code, _, err = run_main(
        monkeypatch, capsys, data, "backup", str(out), FASTSOCK_UPLOAD_DIR=str(shared)
    )
    assert code == 1 and f"is inside {shared}" in err, err
    assert (tree(data), tree(shared)) == before


async def test_the_snapshot_is_staged_in_the_data_dir_and_leftovers_are_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only the compressed archive is written next to OUT; staging dirs left by a killed run
    (unlocked) are removed, a running one's (locked) are not."""
    data, outs = tmp_path / "data", tmp_path / "backups"
    await populated(data)
    outs.mkdir()
    old = 1_000_000_000.0  # 2001: long stale
    leftovers = [outs / ".fastsock-backup-killed", data / ".backup-killed"]
    running = outs / ".fastsock-backup-running"
    for path in (*leftovers, running):
        path.mkdir()
        (path / "archive.tar.gz").write_bytes(b"partial")
        os.utime(path, (old, old))
    staged: list[Path] = []
    snapshot = backup._snapshot

    def spy(source: Path, target: Path) -> Any:
        staged.append(target)
        return snapshot(source, target)

    monkeypatch.setattr(backup, "_snapshot", spy)
    fd = os.open(running, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        code, _, err = run_main(monkeypatch, capsys, data, "backup", str(outs / "b.tar.gz"))
    finally:
        os.close(fd)
    assert code == 0, err
    assert [p.parent.parent for p in staged] == [data]
    assert not any(p.exists() for p in leftovers)
    assert running.exists()
    assert not list(data.glob(".backup-*"))


# --- what is archived, what restore replaces ----------------------------------------------------


async def test_only_blobs_are_archived_and_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The upload dir may hold other things (lost+found, an operator's notes): backup leaves
    them out, restore --force leaves them alone. Files no row references are not archived."""
    origin = tmp_path / "origin"
    await populated(origin)
    orphan = origin / "uploads" / "ab" / "ab0000000000000000000000"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"no row references this file")
    archive = tmp_path / "origin.tar.gz"
    code, out, err = run_main(monkeypatch, capsys, origin, "backup", str(archive))
    assert code == 0, err
    assert "1 user, 2 messages; 1 upload file)" in out, out
    with tarfile.open(archive, "r:gz") as tar:
        names = tar.getnames()
    assert len(names) == 4 and not any(orphan.name in name for name in names), names

    target = tmp_path / "target"
    foreign = {
        "lost+found/x": b"fsck",
        "ops/README": b"notes",
        "6b/NOTES.txt": b"not a blob",
        ".hidden": b"dot file",
    }
    for name, data in foreign.items():
        (target / "uploads" / name).parent.mkdir(parents=True, exist_ok=True)
        (target / "uploads" / name).write_bytes(data)
    stale = target / "uploads" / "cd" / "cd1111111111111111111111"
    stale.parent.mkdir()
    stale.write_bytes(b"only the replaced database knew this file")
    code, _, err = run_main(monkeypatch, capsys, target, "restore", str(archive))
    assert code == 1 and f"uploads in {target / 'uploads'}" in err, err  # a blob: refused
    stale.unlink()
    code, _, err = run_main(monkeypatch, capsys, target, "restore", str(archive))
    assert code == 0, err  # foreign files are not uploads: no --force needed
    stale.write_bytes(b"only the replaced database knew this file")
    code, _, err = run_main(monkeypatch, capsys, target, "restore", str(archive), "--force")
    assert code == 0, err
    assert not stale.exists()
    for name, data in foreign.items():
        assert (target / "uploads" / name).read_bytes() == data


def build(
    source: Path,
    out: Path,
    *,
    extra: tuple[tarfile.TarInfo, ...] = (),
    manifest: bytes | None = None,
    manifest_first: bool = False,
    no_manifest: bool = False,
) -> None:
    """A copy of `source` with `extra` members (no data) added before the manifest, the
    manifest replaced by `manifest`, put first or left out."""
    with tarfile.open(source, "r:gz") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]
    original = members.pop("manifest.json")
    last = original if manifest is None else manifest
    with tarfile.open(out, "w:gz") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        if manifest_first:
            add("manifest.json", last)
        for name, data in members.items():
            add(name, data)
        for info in extra:
            tar.addfile(info)
        if not manifest_first and not no_manifest:
            add("manifest.json", last)


def special(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


def edited(edit: Callable[[dict[str, Any]], None]) -> Callable[[Path, Path], None]:
    def make(archive: Path, out: Path) -> None:
        repack(archive, out, {}, fix_checksums=False, edit=edit)

    return make


def raw_manifest(data: bytes) -> Callable[[Path, Path], None]:
    return lambda archive, out: build(archive, out, manifest=data)


def extra_member(info: tarfile.TarInfo) -> Callable[[Path, Path], None]:
    return lambda archive, out: build(archive, out, extra=(info,))


def short_secret(archive: Path, out: Path) -> None:
    repack(archive, out, {"jwt-secret": b"short"}, fix_checksums=True)


MALFORMED: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "symlink": (extra_member(special("uploads/ab/ab1", tarfile.SYMTYPE, "/etc")), "unexpected"),
    "hard link": (
        extra_member(special("uploads/ab/ab2", tarfile.LNKTYPE, "fastsock.db")),
        "unexpected",
    ),
    "device": (extra_member(special("uploads/ab/ab3", tarfile.CHRTYPE)), "unexpected"),
    "directory": (extra_member(special("uploads", tarfile.DIRTYPE)), "unexpected"),
    "duplicate": (extra_member(tarfile.TarInfo("jwt-secret")), "unexpected"),
    "member after the manifest": (
        lambda archive, out: build(archive, out, manifest_first=True),
        "unexpected",
    ),
    "no manifest": (
        lambda archive, out: build(archive, out, no_manifest=True),
        "has no manifest.json",
    ),
    "deep JSON": (raw_manifest(b"[" * 20_000 + b"]" * 20_000), "not valid JSON"),
    "no uploads": (edited(lambda m: m.pop("uploads")), "malformed (at uploads)"),
    "database a list": (edited(lambda m: m.update(database=[])), "malformed (at database)"),
    "uploads a string": (edited(lambda m: m.update(uploads="x")), "malformed (at uploads)"),
    "format_version true": (edited(lambda m: m.update(format_version=True)), "backup format"),
    "bytes true": (
        edited(lambda m: m["members"]["jwt-secret"].update(bytes=True)),
        "malformed (at bytes)",
    ),
    "no jwt_secret": (edited(lambda m: m.pop("jwt_secret")), "malformed (at jwt_secret)"),
    "database not included": (
        edited(lambda m: m["database"].update(included=False)),
        "malformed (at database.included)",
    ),
    "short secret": (short_secret, "too short"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_archive_changes_nothing(
    case: str,
    tmp_path: Path,
    archive: Path,
    existing: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make, words = MALFORMED[case]
    bad = tmp_path / "bad.tar.gz"
    make(archive, bad)
    before = tree(existing)
    code, _, err = run_main(monkeypatch, capsys, existing, "restore", str(bad), "--force")
    assert code == 1 and len(err.splitlines()) == 1 and words in err, err
    assert tree(existing) == before
    assert not list(existing.glob(".restore-*"))


def test_a_manifest_too_large_for_its_members_is_not_read(
    tmp_path: Path,
    archive: Path,
    existing: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A few KiB of gzip can expand to GiBs of manifest, which is read whole: bounded."""
    with tarfile.open(archive, "r:gz") as tar:
        manifest = tar.extractfile("manifest.json").read()  # type: ignore[union-attr]
    bomb = tmp_path / "bomb.tar.gz"
    build(archive, bomb, manifest=manifest + b" " * (2 * 1024 * 1024))  # still valid JSON
    assert bomb.stat().st_size < archive.stat().st_size + 10_000
    before = tree(existing)
    code, _, err = run_main(monkeypatch, capsys, existing, "restore", str(bomb), "--force")
    assert code == 1 and "manifest.json is too large" in err, err
    assert tree(existing) == before


def test_restore_checks_free_space_and_names_the_full_disk(
    tmp_path: Path,
    archive: Path,
    existing: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = tree(existing)
    real_usage = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real_usage(path)._replace(free=1000))
    code, _, err = run_main(monkeypatch, capsys, existing, "restore", str(archive), "--force")
    assert code == 1 and len(err.splitlines()) == 1, err
    assert "needs at least" in err and f"bytes in {existing}, 1000 are free" in err, err
    assert tree(existing) == before
    monkeypatch.undo()

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(restore.os, "fsync", full)
    code, _, err = run_main(monkeypatch, capsys, existing, "restore", str(archive), "--force")
    assert code == 1 and f"no space left in {existing}" in err and "damaged" not in err, err
    assert tree(existing) == before


# --- restore's locks and order ------------------------------------------------------------------


async def test_restore_refuses_while_a_server_uses_the_upload_dir(
    tmp_path: Path,
    archive: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A test restore into a scratch data dir sharing a live server's FASTSOCK_UPLOAD_DIR
    would delete the live uploads; and no server starts while a restore holds that dir."""
    shared = tmp_path / "shared-uploads"
    server = await start(tmp_path / "live", upload_dir=shared)
    try:
        live = shared / "ab" / "ab2222222222222222222222"
        live.parent.mkdir()
        live.write_bytes(b"a live upload")
        before = tree(shared)
        code, _, err = run_main(
            monkeypatch,
            capsys,
            tmp_path / "scratch",
            "restore",
            str(archive),
            "--force",
            FASTSOCK_UPLOAD_DIR=str(shared),
        )
        assert code == 1 and len(err.splitlines()) == 1, err
        assert f"a FastSock server is using the upload dir {shared}" in err, err
        assert tree(shared) == before
        assert not (tmp_path / "scratch").exists()
    finally:
        await stop(server)

    held = lock_dir(shared, shared=False)  # as restore holds it
    try:
        with pytest.raises(ConfigError, match="locked by `fastsock restore`"):
            await LocalBlobs(shared).check()
    finally:
        os.close(held)


def test_restore_locks_the_new_database_and_syncs_uploads_before_it(
    tmp_path: Path,
    archive: Path,
    existing: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The lock a server checks moves with the renamed file: none starts while stale uploads
    are still being removed. Upload renames are durable before the database's."""
    leftover = existing / ".restore-killed"  # an interrupted restore's plaintext copy
    leftover.mkdir()
    (leftover / "fastsock.db").write_bytes(b"old copy")
    db_path = existing / "fastsock.db"
    events: list[str] = []
    real_fsync_dir, real_replace = restore.fsync_dir, os.replace
    remove = restore._remove_unreferenced

    def fsync_dir(path: Path) -> None:
        events.append(f"fsync {path}")
        real_fsync_dir(path)

    def replace(source: Any, target: Any) -> None:
        events.append(f"replace {target}")
        real_replace(source, target)

    def removing(root: Path, keep: set[str]) -> None:
        with pytest.raises(InUse):
            os.close(open_private(db_path))
        events.append("remove")
        remove(root, keep)

    monkeypatch.setattr(restore, "fsync_dir", fsync_dir)
    monkeypatch.setattr(restore.os, "replace", replace)
    monkeypatch.setattr(restore, "_remove_unreferenced", removing)
    code, _, err = run_main(monkeypatch, capsys, existing, "restore", str(archive), "--force")
    assert code == 0, err
    assert events.index(f"fsync {existing / 'uploads'}") < events.index(f"replace {db_path}")
    assert events[-1] == "remove"
    assert not leftover.exists()


def test_a_failure_placing_the_database_leaves_the_secret(
    tmp_path: Path,
    archive: Path,
    existing: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The secret is placed after the database: old database, old secret, sessions valid."""
    secret = (existing / "jwt-secret").read_bytes()

    def fail(db_path: Path) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(restore, "_retire", fail)
    code, _, err = run_main(monkeypatch, capsys, existing, "restore", str(archive), "--force")
    assert code == 1, err
    assert (existing / "jwt-secret").read_bytes() == secret


async def test_the_secret_file_is_archived_and_restore_says_which_secret_signed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A cron job's environment may set FASTSOCK_JWT_SECRET while the server uses the file:
    the file is archived anyway, and restore says what to do about the variable."""
    await populated(tmp_path / "data")
    out = tmp_path / "env.tar.gz"
    env_secret = "s" * 40
    code, _, err = run_main(
        monkeypatch, capsys, tmp_path / "data", "backup", str(out), FASTSOCK_JWT_SECRET=env_secret
    )
    assert code == 0, err
    with tarfile.open(out, "r:gz") as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        assert "jwt-secret" in tar.getnames()
    assert manifest["jwt_secret"] == "env"
    code, _, err = run_main(monkeypatch, capsys, tmp_path / "restored", "restore", str(out))
    assert code == 0, err
    assert "made with FASTSOCK_JWT_SECRET set" in err, err
    code, _, err = run_main(
        monkeypatch,
        capsys,
        tmp_path / "again",
        "restore",
        str(out),
        FASTSOCK_JWT_SECRET=env_secret,
    )
    assert code == 0 and "JWT_SECRET" not in err, err
