"""The wire contract, end to end through nginx on the two-pool stack."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import pytest
from websockets.exceptions import InvalidStatus

import wsloop
from conftest import HEARTBEAT, PREFIX, REPO
from helpers import (
    assert_silent,
    channel,
    http_request,
    login,
    post_form,
    recv,
    redis_client,
    unique_facility,
    wait_subscribed,
    ws_connect,
)
from wsloop.compat import RedisMessage, RedisPublisher
from wsloop.history import HistoryPolicy
from wsloop.history_redis import RedisHistory

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def sessions(stack):
    """One logged-in session per demo user (alice: blue+staff-room, bob: blue, carol: green)."""
    return {name: login(stack, name) for name in ("alice", "bob", "carol")}


def status_of(error: InvalidStatus) -> int:
    return error.response.status_code


def test_broadcast_live_delivery(stack):
    facility = unique_facility()
    with (
        ws_connect(stack, f"{facility}?subscribe-broadcast") as a,
        ws_connect(stack, f"{facility}?subscribe-broadcast") as b,
    ):
        wait_subscribed(stack, channel("broadcast", facility))
        wsloop.publish(facility, "hello", broadcast=True, expire=0)
        assert recv(a) == "hello"
        assert recv(b) == "hello"


def test_raw_publish_from_any_redis_client_is_delivered_verbatim(stack):
    facility = unique_facility()
    with ws_connect(stack, f"{facility}?subscribe-broadcast") as ws:
        name = channel("broadcast", facility)
        wait_subscribed(stack, name)
        client = redis_client(stack)
        client.publish(name, "text ✓".encode())
        client.publish(name, b"\x00\xffbinary")
        assert recv(ws) == "text ✓"
        assert recv(ws) == b"\x00\xffbinary"


def test_late_joiner_gets_the_persisted_message(stack):
    facility = unique_facility()
    wsloop.publish(facility, "kept", broadcast=True, expire=60)
    with ws_connect(stack, f"{facility}?subscribe-broadcast") as ws:
        assert recv(ws) == "kept"
    assert redis_client(stack).ttl(channel("broadcast", facility)) > 0


def publishing_with_history(stack, facility: str) -> Callable[[int], object]:
    return lambda number: wsloop.publish(facility, str(number), broadcast=True, expire=60)


def publishing_without_history(stack, facility: str) -> Callable[[int], object]:
    """wsloop's publish for a facility that keeps no history: PUBLISH and SET, no position."""
    history = RedisHistory(redis_client(stack), PREFIX, {"*": HistoryPolicy(length=0, age_s=0)})
    name = channel("broadcast", facility)
    return lambda number: history.publish(facility, [name], str(number).encode(), 60)


@pytest.mark.parametrize(
    "publishing", [publishing_with_history, publishing_without_history], ids=["history", "raw"]
)
def test_joiners_during_a_stream_get_the_persisted_message_then_each_message_once(
    stack, publishing
):
    """Numbered messages published back to back, each kept as the persisted one, while 4
    threads open 40 bare sockets each: every joiner gets an unbroken run (no duplicate, no
    reorder, no gap) that reaches the last message published before it connected. (It may
    start a little earlier: a message still on its way to the worker when the socket joined
    is live for it.)"""
    facility = unique_facility()
    publish = publishing(stack, facility)
    stop = threading.Event()
    published = [-1]  # the last number whose publish returned

    def publish_forever() -> None:
        number = 0
        while not stop.is_set():
            publish(number)
            published[0] = number
            number += 1
            time.sleep(0.0005)

    def join_repeatedly(runs: list[tuple[int, list[int]]]) -> None:
        for _ in range(40):
            before = published[0]
            with ws_connect(stack, f"{facility}?subscribe-broadcast") as ws:
                runs.append((before, [int(recv(ws)) for _ in range(20)]))

    with ws_connect(stack, f"{facility}?subscribe-broadcast"):  # the worker keeps subscribing
        wait_subscribed(stack, channel("broadcast", facility))
        publisher = threading.Thread(target=publish_forever)
        publisher.start()
        runs: list[list[tuple[int, list[int]]]] = [[] for _ in range(4)]
        joiners = [threading.Thread(target=join_repeatedly, args=(r,)) for r in runs]
        try:
            for joiner in joiners:
                joiner.start()
            for joiner in joiners:
                joiner.join()
        finally:
            stop.set()
            publisher.join()
    every = [run for thread_runs in runs for run in thread_runs]
    assert len(every) == 160
    broken = [(before, got) for before, got in every if got != list(range(got[0], got[0] + 20))]
    stale = [(before, got) for before, got in every if got[-1] < before]
    assert broken == [] and stale == []


def test_expire_zero_is_not_kept(stack):
    facility = unique_facility()
    wsloop.publish(facility, "gone", broadcast=True, expire=0)
    with ws_connect(stack, f"{facility}?subscribe-broadcast") as ws:
        assert_silent(ws, 0.5)


def test_user_group_and_session_audiences(stack, sessions):
    facility = unique_facility()
    flags = "subscribe-user&subscribe-group&subscribe-session"
    with contextlib.ExitStack() as opened:
        sockets = {
            name: opened.enter_context(ws_connect(stack, f"{facility}?{flags}", session=key))
            for name, key in sessions.items()
        }
        wait_subscribed(stack, channel("group", facility, "green"))
        wsloop.publish(facility, "for alice", users=["alice"], expire=0)
        assert recv(sockets["alice"]) == "for alice"
        wsloop.publish(facility, "for blue", groups=["blue"], expire=0)
        assert recv(sockets["alice"]) == "for blue"
        assert recv(sockets["bob"]) == "for blue"
        wsloop.publish(facility, "for bob's session", sessions=[sessions["bob"]], expire=0)
        assert recv(sockets["bob"]) == "for bob's session"
        assert_silent(sockets["carol"], 0.5)
        assert_silent(sockets["alice"], 0.2)
        assert_silent(sockets["bob"], 0.2)


def test_one_client_never_sees_anothers_user_or_session_messages(stack, sessions):
    facility = unique_facility()
    with (
        ws_connect(
            stack, f"{facility}?subscribe-user&subscribe-session", session=sessions["alice"]
        ) as alice,
        ws_connect(
            stack, f"{facility}?subscribe-user&subscribe-session", session=sessions["bob"]
        ) as bob,
    ):
        wait_subscribed(stack, channel("session", facility, sessions["bob"]))
        wsloop.publish(
            facility, "alice only", users=["alice"], sessions=[sessions["alice"]], expire=0
        )
        assert recv(alice) == "alice only"
        assert recv(alice) == "alice only"
        assert_silent(bob)


def test_client_publish_reaches_only_the_senders_own_audience(stack, sessions):
    facility = unique_facility()
    with (
        ws_connect(stack, f"{facility}?publish-user", session=sessions["alice"]) as sender,
        ws_connect(stack, f"{facility}?subscribe-user", session=sessions["alice"]) as alice2,
        ws_connect(stack, f"{facility}?subscribe-user", session=sessions["bob"]) as bob,
    ):
        wait_subscribed(stack, channel("user", facility, "bob"))
        sender.send("note to self")
        assert recv(alice2) == "note to self"
        assert_silent(bob)


def test_echo_off_the_sender_does_not_receive_its_own_message(stack):
    facility = unique_facility()
    flags = "subscribe-broadcast&publish-broadcast"
    with (
        ws_connect(stack, f"{facility}?{flags}") as sender,
        ws_connect(stack, f"{facility}?subscribe-broadcast") as other,
    ):
        wait_subscribed(stack, channel("broadcast", facility))
        sender.send("ping everyone")
        assert recv(other) == "ping everyone"
        sender.send("ping everyone")  # identical payload twice: still never echoed
        assert recv(other) == "ping everyone"
        assert_silent(sender)


@pytest.mark.parametrize("kind", ["bare", "envelope"])
def test_senders_that_publish_as_they_connect_never_hear_themselves(stack, kind):
    """Senders without echo publish the moment they connect, while their start may still be
    reading: a bare one the channel's persisted message (then its own), an envelope one its
    replay from the position of the test's start (then holding its own). Their own message must
    not come back. 4 threads of 10 senders; each reads until a marker published after it."""
    facility = unique_facility()
    flags = "subscribe-broadcast&publish-broadcast"
    if kind == "envelope":
        flags += f"&envelope&since={wsloop.position(facility)}"
    heard: dict[str, list[object]] = {}  # each sender's own message: what it got up to its marker

    def data(message: str | bytes) -> object:
        body = json.loads(message) if kind == "envelope" else {"data": message}
        return body.get("data", body)

    def connect_and_send(thread: int) -> None:
        for index in range(10):
            own, marker = f"own-{thread}-{index}", f"marker-{thread}-{index}"
            with ws_connect(stack, f"{facility}?{flags}", wait_served=False) as ws:
                ws.send(own)
                time.sleep(0.02)  # the marker is not what the start reads
                wsloop.publish(facility, marker, broadcast=True)
                got: list[object] = []
                while marker not in got:
                    got.append(data(recv(ws)))
                heard[own] = got

    with ws_connect(stack, f"{facility}?subscribe-broadcast"):  # the worker keeps subscribing
        wait_subscribed(stack, channel("broadcast", facility))
        threads = [threading.Thread(target=connect_and_send, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(heard) == 40  # a sender that timed out ends its thread early
    assert {own: got for own, got in heard.items() if own in got} == {}


def test_echo_on_the_sender_receives_its_message_once_with_its_opcode(stack):
    facility = unique_facility()
    with (
        ws_connect(stack, f"{facility}?subscribe-broadcast&publish-broadcast&echo") as sender,
        ws_connect(stack, f"{facility}?subscribe-broadcast") as other,
    ):
        wait_subscribed(stack, channel("broadcast", facility))
        sender.send(b"\xff\x01")
        assert recv(sender) == b"\xff\x01"
        assert recv(other) == b"\xff\x01"
        # Valid UTF-8 sent as binary: Redis carries bytes only, so others get text; the echo
        # is local and keeps the sender's opcode.
        sender.send(b"abc")
        assert recv(sender) == b"abc"
        assert recv(other) == "abc"
        assert_silent(sender, 0.5)


def test_heartbeat_is_sent_and_not_published(stack):
    facility = unique_facility()
    with (
        ws_connect(stack, f"{facility}?subscribe-broadcast&publish-broadcast") as sender,
        ws_connect(stack, f"{facility}?subscribe-broadcast") as other,
    ):
        assert other.recv(timeout=3) == HEARTBEAT
        sender.send(HEARTBEAT)
        assert_silent(other, 1.5)


def test_ping_pong_echoes_the_payload(stack):
    with ws_connect(stack, f"{unique_facility()}?subscribe-broadcast") as ws:
        pong = ws.ping(b"are you there")
        assert pong.wait(timeout=3)


def test_missing_identity_is_refused_with_403_before_the_upgrade(stack):
    facility = unique_facility()
    for flags in ("subscribe-user", "subscribe-group", "subscribe-session", "publish-user"):
        with pytest.raises(InvalidStatus) as refused:
            ws_connect(stack, f"{facility}?{flags}")
        assert status_of(refused.value) == 403, flags


def test_forged_session_cookie_is_anonymous(stack):
    facility = unique_facility()
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(stack, f"{facility}?subscribe-session", session="forgedforgedforged123")
    assert status_of(refused.value) == 403
    with ws_connect(stack, f"{facility}?subscribe-broadcast", session="forged") as ws:
        assert ws.recv(timeout=3) == HEARTBEAT


def test_cross_origin_page_is_refused(stack):
    facility = unique_facility()
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(stack, f"{facility}?subscribe-broadcast", origin="http://evil.example")
    assert status_of(refused.value) == 403
    own = f"http://127.0.0.1:{stack.config.http_port}"
    with ws_connect(stack, f"{facility}?subscribe-broadcast", origin=own) as ws:
        assert ws.recv(timeout=3) == HEARTBEAT


def test_subprotocol_is_chosen_from_the_configured_list(stack):
    facility = unique_facility()
    with ws_connect(stack, facility, subprotocols=["chat.v1", "chat.v2"]) as ws:
        assert ws.subprotocol == "chat.v2"


@pytest.mark.parametrize(
    ("method", "headers", "status"),
    [
        ("POST", {"Upgrade": "websocket", "Connection": "Upgrade"}, 405),
        ("GET", {}, 426),
        (
            "GET",
            {
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Version": "8",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            },
            426,
        ),
        (
            "GET",
            {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13"},
            400,
        ),
    ],
)
def test_bad_handshakes_get_a_clear_status_and_body(stack, method, headers, status):
    code, _, body = http_request(stack, method, f"/ws/{unique_facility()}", headers=headers)
    assert code == status
    assert body.strip()


def test_unknown_facility_is_404(stack):
    code, _, body = http_request(stack, "GET", "/ws/bad:name")
    assert code == 404 and b"facility" in body


def test_allowed_channels_hook_strips_publishing_in_chat_rooms(stack):
    facility = unique_facility("chat")
    with (
        ws_connect(stack, f"{facility}?subscribe-broadcast&publish-broadcast") as writer,
        ws_connect(stack, f"{facility}?subscribe-broadcast") as reader,
    ):
        wait_subscribed(stack, channel("broadcast", facility))
        writer.send("should not pass")
        assert_silent(reader)


def test_django_views_publish_to_room_user_group_and_session(stack, sessions):
    room = unique_facility("r")
    room_path = f"chat-{room}?subscribe-broadcast"
    with (
        ws_connect(stack, room_path, session=sessions["bob"]) as bob_room,
        ws_connect(
            stack,
            "notify?subscribe-user&subscribe-group&subscribe-session",
            session=sessions["bob"],
        ) as bob_notes,
        ws_connect(
            stack,
            "notify?subscribe-user&subscribe-group&subscribe-session",
            session=sessions["carol"],
        ) as carol_notes,
    ):
        wait_subscribed(stack, channel("broadcast", f"chat-{room}"))
        wait_subscribed(stack, channel("group", "notify", "green"))
        status, _ = post_form(stack, f"/chat/{room}/send", sessions["alice"], {"text": "hi all"})
        assert status == 200
        assert json.loads(recv(bob_room)) == {"kind": "chat", "user": "alice", "text": "hi all"}
        post_form(
            stack, "/notify", sessions["alice"], {"target": "user", "name": "bob", "text": "psst"}
        )
        assert json.loads(recv(bob_notes))["text"] == "psst"
        post_form(
            stack,
            "/notify",
            sessions["alice"],
            {"target": "group", "name": "green", "text": "greens"},
        )
        assert json.loads(recv(carol_notes))["text"] == "greens"
        post_form(stack, "/notify", sessions["carol"], {"target": "session", "text": "my session"})
        assert json.loads(recv(carol_notes))["text"] == "my session"
        assert_silent(bob_notes, 0.5)


def test_wspublish_management_command(stack):
    facility = unique_facility()
    with ws_connect(stack, f"{facility}?subscribe-broadcast") as ws:
        wait_subscribed(stack, channel("broadcast", facility))
        result = subprocess.run(
            [
                sys.executable,
                str(REPO / "app/manage.py"),
                "wspublish",
                facility,
                "from cli",
                "--broadcast",
                "--expire",
                "0",
            ],
            env=stack.config.app_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "published to 1 worker subscription" in result.stdout
        assert recv(ws) == "from cli"


def test_health_endpoints(stack):
    for path in ("/healthz", "/healthz/wsloop"):
        status, headers, body = http_request(stack, "GET", path)
        assert status == 200, path
        assert headers["content-type"].startswith("application/json")
        assert json.loads(body)["status"] == "ok"


def test_demo_page_and_static_files(stack, sessions):
    status, _, body = http_request(
        stack, "GET", "/chat/lobby/", headers={"Cookie": f"sessionid={sessions['alice']}"}
    )
    assert status == 200 and b'data-facility="chat-lobby"' in body
    for script in ("chat/room.js", "wsloop/wsloop.js", "wsloop/wsloop.classic.js"):
        status, headers, _ = http_request(stack, "GET", f"/static/{script}")
        assert status == 200 and "javascript" in headers["content-type"], script


def test_ws4redis_publisher_shim_end_to_end(stack):
    facility = unique_facility()
    with ws_connect(stack, f"{facility}?subscribe-broadcast") as ws:
        wait_subscribed(stack, channel("broadcast", facility))
        publisher = RedisPublisher(facility=facility, broadcast=True)
        publisher.publish_message(RedisMessage("from the shim"), expire=30)
        assert recv(ws) == "from the shim"
    assert publisher.fetch_message(None, facility) == b"from the shim"
