from tests.support import Api


async def test_register_send_and_receive_over_websocket(api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    room = await api.group(alice, bob)
    bob_ws = await api.ws(bob)
    alice_ws = await api.ws(alice)
    await alice_ws.send(
        "message.send", {"room_id": room, "client_msg_id": "c1", "text": "hi"}, "r1"
    )
    ack = await alice_ws.expect("message.ack")
    assert ack["__ref"] == "r1" and ack["message"]["text"] == "hi"
    new = await bob_ws.expect("message.new")
    assert new["message"]["id"] == ack["message"]["id"]
