"""The loop in a thread of its own (the development server's): handing it work from other
threads, results and errors coming back, and a loop that keeps answering while Redis is away."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import threading

import gevent
import gevent.event
import pytest

from wsloop import conf
from wsloop.loop_thread import LoopThread


@pytest.fixture
def loop():
    # Nothing listens on port 1: the runtime starts anyway and its Redis is "away".
    settings = dataclasses.replace(conf.load(), redis_url="redis://127.0.0.1:1/0")
    thread = LoopThread(settings)
    thread.start()
    yield thread
    thread.stop(timeout_s=1.0)


def test_call_runs_in_the_loop_thread_and_returns_its_result(loop):
    def where() -> tuple[str, bool]:
        return threading.current_thread().name, isinstance(gevent.getcurrent(), gevent.Greenlet)

    assert loop.call(where, timeout_s=5) == ("wsloop", True)


def test_call_raises_the_functions_exception(loop):
    def fail() -> None:
        raise ValueError("from the loop")

    with pytest.raises(ValueError, match="from the loop"):
        loop.call(fail, timeout_s=5)


def test_calls_from_many_threads_run_concurrently_in_the_loop(loop):
    """20 threads call at once; each call waits until all 20 are waiting, which only happens
    if the loop runs them side by side (one after the other, each would time out)."""
    gate = loop.call(gevent.event.Event, timeout_s=5)
    arrived: list[int] = []

    def meet() -> bool:
        arrived.append(1)
        if len(arrived) == 20:
            gate.set()
        return gate.wait(timeout=5)

    results: list[bool] = []
    callers = [
        threading.Thread(target=lambda: results.append(loop.call(meet, timeout_s=10)))
        for _ in range(20)
    ]
    for thread in callers:
        thread.start()
    for thread in callers:
        thread.join(10)
    assert results == [True] * 20


def test_health_answers_while_redis_is_away(loop):
    report = loop.call(loop.runtime.health, timeout_s=10)
    assert report["redis"] is False and report["status"] == "degraded"


def test_stop_ends_the_thread(loop):
    assert loop.running
    loop.stop(timeout_s=1.0)
    assert not loop.running


@pytest.fixture
def unanswering_redis_url():
    """A port whose listen backlog is full: connecting there hangs until the connect timeout,
    like a Redis host that is unreachable (lost packets) or slow to resolve."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    yield f"redis://127.0.0.1:{port}/0"
    for sock in (*fillers, listener):
        sock.close()


def test_a_hanging_redis_connect_does_not_stop_the_loop(unanswering_redis_url):
    settings = dataclasses.replace(conf.load(), redis_url=unanswering_redis_url)
    loop = LoopThread(settings)
    loop.start()
    try:
        loop.submit(loop.runtime.health)  # connects: hangs for the connect timeout (5 s)
        assert loop.call(lambda: "still serving", timeout_s=1.0) == "still serving"
    finally:
        loop.stop(timeout_s=0.5)
