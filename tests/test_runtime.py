"""Recovery sequencing of a worker and its sockets, on real gevent sockets with a scripted bus.

The bus is a fake here because these interleavings (a history trimmed between two pages, a
subscription lost while a socket replays) cannot be produced on demand with a real Redis; the
integration suite covers the same paths end to end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json

import gevent
from gevent import socket
from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection, Ping, TextMessage

from wsloop import conf
from wsloop.channels import ChannelPlan
from wsloop.connection import WebSocket
from wsloop.history import DEFAULT_POLICY, TAG, Incoming, Position, StreamId
from wsloop.history_redis import HistoryGap, Replay
from wsloop.protocol import CloseCode
from wsloop.runtime import Runtime, sweep_waves

SETTINGS = conf.Settings(
    url="/ws/",
    redis_url="",
    redis_pool_size=1,
    prefix="",
    expire_s=0,
    heartbeat=None,
    heartbeat_interval_s=5,
    ping_interval_s=1000,
    idle_timeout_s=3000,
    allowed_channels=None,
    process_request=None,
    allowed_origins=None,
    subprotocols=(),
    facilities=None,
    max_message_bytes=65536,
    send_queue_bytes=1 << 20,
    close_timeout_s=2,
    history={"*": DEFAULT_POLICY},
    recovery_timeout_s=1.0,
    presence_ttl_s=60,
)
EPOCH = "abc"
CHANNEL = "broadcast:f"


def pos(number: int) -> Position:
    return Position(EPOCH, StreamId(number, 0))


def live(number: int) -> bytes:
    return TAG + f"{EPOCH}:{number}-0\n".encode() + f"m{number}".encode()


class NoPresence:
    ttl_s = 60

    def apply(self, changes): ...

    def refresh(self, entries): ...


class ScriptedBus:
    """History as a list; pages of ``page`` entries; HistoryGap once ``gap_after`` were read."""

    def __init__(self, numbers, page=2, gap_after=None, read_delay_s=0.0):
        self.numbers = list(numbers)
        self.page, self.gap_after, self.read_delay_s = page, gap_after, read_delay_s
        self.presence = NoPresence()
        self.subscribe_delay_s = 0.0

    def start(self, on_message, on_reconnect): ...

    def subscribe(self, channels): ...

    def unsubscribe(self, channels): ...

    def wait_subscribed(self, channels, timeout_s):
        gevent.sleep(self.subscribe_delay_s)
        return True

    def last_position(self, facility):
        return pos(self.numbers[-1]) if self.numbers else None

    def fetch_persisted(self, channels):
        return []

    def replay(self, facility, since, channels):
        items = [
            (CHANNEL, Incoming(f"m{n}".encode(), pos(n)))
            for n in self.numbers
            if since is None or n > since.id.ms
        ]

        def pages():
            for start in range(0, len(items), self.page):
                if self.gap_after is not None and start >= self.gap_after:
                    raise HistoryGap("trimmed")
                gevent.sleep(self.read_delay_s)
                yield items[start : start + self.page]

        return Replay(None, pages())


def new_runtime(bus):
    """A worker that started following facility "f" before anything was published there."""
    runtime = Runtime(SETTINGS, bus)
    runtime._positions["f"] = None
    return runtime


def open_socket(runtime, *, envelope, since=None):
    server, client = socket.socketpair()
    websocket = WebSocket(
        server, runtime, ChannelPlan("f", (CHANNEL,), (), False, envelope=envelope), since=since
    )
    gevent.spawn(websocket.run)
    return websocket, client


def received(client, seconds=0.5):
    """Text messages (parsed when JSON) and close codes the client got."""
    peer, out = Connection(ConnectionType.CLIENT), []
    client.settimeout(seconds)
    try:
        while data := client.recv(65536):
            peer.receive_data(data)
            for event in peer.events():
                if isinstance(event, TextMessage):
                    out.append(json.loads(event.data) if event.data.startswith("{") else event.data)
                elif isinstance(event, CloseConnection):
                    out.append(("close", event.code))
    except (TimeoutError, OSError):
        pass
    return out


def data_of(messages):
    return [
        m["data"] if isinstance(m, dict) else m
        for m in messages
        if isinstance(m, str) or (isinstance(m, dict) and m.get("type") == "message")
    ]


def test_worker_replay_cut_by_a_gap_keeps_its_position_no_duplicates():
    bus = ScriptedBus([1], page=2, gap_after=2)
    runtime = new_runtime(bus)
    _, client = open_socket(runtime, envelope=False)
    gevent.sleep(0.05)
    runtime._dispatch(CHANNEL, [live(1)])
    bus.numbers += [2, 3, 4, 5]  # published while the subscription was down
    bus.read_delay_s = 0.05
    runtime._recover_after_reconnect()
    runtime._dispatch(CHANNEL, [live(3), live(4), live(5)])  # held, partly replayed too
    gevent.sleep(0.5)
    assert received(client) == ["m1", "m2", "m3", "m4", "m5"]


def test_a_socket_recovering_while_the_worker_recovers_gets_each_message_once():
    bus = ScriptedBus([1, 2], page=2, read_delay_s=0.05)
    runtime = new_runtime(bus)
    open_socket(runtime, envelope=True)
    gevent.sleep(0.05)
    runtime._dispatch(CHANNEL, [live(1), live(2)])
    bus.numbers += [3, 4, 5, 6]
    _, client = open_socket(runtime, envelope=True, since=pos(1))
    gevent.sleep(0.01)  # the socket is replaying when the worker loses its subscription
    bus.subscribe_delay_s = 0.4
    runtime._recover_after_reconnect()
    gevent.sleep(1.0)
    messages = received(client)
    assert data_of(messages) == ["m2", "m3", "m4", "m5", "m6"]
    assert {"type": "recovered", "count": 5, "id": f"{EPOCH}:6-0"} in messages


def test_nothing_follows_a_close_sent_while_waiting_for_the_worker():
    runtime = new_runtime(ScriptedBus([1, 2, 3]))
    runtime.live.clear()  # the worker is recovering
    websocket, client = open_socket(runtime, envelope=True, since=pos(0))
    gevent.sleep(0.05)
    websocket.close(CloseCode.GOING_AWAY, "server restarting")
    gevent.sleep(1.2)
    messages = received(client, 0.3)
    assert messages[-1] == ("close", 1001)
    assert data_of(messages) == []


def test_a_gap_during_a_socket_replay_resyncs_without_resending_what_was_replayed():
    bus = ScriptedBus([1, 2, 3, 4, 5], page=2, gap_after=2, read_delay_s=0.1)
    runtime = new_runtime(bus)
    _, client = open_socket(runtime, envelope=True, since=pos(0))
    gevent.sleep(0.02)
    runtime._dispatch(CHANNEL, [live(n) for n in (1, 2, 3, 4, 5)])  # live copies, held
    gevent.sleep(0.5)
    messages = received(client)
    assert data_of(messages) == ["m1", "m2", "m3", "m4", "m5"]
    assert {"type": "resync", "reason": "expired"} in messages


def test_sweep_waves_cover_every_socket_once_in_at_most_the_asked_number():
    sockets = tuple(range(45))
    waves = sweep_waves(sockets, 20)
    assert len(waves) <= 20 and [s for wave in waves for s in wave] == list(sockets)
    assert {len(wave) for wave in waves[:-1]} == {3}
    assert sweep_waves((), 20) == [] and sweep_waves((1,), 20) == [(1,)]


def answer_pings(client, pings):
    """A peer that answers every ping (and counts them) until the server closes."""
    peer = Connection(ConnectionType.CLIENT)
    with contextlib.suppress(OSError):
        while data := client.recv(65536):
            peer.receive_data(data)
            for event in peer.events():
                if isinstance(event, Ping):
                    pings.append(event.payload)
                    client.sendall(peer.send(event.response()))


def test_pings_keep_an_answering_socket_and_close_a_silent_one():
    settings = dataclasses.replace(
        SETTINGS, ping_interval_s=0.2, idle_timeout_s=0.5, close_timeout_s=0.2
    )
    runtime = Runtime(settings, ScriptedBus([]))
    runtime._positions["f"] = None
    answering, answering_client = open_socket(runtime, envelope=False)
    silent, silent_client = open_socket(runtime, envelope=False)
    pings = []
    gevent.spawn(answer_pings, answering_client, pings)
    pinger = gevent.spawn(runtime._ping_forever)
    try:
        gevent.sleep(1.2)
        assert ("close", 1001) in received(silent_client, 0.2)
        gevent.sleep(0.4)  # the silent peer does not answer the close either: close timeout
        assert silent not in runtime.sockets and answering in runtime.sockets
        assert len(pings) >= 4  # about one per interval
        assert runtime.metrics.idle_timeouts == 1
    finally:
        pinger.kill()
        answering.close(CloseCode.GOING_AWAY, "test over")
