"""History and recovery on the real stack: nothing history holds is lost across reconnects,
Redis restarts and outages, or websocket workers reloaded or killed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable

import pytest
from websockets.asyncio.client import connect

import wsloop
from conftest import HEARTBEAT
from devstack.stack import Deployment, Stack
from helpers import (
    Publisher,
    RawWebSocket,
    RecoveringClient,
    assert_silent,
    channel,
    health,
    recv,
    redis_client,
    serving_pid,
    unique_facility,
    wait_subscribed,
    wait_until,
    ws_connect,
)

pytestmark = pytest.mark.stack

NUMBERS = [str(n) for n in range(10_000)]


def subscribed_client(stack, facility: str) -> RecoveringClient:
    """A connected envelope client that is live: its start is over (it was told its
    position), so its subscription is confirmed."""
    client = RecoveringClient(stack, facility)
    client.connect()
    assert client.wait_started()["type"] == "position"
    return client


def test_reconnect_with_last_id_gets_exactly_the_missed_messages(stack):
    facility = unique_facility()
    client = subscribed_client(stack, facility)
    wsloop.publish(facility, "before", broadcast=True, expire=0)
    client.receive(1)
    client.close()  # away for 5 s while 100 messages are published
    for number in range(100):
        wsloop.publish(facility, str(number), broadcast=True, expire=0)
    time.sleep(5)
    client.connect()
    assert client.receive(101) == ["before", *NUMBERS[:100]]
    assert json.loads(recv(client.ws)) == {"type": "recovered", "count": 100, "id": client.last_id}
    client.close()


def test_no_gap_and_no_duplicate_at_the_seam_between_replay_and_live(stack):
    facility = unique_facility()
    client = subscribed_client(stack, facility)
    publisher = Publisher(facility, 400, interval_s=0.002)
    publisher.start()
    client.receive(50)
    for _ in range(3):  # drop and come back while messages keep coming
        client.close()
        time.sleep(0.05)
        client.connect()
        client.receive(len(client.data) + 20)
    publisher.join()
    assert client.receive(400) == NUMBERS[:400]
    assert not publisher.errors


def test_unknown_epoch_and_expired_position_ask_for_a_resync(stack):
    facility = unique_facility()
    wsloop.publish(facility, "a", broadcast=True, expire=0)
    wsloop.publish(facility, "b", broadcast=True, expire=0)
    history = f"wsl:history:{facility}"
    client = redis_client(stack)
    (first_id, _), (newest_id, _) = client.xrange(history)
    epoch = client.get(f"{history}:epoch").decode()
    current = f"{epoch}:{newest_id.decode()}"
    for since, reason in ((f"zzzz:{first_id.decode()}", "reset"), (f"{epoch}:1-0", "expired")):
        with ws_connect(stack, f"{facility}?subscribe-broadcast&envelope&since={since}") as ws:
            assert json.loads(recv(ws)) == {"type": "resync", "reason": reason, "id": current}
            wsloop.publish(facility, "live", broadcast=True, expire=0)
            assert json.loads(recv(ws))["data"] == "live"
        current = wsloop.position(facility)


def test_raw_publish_reaches_envelope_clients_without_an_id(stack):
    facility = unique_facility()
    with ws_connect(stack, f"{facility}?subscribe-broadcast&envelope") as ws:
        assert json.loads(recv(ws))["type"] == "position"
        redis_client(stack).publish(channel("broadcast", facility), b"raw")
        assert json.loads(recv(ws)) == {"type": "message", "audience": "broadcast", "data": "raw"}


def test_a_socket_without_since_is_told_its_position_and_recovers_from_it(stack):
    """A client that drops before its first message still has a position: nothing published
    meanwhile is lost to it."""
    facility = unique_facility()
    with ws_connect(stack, f"{facility}?subscribe-broadcast&envelope") as ws:
        told = json.loads(recv(ws))
    assert told["type"] == "position" and told["id"] == wsloop.position(facility)
    for number in range(3):
        wsloop.publish(facility, str(number), broadcast=True, expire=0)
    since = f"since={told['id']}"
    with ws_connect(stack, f"{facility}?subscribe-broadcast&envelope&{since}") as ws:
        assert [json.loads(recv(ws)).get("data") for _ in range(4)] == ["0", "1", "2", None]


@pytest.mark.parametrize("history", ["new facility", "with history"])
def test_a_page_rendered_with_its_position_misses_nothing_before_its_socket_opens(stack, history):
    facility = unique_facility()
    if history == "with history":
        wsloop.publish(facility, "before the render", broadcast=True, expire=0)
    rendered = wsloop.position(facility)  # the view renders the page with it
    for number in range(5):  # published between the render and the page's connect
        wsloop.publish(facility, str(number), broadcast=True, expire=0)
    client = RecoveringClient(stack, facility)
    client.last_id = rendered
    client.connect()
    assert client.receive(5) == NUMBERS[:5]
    assert json.loads(recv(client.ws)) == {"type": "recovered", "count": 5, "id": client.last_id}
    assert wsloop.position(facility) == client.last_id
    client.close()


def test_own_publishes_are_echoed_exactly_once_while_the_subscription_keeps_breaking(stack):
    """Two sockets publish (one with echo, one without) while the worker's Redis subscription
    is killed every 50 ms: what was published while it was down comes back through the
    worker's replay, and with it the sender's own messages, by origin, exactly as live."""
    facility = unique_facility()
    before = health(stack)["worker_replayed"]
    flags = "subscribe-broadcast&publish-broadcast&envelope"
    with (
        ws_connect(stack, f"{facility}?{flags}&echo") as echoing,
        ws_connect(stack, f"{facility}?{flags}") as quiet,
        ws_connect(stack, f"{facility}?subscribe-broadcast&envelope") as observer,
    ):
        for ws in (echoing, quiet, observer):
            assert json.loads(recv(ws))["type"] == "position"
        killer = redis_client(stack)
        sent: list[str] = []
        for number in range(100):
            for ws, name in ((echoing, "e"), (quiet, "q")):
                ws.send(f"{name}{number}")
                sent.append(f"{name}{number}")
            if number % 10 == 0:
                killer.client_kill_filter(_type="pubsub")
            time.sleep(0.005)

        def data(ws, count):
            got = []
            while len(got) < count:
                body = json.loads(recv(ws, timeout=30))
                if body["type"] == "message":
                    got.append(body["data"])
            return got

        mine = [m for m in sent if m.startswith("e")]
        theirs = [m for m in sent if m.startswith("q")]
        everything = data(observer, len(sent))
        assert sorted(everything) == sorted(sent)
        assert [m for m in everything if m.startswith("e")] == mine
        assert [m for m in everything if m.startswith("q")] == theirs
        assert data(echoing, len(sent)) == everything
        assert data(quiet, len(mine)) == mine
        assert_silent(quiet)
    assert health(stack)["worker_replayed"] > before, "no publish fell into an outage"


def test_private_history_is_replayed_only_to_its_audience(stack):
    facility = unique_facility()
    alice = subscribed_client(stack, facility)
    wsloop.publish(facility, "0", broadcast=True, expire=0)
    alice.receive(1)
    alice.close()
    wsloop.publish(facility, "for bob", users=["bob"], expire=0)
    wsloop.publish(facility, "1", broadcast=True, expire=0)
    alice.connect()
    assert alice.receive(2) == ["0", "1"]
    alice.close()


def test_redis_restart_loses_nothing_history_holds(stack):
    facility = unique_facility()
    client = subscribed_client(stack, facility)
    wsloop.publish(facility, "0", broadcast=True, expire=0)
    client.receive(1)
    stack.stop_service("redis")
    with pytest.raises(wsloop.PublishError) as refused:
        wsloop.publish(facility, "lost", broadcast=True)
    assert not refused.value.maybe_published  # nothing was sent: retrying is safe
    stack.start_service("redis")
    stack.wait_for("redis", stack.redis_ready)
    for number in range(1, 21):  # published while the worker may still be resubscribing
        wsloop.publish(facility, str(number), broadcast=True, expire=0)
    assert client.receive(21) == NUMBERS[:21]
    assert client.close_codes == [], "no socket is closed by a Redis restart"
    client.close()


def test_redis_unreachable_for_10_s_closes_no_socket(stack):
    facility = unique_facility()
    client = subscribed_client(stack, facility)
    redis_pid = int(redis_client(stack).info("server")["process_id"])
    os.kill(redis_pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(wsloop.PublishError) as unanswered:
            wsloop.publish(facility, "nowhere", broadcast=True)
        assert unanswered.value.maybe_published  # sent, never answered
        time.sleep(max(0.0, 10 - (time.monotonic() - started)))
        assert client.ws.ping().wait(timeout=5), "sockets stay open while Redis hangs"
    finally:
        os.kill(redis_pid, signal.SIGCONT)
    wait_until(lambda: health(stack)["status"] == "ok", timeout=30, what="redis healthy again")
    for number in range(10):
        wsloop.publish(facility, str(number), broadcast=True, expire=0)
    # The timed-out publish reached Redis before it froze: it is applied when Redis resumes.
    # PublishError says so ("may or may not have been published").
    received = client.receive(10)
    if received[0] == "nowhere":
        received = client.receive(11)[1:]
    assert received == NUMBERS[:10]
    assert client.close_codes == []
    client.close()


def restart_loses_nothing(stack: Stack, restart: Callable[[int], None], close_code: int | None):
    """While messages flow, ``restart(pid)`` replaces the process serving the socket; the client
    reconnects with its last id and gets every message exactly once, in order."""
    facility = unique_facility()
    client = subscribed_client(stack, facility)
    publisher = Publisher(facility, 300, interval_s=0.01)
    publisher.start()
    client.receive(30)
    worker = health(stack)["pid"]
    restart(worker)
    wait_until(
        lambda: serving_pid(stack) not in (None, worker),
        timeout=30,
        what="a new websocket worker",
    )
    publisher.join()
    assert client.receive(300) == NUMBERS[:300]
    assert client.connects >= 2
    assert client.close_codes[0] == close_code
    assert not publisher.errors
    client.close()


def test_graceful_restart_loses_nothing_history_holds(stack):
    """uWSGI reloading its workers, or runserver reloading after a code change."""
    restart_loses_nothing(stack, lambda pid: stack.reload_websockets(), 1001)


@pytest.mark.deployments(Deployment.TWO_POOLS, Deployment.STANDALONE)
def test_killed_worker_loses_nothing_history_holds(stack):
    restart_loses_nothing(stack, lambda pid: os.kill(pid, signal.SIGKILL), None)


def test_a_slow_consumer_is_cut_while_1000_sockets_on_its_worker_get_everything(stack):
    """A client that stops reading on one facility is closed (4008) when its queue passes the
    limit; 1,000 sockets on the same worker receive every message meanwhile (their latency is
    measured by the load test, not asserted here)."""
    flood, steady = unique_facility("flood"), unique_facility("steady")
    before = health(stack)["slow_consumers"]
    slow = RawWebSocket(stack, f"{flood}?subscribe-broadcast", receive_buffer=4096)
    url = f"{stack.config.ws_url}{steady}?subscribe-broadcast"

    async def receive_all(ws, count: int) -> list[str]:
        got: list[str] = []
        while len(got) < count:
            message = await asyncio.wait_for(ws.recv(), timeout=30)
            if message != HEARTBEAT:
                got.append(message)
        return got

    async def scenario() -> list[list[str]]:
        limit = asyncio.Semaphore(50)

        async def open_one():
            async with limit:
                return await connect(
                    url, max_size=None, ping_interval=None, compression=None, open_timeout=30
                )

        sockets = await asyncio.gather(*(open_one() for _ in range(1000)))
        try:
            await asyncio.to_thread(wait_subscribed, stack, channel("broadcast", steady))
            await asyncio.to_thread(flood_and_publish)
            return await asyncio.gather(*(receive_all(ws, 50) for ws in sockets))
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets))

    def flood_and_publish() -> None:
        client = redis_client(stack)
        name = channel("broadcast", flood)
        with client.pipeline(transaction=False) as pipe:
            for _ in range(400):
                pipe.publish(name, b"\xff" * 64 * 1024)
            pipe.execute()
        for number in range(50):
            wsloop.publish(steady, str(number), broadcast=True, expire=0)

    try:
        received = asyncio.run(scenario())
        assert all(messages == NUMBERS[:50] for messages in received)
        wait_until(
            lambda: health(stack)["slow_consumers"] == before + 1,
            what="the slow consumer closed, and only it",
        )
        assert slow.read_close_code() in (4008, None)
    finally:
        slow.close()
