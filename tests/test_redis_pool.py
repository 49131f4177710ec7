"""Connection pools: the shared one for Django and the monkey-patched workers, and the
cooperative ones of a hub in an unpatched thread (the development server's wsloop thread)."""

from __future__ import annotations

import socket
import threading

import gevent
import pytest
import redis

from devstack.stack import Deployment, free_port
from helpers import in_a_fresh_thread_hub
from wsloop.redis_pool import (
    CooperativeConnection,
    CooperativeUnixConnection,
    NotConnected,
    cooperative_connection_class,
    cooperative_pool,
    get_pool,
)

WAIT_S = 0.5
# What a connection's set-up gets from a Redis 7 (redis-py speaks RESP3): anything else is +OK.
SET_UP_ANSWERS = {b"PING": b"+PONG\r\n", b"HELLO": b"%2\r\n+server\r\n+redis\r\n+proto\r\n:3\r\n"}
TICK_S = 0.01


def test_one_shared_pool_per_url():
    assert get_pool("redis://127.0.0.1:1/0") is get_pool("redis://127.0.0.1:1/0")
    assert get_pool("redis://127.0.0.1:1/0") is not get_pool("redis://127.0.0.1:1/1")


def test_a_command_that_found_no_connection_was_never_sent():
    closed = free_port()  # nothing listens there
    with pytest.raises(NotConnected):
        redis.Redis(connection_pool=get_pool(f"redis://127.0.0.1:{closed}/0")).ping()


def test_a_connection_lost_after_sending_is_not_taken_for_never_sent():
    """A server that answers the connection's set-up, then reads the command and hangs up."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def hang_up_on_set():
            peer, _ = listener.accept()
            with peer:
                while (data := peer.recv(4096)) and b"SET\r\n" not in data:
                    peer.sendall(SET_UP_ANSWERS.get(data.split(b"\r\n")[2], b"+OK\r\n"))

        threading.Thread(target=hang_up_on_set, daemon=True).start()
        pool = get_pool(f"redis://127.0.0.1:{port}/0")
        with pytest.raises(redis.ConnectionError) as lost:
            redis.Redis(connection_pool=pool).set("key", "value")
        assert not isinstance(lost.value, NotConnected)


def test_cooperative_connection_class_by_scheme():
    assert cooperative_connection_class("redis://localhost:6379/0") is CooperativeConnection
    assert cooperative_connection_class("unix:///run/redis.sock") is CooperativeUnixConnection
    with pytest.raises(ValueError, match="rediss://"):
        cooperative_connection_class("rediss://localhost:6380/0")


def ticks_while(wait) -> int:
    """How often a second greenlet ran while ``wait()`` blocked its own greenlet."""
    ticks = 0

    def tick() -> None:
        nonlocal ticks
        while True:
            gevent.sleep(TICK_S)
            ticks += 1

    ticker = gevent.spawn(tick)
    try:
        wait()
    finally:
        ticker.kill()
    return ticks


@pytest.mark.stack
@pytest.mark.deployments(Deployment.TWO_POOLS)
def test_a_blocking_command_yields_to_other_greenlets(stack):
    def scenario() -> int:
        client = redis.Redis(connection_pool=cooperative_pool(stack.config.redis_url, 2))
        return ticks_while(lambda: client.blpop(["wsloop-test-nothing"], timeout=WAIT_S))

    assert in_a_fresh_thread_hub(scenario) >= WAIT_S / TICK_S / 2


@pytest.mark.stack
@pytest.mark.deployments(Deployment.TWO_POOLS)
def test_waiting_on_a_subscription_yields_to_other_greenlets(stack):
    def scenario() -> int:
        client = redis.Redis.from_url(
            stack.config.redis_url, connection_class=CooperativeConnection
        )
        pubsub = client.pubsub()
        pubsub.subscribe("wsloop-test-silence")
        pubsub.get_message(timeout=1)  # the subscribe confirmation
        return ticks_while(lambda: pubsub.get_message(timeout=WAIT_S))

    assert in_a_fresh_thread_hub(scenario) >= WAIT_S / TICK_S / 2
