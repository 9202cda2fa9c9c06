"""The authorization matrix for conversations' features (issue 14): history lines,
moderation (roles, bans), deactivated users, mentions, replies and delivery confirmations, on
the world of test_authorization.py: outsiders (carol never a member, dave removed: banned, erin
left) get 403 `not_a_member`, a deactivated user 401, and nothing changes."""

from __future__ import annotations

import uuid

import pytest
from bson import ObjectId
from tornado.websocket import websocket_connect

from tests.handlers.test_authorization import (
    ENDPOINTS,
    UNAUTH_EXTRA,
    Endpoint,
    World,
    assert_error,
    assert_no_leak,
    build_world,
    call,
    snapshot,
    target,
)
from tests.support import Api, Socket

# --- room history lines (system messages) -----------------------------------------------------


async def assert_outsiders_refused(api: Api, w: World, ep: Endpoint) -> None:
    """carol, dave and erin get 403 not_a_member in the group and the DM, learning nothing."""
    for t in (target(w, w.group), target(w, w.dm)):
        for caller in w.outsiders:
            r = await call(api, ep, t, caller, w)
            assert_error(r, 403, "not_a_member")
            assert_no_leak(r.body, w.secrets(), allowed=ep.path(t, caller, w))


async def test_outsiders_cannot_reach_the_rooms_history_lines(api: Api) -> None:
    """The lines of erin leaving and of dave's removal stay in the group's history for those who
    remain. Outsiders (never members, removed, left) get 403 not_a_member for them from every way
    in, never the 409 members get, which would tell them the message exists. (That outsider
    sockets receive no lines as `message.new` is part of
    test_outsider_sockets_receive_none_of_the_room_events: its rename, add and removal post
    lines.)"""
    w = await build_world(api)
    r = await api.get(f"/history/room/{w.group}?limit=100", w.alice)
    lines = [m for m in r.body["messages"] if m["type"] == "system"]
    assert [m["system"]["event"] for m in lines] == ["member_removed", "member_left"]
    before = await snapshot(api, w)
    for user in w.outsiders:
        for line in lines:
            mid = line["id"]
            r = await api.patch(f"/messages/{mid}", {"text": "x"}, user)
            assert_error(r, 403, "not_a_member")
            assert_error(await api.delete(f"/messages/{mid}", user), 403, "not_a_member")
            r = await api.request(
                "PUT", f"/messages/{mid}/reactions/%E2%9C%85", token=user.access_token
            )
            assert_error(r, 403, "not_a_member")
            assert_error(await api.get(f"/messages/{mid}/receipts", user), 403, "not_a_member")
    assert await snapshot(api, w) == before


# --- moderation: bans and deactivated users ---------------------------------------------------

MODERATION = [
    Endpoint(
        "set_role",
        "PATCH",
        lambda t, u, w: f"/rooms/{t.room}/members/{w.bob.id}",
        lambda t, u, w: {"role": "admin"},
    ),
    Endpoint(
        "promote_self",
        "PATCH",
        lambda t, u, w: f"/rooms/{t.room}/members/{u.id}",
        lambda t, u, w: {"role": "admin"},
    ),
    Endpoint("list_bans", "GET", lambda t, u, w: f"/rooms/{t.room}/bans"),
    Endpoint("lift_ban", "DELETE", lambda t, u, w: f"/rooms/{t.room}/bans/{u.id}"),
]


@pytest.mark.parametrize("ep", MODERATION, ids=str)
async def test_outsiders_and_banned_members_cannot_moderate(api: Api, ep: Endpoint) -> None:
    """carol, dave (removed by alice: banned) and erin get 403 not_a_member for the roles and
    the ban list of the group and the DM; bob, a plain member, gets 403 forbidden."""
    w = await build_world(api)
    before = await snapshot(api, w)
    await assert_outsiders_refused(api, w, ep)
    assert_error(await call(api, ep, target(w, w.group), w.bob, w), 403, "forbidden")
    assert await snapshot(api, w) == before


async def test_a_banned_member_cannot_rejoin_once_the_group_is_public(api: Api) -> None:
    w = await build_world(api)
    r = await api.patch(f"/rooms/{w.group}", {"private": False}, w.alice)
    assert r.status == 200, r.body
    r = await api.post(f"/rooms/{w.group}/join", None, w.dave)  # removed by alice
    assert_error(r, 403, "forbidden")
    assert w.dave.id not in (await api.get(f"/rooms/{w.group}", w.alice)).body["member_ids"]
    assert_error(await api.get(f"/history/room/{w.group}", w.dave), 403, "not_a_member")
    r = await api.post(f"/rooms/{w.group}/join", None, w.erin)  # left by herself
    assert r.status == 200, r.body


# --- mentions and replies -------------------------------------------------------------------

REPLIES = [
    Endpoint(
        "send_reply",
        "POST",
        lambda t, u, w: f"/rooms/{t.room}/messages",
        lambda t, u, w: {"client_msg_id": uuid.uuid4().hex, "text": "re", "reply_to_id": t.msg},
    ),
    Endpoint(
        "send_at_room",
        "POST",
        lambda t, u, w: f"/rooms/{t.room}/messages",
        lambda t, u, w: {"client_msg_id": uuid.uuid4().hex, "text": f"@room @{w.alice.username}"},
    ),
    Endpoint("history_around", "GET", lambda t, u, w: f"/history/room/{t.room}?around={t.msg}"),
]


@pytest.mark.parametrize("ep", REPLIES, ids=str)
async def test_outsiders_cannot_reply_mention_or_look_around(api: Api, ep: Endpoint) -> None:
    """carol, dave (removed) and erin (left) get 403 not_a_member for replies, `@room` and
    history around a message, in the group and the DM: the membership check comes first, so
    the answer says nothing of the message."""
    w = await build_world(api)
    before = await snapshot(api, w)
    await assert_outsiders_refused(api, w, ep)
    assert await snapshot(api, w) == before


async def test_members_cannot_reach_another_rooms_message_through_replies(api: Api) -> None:
    """bob, a member of both rooms, replying in the DM to a group message, or asking for the DM's
    history around it, gets the 400 of an unknown id: nothing crosses rooms."""
    w = await build_world(api)
    before = await snapshot(api, w)
    foreign, unknown = w.group_msgs[0]["id"], str(ObjectId())
    answers = []
    for message_id in (foreign, unknown):
        body = {"client_msg_id": uuid.uuid4().hex, "text": "re", "reply_to_id": message_id}
        r = await api.post(f"/rooms/{w.dm}/messages", body, w.bob)
        assert_error(r, 400, "invalid_request")
        around = await api.get(f"/history/room/{w.dm}?around={message_id}", w.bob)
        assert_error(around, 400, "invalid_request")
        answers.append((r.body, around.body))
    assert answers[0] == answers[1]
    assert_no_leak(answers[0], [w.group_msgs[0]["text"]])
    assert await snapshot(api, w) == before


async def test_removed_and_departed_members_are_no_longer_mentioned(api: Api) -> None:
    """alice naming dave (removed), erin (left) and bob mentions bob only: the stored message
    (what counts, notifies and highlights) names no former member."""
    w = await build_world(api)
    text = f"@{w.dave.username} @{w.erin.username} @{w.bob.username}"
    r = await api.post(f"/rooms/{w.group}/messages", {"client_msg_id": "m", "text": text}, w.alice)
    assert r.status == 201, r.body
    history = (await api.get(f"/history/room/{w.group}", w.bob)).body["messages"]
    [stored] = [m for m in history if m["id"] == r.body["id"]]
    assert (stored["mentions"], stored["text"]) == ([w.bob.id], text)


async def test_outsiders_delivery_confirmations_move_no_pointer(api: Api) -> None:
    """carol, dave and erin confirming the rooms' messages get an ack that records nothing: no
    member's delivered pointer in the room views moves, and alice hears no receipt."""
    w = await build_world(api)
    before = await snapshot(api, w)
    alice_ws, bob_ws = await api.ws(w.alice), await api.ws(w.bob)
    ids = [m["id"] for m in w.group_msgs + w.dm_msgs]
    for outsider in w.outsiders:
        ws = await api.ws(outsider)
        reply = await ws.request("message.delivered", {"message_ids": ids})
        assert reply["type"] == "ack" and reply["data"] == {"message_ids": []}, reply
        ws.close()
    assert await snapshot(api, w) == before
    # A marker: bob's confirmation, made after theirs, is the first receipt alice hears.
    mine = w.group_msgs[2]["id"]
    reply = await bob_ws.request("message.delivered", {"message_ids": [mine]})
    assert reply["data"] == {"message_ids": [mine]}, reply
    first = await alice_ws.expect("message.delivered")
    assert (first["user_id"], first["message_id"]) == (w.bob.id, mine)


# --- deactivated users ------------------------------------------------------------------------

ADMIN = [
    Endpoint("deactivate", "POST", lambda t, u, w: f"/admin/users/{w.carol.id}/deactivate"),
    Endpoint("reactivate", "POST", lambda t, u, w: f"/admin/users/{u.id}/reactivate"),
]


async def test_a_deactivated_member_is_refused_by_every_endpoint(api: Api) -> None:
    """Once alice (the first account: a server admin) deactivated bob, his token is refused
    (401) by every room endpoint, the reply, mention and history-around rows, the admin
    endpoints and a new socket; his open socket is closed, and nothing changes."""
    w = await build_world(api)
    ws = await api.ws(w.bob)
    r = await api.post(f"/admin/users/{w.bob.id}/deactivate", None, w.alice)
    assert r.status == 200, r.body
    assert await ws.close_code() == 4403
    before = await snapshot(api, w)
    for ep in (*ENDPOINTS, *MODERATION, *UNAUTH_EXTRA, *REPLIES, *ADMIN):
        for t in (target(w, w.group), target(w, w.dm)):
            r = await call(api, ep, t, w.bob, w)
            assert_error(r, 401, "unauthenticated")
    again = Socket(await websocket_connect(f"ws://127.0.0.1:{api.port}/ws"))
    await again.send("auth", {"token": w.bob.access_token})
    assert await again.close_code() == 4401
    assert [f.get("type") for f in again.frames] == []
    assert await snapshot(api, w) == before


async def no_user_updated_before_a_pong(ws: Socket) -> None:
    """A barrier: the server wrote every earlier event to the socket before this pong, so a
    `user.updated` that was coming would be among the frames before it."""
    await ws.send("ping", None, "barrier")
    await ws.expect("pong", match=lambda f: f.get("ref") == "barrier")
    assert not [f for f in ws.frames if f.get("type") == "user.updated"], ws.frames


async def test_deactivation_and_reactivation_are_told_only_to_who_shares_a_room(
    api: Api,
) -> None:
    """alice (in the group and the DM with bob) hears `user.updated` both times; carol (never
    in a room with bob), dave (removed) and erin (left) hear neither."""
    w = await build_world(api)
    alice_ws = await api.ws(w.alice)
    outsiders = [await api.ws(u) for u in w.outsiders]
    for action, deactivated in (("deactivate", True), ("reactivate", False)):
        r = await api.post(f"/admin/users/{w.bob.id}/{action}", None, w.alice)
        assert r.status == 200, r.body
        seen = await alice_ws.expect("user.updated", lambda f: f["data"]["user"]["id"] == w.bob.id)
        assert seen["user"]["deactivated"] is deactivated
        for ws in outsiders:
            await no_user_updated_before_a_pong(ws)
