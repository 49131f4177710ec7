"""Several websocket workers: each holds its own subscription, a broadcast reaches them all."""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from conftest import STACK_ENV
from devstack.stack import Stack, StackConfig
from helpers import channel, recv, unique_facility, wait_until, ws_connect

pytestmark = pytest.mark.stack

WORKERS = 2
MAX_SOCKETS = 200


@pytest.fixture(scope="module")
def two_workers() -> Iterator[Stack]:
    config = StackConfig.ephemeral(
        Path(tempfile.mkdtemp(prefix="wsloop-workers-")), ws_processes=WORKERS, env=STACK_ENV
    )
    with Stack.running(config) as stack:
        yield stack


def test_broadcast_reaches_sockets_on_every_worker(two_workers):
    stack = two_workers
    client = redis.Redis.from_url(stack.config.redis_url)
    facility = unique_facility()
    name = channel("broadcast", facility)
    with contextlib.ExitStack() as opened:
        sockets = []

        def subscribed_workers() -> int:
            return int(dict(client.pubsub_numsub(name)).get(name.encode(), 0))

        # uWSGI hands each connection to whichever worker accepts first: open sockets until
        # every worker holds some (usually within a few).
        while subscribed_workers() < WORKERS and len(sockets) < MAX_SOCKETS:
            sockets.append(
                opened.enter_context(ws_connect(stack, f"{facility}?subscribe-broadcast"))
            )
            time.sleep(0.01)
        wait_until(lambda: subscribed_workers() == WORKERS, what="a subscription per worker")
        assert client.publish(name, b"to all workers") == WORKERS
        assert all(recv(ws) == "to all workers" for ws in sockets)


def test_each_worker_holds_at_most_two_redis_connections(two_workers):
    client = redis.Redis.from_url(two_workers.config.redis_url)
    names = [c.get("name", "") for c in client.client_list()]
    per_worker: dict[str, int] = {}
    for name in names:
        if name.startswith("wsloop:"):
            pid = name.split(":")[1]
            per_worker[pid] = per_worker.get(pid, 0) + 1
    assert per_worker, names
    assert max(per_worker.values()) <= 2, per_worker
