"""Bad clients, bursts, slow consumers and a Redis restart: one socket's trouble stays its own."""

from __future__ import annotations

import socket
import struct

import pytest
from websockets.exceptions import ConnectionClosed

import wsloop
from devstack.stack import Deployment
from helpers import (
    RawWebSocket,
    channel,
    close_code_of,
    health,
    http_request,
    recv,
    redis_client,
    unique_facility,
    wait_subscribed,
    wait_until,
    ws_connect,
)

pytestmark = pytest.mark.stack


def publish_raw(stack, facility: str, payload: bytes) -> None:
    redis_client(stack).publish(channel("broadcast", facility), payload)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (struct.pack("!BB", 0x80, 0x80) + b"\0\0\0\0", 1002),  # lone continuation frame
        (b"\x81\x02hi", 1002),  # unmasked client frame
        (struct.pack("!BB", 0x81, 0x82) + b"\0\0\0\0" + b"\xc3\x28", 1007),  # invalid UTF-8
        (struct.pack("!BB", 0xC1, 0x80) + b"\0\0\0\0", 1002),  # reserved bit without extension
        (struct.pack("!BB", 0x83, 0x80) + b"\0\0\0\0", 1002),  # reserved opcode
    ],
    ids=["lone-continuation", "unmasked", "invalid-utf8", "rsv-bit", "bad-opcode"],
)
def test_malformed_frame_closes_only_its_own_socket(stack, frame, code):
    facility = unique_facility()
    with ws_connect(stack, f"{facility}?subscribe-broadcast") as bystander:
        bad = RawWebSocket(stack, f"{facility}?subscribe-broadcast&publish-broadcast")
        try:
            bad.sock.sendall(frame)
            assert bad.read_close_code() == code
        finally:
            bad.close()
        wait_subscribed(stack, channel("broadcast", facility))
        publish_raw(stack, facility, b"still here")
        assert recv(bystander) == "still here"


def test_oversized_message_closes_only_that_socket_with_1009(stack):
    facility = unique_facility()
    with (
        ws_connect(stack, f"{facility}?subscribe-broadcast") as bystander,
        ws_connect(stack, f"{facility}?publish-broadcast") as big,
    ):
        big.send("x" * (64 * 1024 + 1))
        assert close_code_of(big) == 1009
        wait_subscribed(stack, channel("broadcast", facility))
        publish_raw(stack, facility, b"after")
        assert recv(bystander) == "after"


def test_message_at_the_limit_is_published(stack):
    facility = unique_facility()
    with (
        ws_connect(stack, f"{facility}?subscribe-broadcast") as reader,
        ws_connect(stack, f"{facility}?publish-broadcast") as writer,
    ):
        wait_subscribed(stack, channel("broadcast", facility))
        writer.send("y" * (64 * 1024))
        assert recv(reader) == "y" * (64 * 1024)


def test_burst_of_1000_messages_all_arrive_in_order(stack):
    facility = unique_facility()
    with ws_connect(stack, f"{facility}?subscribe-broadcast") as ws:
        name = channel("broadcast", facility)
        wait_subscribed(stack, name)
        with redis_client(stack).pipeline(transaction=False) as pipe:
            for number in range(1000):
                pipe.publish(name, str(number))
            pipe.execute()
        received = [recv(ws) for _ in range(1000)]
        assert received == [str(number) for number in range(1000)]


def test_burst_from_a_client_keeps_its_order(stack):
    facility = unique_facility()
    with (
        ws_connect(stack, f"{facility}?subscribe-broadcast") as reader,
        ws_connect(stack, f"{facility}?publish-broadcast") as writer,
    ):
        wait_subscribed(stack, channel("broadcast", facility))
        for number in range(300):
            writer.send(str(number))
        assert [recv(reader) for _ in range(300)] == [str(n) for n in range(300)]


def test_slow_consumer_is_closed_and_others_keep_everything(stack):
    """A client that stops reading is closed (4008) once its queue passes 1 MiB; a reader that
    keeps up receives all 25 MiB. Batches stay well under the queue limit, so the reader is
    never the one that falls behind, however busy the machine is."""
    facility = unique_facility()
    before = health(stack)["slow_consumers"]
    slow = RawWebSocket(stack, f"{facility}?subscribe-broadcast", receive_buffer=4096)
    batch, batches = 4, 100
    chunk = b"\xff" * 64 * 1024
    try:
        with ws_connect(stack, f"{facility}?subscribe-broadcast") as fast:
            name = channel("broadcast", facility)
            wait_subscribed(stack, name)
            client = redis_client(stack)
            for first in range(0, batch * batches, batch):
                with client.pipeline(transaction=False) as pipe:
                    for number in range(first, first + batch):
                        pipe.publish(name, number.to_bytes(4, "big") + chunk)
                    pipe.execute()
                for number in range(first, first + batch):
                    assert recv(fast, timeout=10)[:4] == number.to_bytes(4, "big")
        wait_until(
            lambda: health(stack)["slow_consumers"] == before + 1,
            what="exactly one slow-consumer close",
        )
        assert slow.read_close_code() in (4008, None)
    finally:
        slow.close()


def test_sockets_survive_a_redis_restart_and_deliver_again(stack):
    facility = unique_facility()
    with ws_connect(stack, f"{facility}?subscribe-broadcast") as ws:
        wait_subscribed(stack, channel("broadcast", facility))
        reconnects = health(stack)["redis_reconnects"]
        stack.stop_service("redis")
        try:
            status, _, _ = http_request(stack, "GET", "/healthz/wsloop")
            assert status == 503
            with pytest.raises(wsloop.PublishError):
                wsloop.publish(facility, "lost", broadcast=True)
            assert ws.ping().wait(timeout=3), "socket must stay open while Redis is down"
        finally:
            stack.start_service("redis")
            stack.wait_for("redis", stack.redis_ready)
        wait_until(
            lambda: health(stack).get("redis_reconnects", 0) > reconnects,
            timeout=15,
            what="wsloop resubscribed",
        )
        wsloop.publish(facility, "back", broadcast=True, expire=0)
        assert recv(ws) == "back"
        try:
            ws.ping().wait(timeout=3)
        except ConnectionClosed:
            pytest.fail("socket closed by the Redis restart")


def test_stopping_the_ws_pool_says_going_away_and_clients_can_come_back(stack):
    facility = unique_facility()
    with ws_connect(stack, f"{facility}?subscribe-broadcast") as ws:
        stack.stop_service(stack.ws_service)
        try:
            assert close_code_of(ws) == 1001
        finally:
            stack.start_service(stack.ws_service)
            stack.wait_for_app()
    with ws_connect(stack, f"{facility}?subscribe-broadcast") as again:
        wait_subscribed(stack, channel("broadcast", facility))
        publish_raw(stack, facility, b"welcome back")
        assert recv(again) == "welcome back"


@pytest.mark.deployments(Deployment.RUNSERVER)
def test_a_django_view_stuck_in_its_thread_does_not_stall_websockets(stack):
    """A login POST whose body never completes keeps its view blocked reading the form, in its
    thread, like a view paused at a breakpoint; websockets deliver meanwhile, and Django still
    answers others. (uWSGI and nginx read bodies before Django runs: nothing to test there.)"""
    facility = unique_facility()
    with ws_connect(stack, f"{facility}?subscribe-broadcast") as ws:
        wait_subscribed(stack, channel("broadcast", facility))
        with socket.create_connection(("127.0.0.1", stack.config.http_port), 5) as stuck:
            stuck.sendall(
                b"POST /accounts/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n"
                b"\r\nusername=al"
            )
            publish_raw(stack, facility, b"still live")
            assert recv(ws) == "still live"
            status, _, _ = http_request(stack, "GET", "/healthz")
            assert status == 200
