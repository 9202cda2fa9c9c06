"""Messages with attachments (REST and WebSocket), garbage collection of unattached uploads and
avatars. Every test runs on both storage backends (local disk and moto's S3)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from bson import ObjectId

from tests.conftest import BlobWorld
from tests.handlers.test_uploads import (
    error_code,
    fetch,
    image_bytes,
    upload,
    upload_count,
    upload_ok,
)
from tests.support import Api, Response, User


async def send(
    api: Api, user: User, room: str, text: str, attachment_ids: list[str], cid: str | None = None
) -> Response:
    body = {
        "client_msg_id": cid or uuid.uuid4().hex,
        "text": text,
        "attachment_ids": attachment_ids,
    }
    return await api.post(f"/rooms/{room}/messages", body, user)


async def history(api: Api, user: User, room: str) -> list[dict[str, Any]]:
    r = await api.get(f"/history/room/{room}", user)
    assert r.status == 200, r.body
    return r.body["messages"]


def thumb_key(view: dict[str, Any]) -> str:
    return view["id"] + ".thumb"


async def test_rest_send_with_image_attachments(blob_world: BlobWorld) -> None:
    api = blob_world.api
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    bob_ws = await api.ws(bob)
    first = await upload_ok(api, alice, "png", "one.png")
    second = await upload_ok(api, alice, "jpeg", "two.jpg")
    word = "zebra" + uuid.uuid4().hex[:8]
    r = await send(api, alice, room, f"holiday {word}", [first["id"], second["id"]])
    assert r.status == 201, r.body
    message = r.body
    assert message["type"] == "image"
    assert message["attachments"] == [first, second]  # the upload views, in the order given
    for attachment in message["attachments"]:
        assert {"id", "url", "content_type", "size", "name", "width", "height"} <= set(attachment)
        assert attachment["thumbnail_url"] == f"/uploads/{attachment['id']}/thumbnail"
    event = await bob_ws.expect("message.new")
    assert event["message"]["attachments"] == [first, second]
    assert event["message"]["type"] == "image"
    [stored] = await history(api, bob, room)
    assert stored["attachments"] == [first, second] and stored["type"] == "image"
    found = await api.get("/search/messages?" + urlencode({"q": word}), bob)
    assert found.status == 200, found.body
    [hit] = found.body["messages"]
    assert hit["id"] == message["id"] and hit["attachments"] == [first, second]
    # Editing the text keeps the attachments (and may even empty the text).
    r = await api.patch(f"/messages/{message['id']}", {"text": ""}, alice)
    assert r.status == 200, r.body
    assert r.body["attachments"] == [first, second] and r.body["text"] == ""
    updated = await bob_ws.expect("message.updated")
    assert updated["message"]["attachments"] == [first, second]


async def test_ws_send_with_file_attachments_and_empty_text(blob_world: BlobWorld) -> None:
    api = blob_world.api
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    alice_ws, bob_ws = await api.ws(alice), await api.ws(bob)
    pdf = await upload_ok(api, alice, "pdf", "report.pdf")
    png = await upload_ok(api, alice, "png", "chart.png")
    data = {"room_id": room, "client_msg_id": "ws-1", "text": "", "attachment_ids": [pdf["id"]]}
    await alice_ws.send("message.send", data, "s1")
    ack = await alice_ws.expect("message.ack", lambda f: f.get("ref") == "s1")
    assert ack["message"]["type"] == "file" and ack["message"]["text"] == ""
    assert ack["message"]["attachments"] == [pdf]
    event = await bob_ws.expect("message.new")
    assert event["message"]["attachments"] == [pdf] and event["message"]["type"] == "file"
    # An image together with a non-image is a "file" message.
    data = {
        "room_id": room,
        "client_msg_id": "ws-2",
        "text": "both",
        "attachment_ids": [png["id"], pdf["id"]],
    }
    await alice_ws.send("message.send", data, "s2")
    ack = await alice_ws.expect("message.ack", lambda f: f.get("ref") == "s2")
    assert ack["message"]["type"] == "file"
    assert [a["id"] for a in ack["message"]["attachments"]] == [png["id"], pdf["id"]]
    # No text and no attachments: refused.
    data = {"room_id": room, "client_msg_id": "ws-3", "text": "   ", "attachment_ids": []}
    await alice_ws.send("message.send", data, "s3")
    error = await alice_ws.expect("error", lambda f: f.get("ref") == "s3")
    assert error["code"] == "invalid_request"
    # bob can fetch what was shared with him.
    assert (await fetch(api, pdf["url"], bob)).code == 200
    assert (await fetch(api, png["thumbnail_url"], bob)).code == 200
    assert len(await history(api, bob, room)) == 2


async def test_text_may_be_empty_only_with_attachments(blob_world: BlobWorld) -> None:
    api = blob_world.api
    alice = await api.register()
    room = await api.group(alice)
    r = await send(api, alice, room, "", [])
    assert r.status == 400 and r.error_code == "invalid_request"
    r = await api.post(f"/rooms/{room}/messages", {"client_msg_id": "x", "text": ""}, alice)
    assert r.status == 400 and r.error_code == "invalid_request"
    view = await upload_ok(api, alice, "gif")
    r = await send(api, alice, room, "", [view["id"]])
    assert r.status == 201 and r.body["type"] == "image" and r.body["text"] == ""
    # A plain message stays "text" with an empty attachment list.
    plain = await api.send(alice, room, "just words")
    assert plain["type"] == "text" and plain["attachments"] == []


async def test_attaching_someone_elses_upload_is_refused(blob_world: BlobWorld) -> None:
    api = blob_world.api
    alice, bob, eve = [await api.register() for _ in range(3)]
    room = await api.group(eve, bob)
    eve_ws, bob_ws = await api.ws(eve), await api.ws(bob)
    alices = await upload_ok(api, alice, "pdf", "private.pdf")
    eves = await upload_ok(api, eve, "text", "mine.txt")
    for ids in ([alices["id"]], [eves["id"], alices["id"]], [str(ObjectId())]):
        r = await send(api, eve, room, "look what I found", ids)
        assert r.status == 403 and r.error_code == "forbidden", (ids, r.body)
        assert r.body["error"].get("field") == "attachment_ids"
    data = {"room_id": room, "client_msg_id": "w", "text": "x", "attachment_ids": [alices["id"]]}
    await eve_ws.send("message.send", data, "steal")
    error = await eve_ws.expect("error", lambda f: f.get("ref") == "steal")
    assert error["code"] == "forbidden"
    # Nothing was sent, and neither bob nor eve can read alice's file.
    assert await history(api, bob, room) == []
    await bob_ws.assert_none("message.new", quiet=0.3)
    for user in (bob, eve):
        resp = await fetch(api, alices["url"], user)
        assert (resp.code, error_code(resp)) == (403, "not_a_member")
    # Neither upload was marked attached by the refused sends: both are still collectable.
    assert blob_world.server.ctx is not None
    uploads = blob_world.server.ctx.store.uploads
    for view in (alices, eves):
        assert (await uploads.get(view["id"]))["attached"] is False


async def test_at_most_ten_attachments(blob_world: BlobWorld) -> None:
    api = blob_world.api
    alice = await api.register()
    room = await api.group(alice)
    ids = []
    for i in range(11):
        r = await upload(api, alice, b"part %d\n" % i, "text/plain", f"part{i}.txt")
        assert r.status == 201, r.body
        ids.append(r.body["id"])
    r = await send(api, alice, room, "too many", ids)
    assert r.status == 400 and r.error_code == "invalid_request"
    assert r.body["error"].get("field") == "attachment_ids"
    assert await history(api, alice, room) == []
    r = await send(api, alice, room, "ten is fine", ids[:10])
    assert r.status == 201, r.body
    assert [a["id"] for a in r.body["attachments"]] == ids[:10]
    assert r.body["type"] == "file"


async def test_unattached_uploads_are_garbage_collected(blob_world: BlobWorld) -> None:
    api = blob_world.api
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    loose = await upload_ok(api, alice, "png", "loose.png")
    loose_pdf = await upload_ok(api, alice, "pdf", "loose.pdf")
    shared = await upload_ok(api, alice, "png", "shared.png")
    avatar = await upload_ok(api, bob, "jpeg", "me.jpg")
    r = await send(api, alice, room, "", [shared["id"]])
    assert r.status == 201, r.body
    r = await api.patch("/users/me", {"avatar_upload_id": avatar["id"]}, bob)
    assert r.status == 200, r.body
    everything = {
        loose["id"],
        thumb_key(loose),
        loose_pdf["id"],
        shared["id"],
        thumb_key(shared),
        avatar["id"],
        thumb_key(avatar),
    }
    assert await asyncio.to_thread(blob_world.stored_keys) == everything
    assert blob_world.server.ctx is not None
    uploads = blob_world.server.ctx.services.uploads
    # With the default age (a day) nothing this fresh is collected.
    assert await uploads.collect_garbage() == 0
    assert await asyncio.to_thread(blob_world.stored_keys) == everything
    await asyncio.sleep(0.02)  # created_at strictly before the cutoff
    assert await uploads.collect_garbage(older_than=timedelta(0)) == 2
    kept = {shared["id"], thumb_key(shared), avatar["id"], thumb_key(avatar)}
    assert await asyncio.to_thread(blob_world.stored_keys) == kept
    assert await upload_count(blob_world.server) == 2
    for view in (loose, loose_pdf):  # gone, even for the uploader
        resp = await fetch(api, view["url"], alice)
        assert (resp.code, error_code(resp)) == (403, "not_a_member")
        r = await send(api, alice, room, "too late", [view["id"]])
        assert r.status == 403 and r.error_code == "forbidden"
    for path, user in (
        (shared["url"], bob),
        (shared["thumbnail_url"], alice),
        (avatar["thumbnail_url"], alice),
        (avatar["url"], bob),
    ):
        assert (await fetch(api, path, user)).code == 200, path
    # A second pass finds nothing more.
    assert await uploads.collect_garbage(older_than=timedelta(0)) == 0


async def test_avatars(blob_world: BlobWorld) -> None:
    api = blob_world.api
    alice, bob = await api.register(), await api.register()
    r = await upload(api, alice, image_bytes("PNG", (640, 480)), "image/png", "me.png")
    assert r.status == 201, r.body
    picture = r.body
    r = await api.patch("/users/me", {"avatar_upload_id": picture["id"]}, alice)
    assert r.status == 200, r.body
    assert r.body["avatar_url"] == picture["thumbnail_url"]
    seen = await api.get(f"/users/{alice.id}", bob)
    assert seen.status == 200 and seen.body["avatar_url"] == picture["thumbnail_url"]
    # Anyone signed in may fetch it, without sharing a room with alice.
    resp = await fetch(api, picture["thumbnail_url"], bob)
    assert resp.code == 200 and resp.headers["Content-Type"] == "image/webp"
    assert resp.headers["Content-Disposition"].startswith("inline")
    assert (await fetch(api, picture["thumbnail_url"])).code == 401

    # A non-image, someone else's upload or an unknown id: refused, the avatar is unchanged.
    pdf = await upload_ok(api, alice, "pdf", "cv.pdf")
    r = await api.patch("/users/me", {"avatar_upload_id": pdf["id"]}, alice)
    assert r.status == 400 and r.error_code == "invalid_request"
    bobs = await upload_ok(api, bob, "png", "bob.png")
    r = await api.patch("/users/me", {"avatar_upload_id": bobs["id"]}, alice)
    assert r.status == 403 and r.error_code == "forbidden"
    r = await api.patch("/users/me", {"avatar_upload_id": str(ObjectId())}, alice)
    assert r.status == 403 and r.error_code == "forbidden"
    me = await api.get("/users/me", alice)
    assert me.body["avatar_url"] == picture["thumbnail_url"]
    # The refused uploads did not become readable for others as a side effect.
    assert (await fetch(api, pdf["url"], bob)).code == 403
    assert (await fetch(api, bobs["url"], alice)).code == 403


async def test_deleted_messages_and_replaced_avatars_release_their_uploads(
    blob_world: BlobWorld,
) -> None:
    api = blob_world.api
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    shared_twice = await upload_ok(api, alice, "pdf", "twice.pdf")
    shared_once = await upload_ok(api, alice, "pdf", "once.pdf")
    first = await send(api, alice, room, "a", [shared_twice["id"], shared_once["id"]])
    await send(api, alice, room, "b", [shared_twice["id"]])
    old_avatar = await upload_ok(api, alice, "png", "old.png")
    new_avatar = await upload_ok(api, alice, "png", "new.png")
    for avatar in (old_avatar, new_avatar):
        r = await api.patch("/users/me", {"avatar_upload_id": avatar["id"]}, alice)
        assert r.status == 200, r.body
    assert (await api.delete(f"/messages/{first.body['id']}", alice)).status == 204
    await asyncio.sleep(0.02)
    assert blob_world.server.ctx is not None
    uploads = blob_world.server.ctx.services.uploads
    # Only what nothing uses any more goes: the once-shared file and the replaced avatar.
    assert await uploads.collect_garbage(older_than=timedelta(0)) == 2
    assert (await fetch(api, shared_once["url"], alice)).code == 403
    assert (await fetch(api, old_avatar["thumbnail_url"], bob)).code == 403
    assert (await fetch(api, shared_twice["url"], bob)).code == 200
    assert (await fetch(api, new_avatar["thumbnail_url"], bob)).code == 200
