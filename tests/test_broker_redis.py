"""RedisBroker against a real Redis, in the development server's setting (a gevent hub in a
thread of an unpatched process, cooperative connections): concurrent subscribes, subscribing
again after having none, and messages that reach the subscription in pieces."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import gevent
import pytest
import redis

from devstack.stack import Deployment
from helpers import in_a_fresh_thread_hub, unique_facility
from wsloop import broker_redis
from wsloop.broker_redis import RedisBroker
from wsloop.redis_pool import cooperative_connection_class, cooperative_pool

pytestmark = [pytest.mark.stack, pytest.mark.deployments(Deployment.TWO_POOLS)]

CONFIRM_TIMEOUT_S = 2.0  # confirmations take milliseconds; a lost wake-up costs 5 s


def cooperative_broker(url: str) -> RedisBroker:
    return RedisBroker(
        url, cooperative_pool(url), "t", {}, connection_class=cooperative_connection_class(url)
    )


def test_concurrent_subscribes_after_an_idle_spell_are_all_confirmed(stack, monkeypatch):
    """With no subscription left and the connection idle past its health-check interval, the
    next subscribe waits for a PING reply: 20 sockets subscribing at that moment must neither
    read the connection at once nor wait for the listener's next timeout."""
    monkeypatch.setattr(broker_redis, "HEALTH_CHECK_INTERVAL_S", 0.2)
    names = [f"{unique_facility()}-{n}" for n in range(20)]

    def scenario() -> tuple[bool, int, list[str]]:
        received: list[str] = []
        broker = cooperative_broker(stack.config.redis_url)
        broker.start(lambda channel, payloads: received.append(channel), lambda: None)
        broker.subscribe(["warm-up"])
        assert broker.wait_subscribed(["warm-up"], CONFIRM_TIMEOUT_S)
        broker.unsubscribe(["warm-up"])
        gevent.sleep(0.5)  # idle past the health-check interval, nothing subscribed
        gevent.joinall([gevent.spawn(broker.subscribe, [name]) for name in names], raise_error=True)
        confirmed = broker.wait_subscribed(names, CONFIRM_TIMEOUT_S)
        publisher = redis.Redis.from_url(stack.config.redis_url)
        for name in names:
            publisher.publish(name, b"x")
        deadline = time.monotonic() + CONFIRM_TIMEOUT_S
        while len(received) < len(names) and time.monotonic() < deadline:
            gevent.sleep(0.01)
        return confirmed, broker.reconnects, sorted(received)

    confirmed, reconnects, received = in_a_fresh_thread_hub(scenario)
    assert confirmed, "every subscription confirmed without waiting for a listener timeout"
    assert reconnects == 0, "no subscription command failed"
    assert received == sorted(names)


class SplittingProxy:
    """A TCP proxy to Redis that delivers every reply in two pieces, 50 ms apart (a network
    splitting messages across segments)."""

    PAUSE_S = 0.05

    def __init__(self, redis_port: int) -> None:
        self.redis_port = redis_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.clients: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.clients.append(client)
            upstream = socket.create_connection(("127.0.0.1", self.redis_port))
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket, split: bool) -> None:
        try:
            while data := source.recv(65536):
                if split and len(data) > 1:
                    target.sendall(data[: len(data) // 2])
                    time.sleep(self.PAUSE_S)
                    data = data[len(data) // 2 :]
                target.sendall(data)
        except OSError:
            pass
        finally:
            target.close()

    def drop_connections(self) -> None:
        """The link fails: every client connection is cut (replies half sent stay half sent)."""
        for client in self.clients:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def splitting_proxy(stack) -> Iterator[SplittingProxy]:
    proxy = SplittingProxy(stack.config.redis_port)
    yield proxy
    proxy.close()


def test_messages_arriving_in_pieces_are_delivered_without_a_reconnect(stack, splitting_proxy):
    url = f"redis://127.0.0.1:{splitting_proxy.port}/0"
    name = unique_facility()
    payloads = [f"message {n} ".encode() * 20 for n in range(50)]

    def scenario() -> tuple[list[bytes], int]:
        received: list[bytes] = []
        broker = cooperative_broker(url)
        broker.start(lambda channel, batch: received.extend(batch), lambda: None)
        broker.subscribe([name])
        assert broker.wait_subscribed([name], 5)
        publisher = redis.Redis.from_url(stack.config.redis_url)
        with publisher.pipeline(transaction=False) as pipe:
            for payload in payloads:
                pipe.publish(name, payload)
            pipe.execute()
        deadline = time.monotonic() + 10
        while len(received) < len(payloads) and time.monotonic() < deadline:
            gevent.sleep(0.01)
        return received, broker.reconnects

    received, reconnects = in_a_fresh_thread_hub(scenario)
    assert received == payloads
    assert reconnects == 0, "a message split across reads is not a lost connection"


def test_wait_delivered_returns_after_every_message_published_before_it(stack, splitting_proxy):
    """Bursts published while 10 greenlets at a time ask, through a link that splits every
    reply: each answer comes after the handler got every message published before the call."""
    url = f"redis://127.0.0.1:{splitting_proxy.port}/0"
    name = unique_facility()

    def scenario() -> list[tuple[bool, int, int]]:
        received: list[bytes] = []
        broker = cooperative_broker(url)
        broker.start(lambda channel, batch: received.extend(batch), lambda: None)
        broker.subscribe([name])
        assert broker.wait_subscribed([name], 5)
        publisher = redis.Redis.from_url(stack.config.redis_url)
        answers: list[tuple[bool, int, int]] = []

        def ask(published: int) -> None:
            answers.append((broker.wait_delivered(5), published, len(received)))

        published = 0
        for _ in range(5):
            with publisher.pipeline(transaction=False) as pipe:
                for _ in range(100):
                    pipe.publish(name, b"x")
                pipe.execute()
            published += 100
            gevent.joinall([gevent.spawn(ask, published) for _ in range(10)], raise_error=True)
        return answers

    answers = in_a_fresh_thread_hub(scenario)
    assert len(answers) == 50
    assert all(answered for answered, _, _ in answers)
    assert all(got >= published for _, published, got in answers)


def test_wait_delivered_is_false_when_the_subscription_is_lost_before_the_answer(
    stack, splitting_proxy
):
    url = f"redis://127.0.0.1:{splitting_proxy.port}/0"
    name = unique_facility()

    def scenario() -> tuple[bool, bool]:
        broker = cooperative_broker(url)
        broker.start(lambda channel, batch: None, lambda: None)
        broker.subscribe([name])
        assert broker.wait_subscribed([name], 5)
        splitting_proxy.PAUSE_S = 1.0  # the PING's answer stays half-way for a second
        asking = gevent.spawn(broker.wait_delivered, 5)
        gevent.sleep(0.3)
        splitting_proxy.drop_connections()
        splitting_proxy.PAUSE_S = SplittingProxy.PAUSE_S
        lost = asking.get()
        assert broker.wait_subscribed([name], 10)  # the listener is back
        return lost, broker.wait_delivered(5)

    lost, later = in_a_fresh_thread_hub(scenario)
    assert lost is False
    assert later is True
