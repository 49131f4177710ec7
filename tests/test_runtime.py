"""A worker's recovery after a lost subscription, its sweeps and pings, with its sockets on real
gevent sockets against a scripted bus (tests/scripted_bus: why a fake)."""

from __future__ import annotations

import contextlib
import dataclasses

import gevent
from scripted_bus import (
    CHANNEL,
    EPOCH,
    SETTINGS,
    ScriptedBus,
    controls_of,
    data_of,
    live,
    no_greenlet_errors,  # noqa: F401 (an autouse fixture)
    open_socket,
    pos,
    received,
    send_texts,
)
from wsproto.connection import Connection, ConnectionType
from wsproto.events import Ping

from wsloop import runtime as runtime_module
from wsloop.broker import BrokerUnavailable
from wsloop.protocol import CloseCode
from wsloop.recovery import WorkerPhase
from wsloop.runtime import Runtime, sweep_waves


def test_worker_replay_cut_by_a_gap_keeps_its_position_no_duplicates():
    bus = ScriptedBus([], page=2, gap_after=2)
    runtime = Runtime(SETTINGS, bus)
    _, client = open_socket(runtime, envelope=False)
    gevent.sleep(0.05)
    bus.numbers.append(1)
    runtime._dispatch(CHANNEL, [live(1)])
    bus.numbers += [2, 3, 4, 5]  # published while the subscription was down
    bus.read_delay_s = 0.05
    runtime._recover_after_reconnect()
    runtime._dispatch(CHANNEL, [live(3), live(4), live(5)])  # wait, partly replayed too
    gevent.sleep(0.5)
    assert received(client) == ["m1", "m2", "m3", "m4", "m5"]
    assert runtime.recovery.phase is WorkerPhase.LIVE


def test_a_socket_replaying_when_the_worker_recovers_gets_each_message_once():
    bus = ScriptedBus([1, 2], page=2, read_delay_s=0.05)
    runtime = Runtime(SETTINGS, bus)
    open_socket(runtime, envelope=True)
    gevent.sleep(0.1)
    runtime._dispatch(CHANNEL, [live(1), live(2)])
    bus.numbers += [3, 4, 5, 6]
    _, client = open_socket(runtime, envelope=True, since=pos(1))
    gevent.sleep(0.07)  # the socket is replaying when the worker loses its subscription
    bus.subscribe_delay_s = 0.4
    runtime._recover_after_reconnect()
    gevent.sleep(1.0)
    messages = received(client)
    assert data_of(messages) == ["m2", "m3", "m4", "m5", "m6"]
    assert {"type": "recovered", "count": 5, "id": f"{EPOCH}:6-0"} in messages


def test_a_socket_starting_while_the_worker_recovers_waits_and_needs_nothing_of_it():
    bus = ScriptedBus([1, 2, 3], read_delay_s=0.05)
    runtime = Runtime(SETTINGS, bus)
    _, first = open_socket(runtime, envelope=True)
    gevent.sleep(0.1)
    bus.numbers.append(4)  # published while the subscription was down
    runtime._recover_after_reconnect()
    _, second = open_socket(runtime, envelope=True, since=pos(2))
    runtime._dispatch(CHANNEL, [live(4), live(5)])  # 4 came back late: the replay has it too
    bus.numbers.append(5)
    gevent.sleep(0.6)
    assert data_of(received(first)) == ["m4", "m5"]
    assert data_of(received(second)) == ["m3", "m4", "m5"]


def test_live_sockets_are_told_to_resync_when_the_worker_cannot_replay():
    bus = ScriptedBus([1, 2], page=2)
    runtime = Runtime(SETTINGS, bus)
    _, client = open_socket(runtime, envelope=True)
    gevent.sleep(0.05)
    bus.numbers += [3, 4]
    bus.gap_after = 0  # trimmed past the worker's position meanwhile
    runtime._recover_after_reconnect()
    runtime._dispatch(CHANNEL, [live(5)])
    gevent.sleep(0.2)
    messages = received(client)
    assert controls_of(messages) == [
        {"type": "position", "id": f"{EPOCH}:2-0"},
        {"type": "resync", "reason": "expired"},
    ]
    assert data_of(messages) == ["m5"]


def test_a_worker_that_cannot_read_history_yet_tries_again_before_any_resync(monkeypatch):
    monkeypatch.setattr(runtime_module, "REPLAY_RETRY_S", 0.05)
    bus = ScriptedBus([1], page=10)
    runtime = Runtime(SETTINGS, bus)
    _, client = open_socket(runtime, envelope=True)
    gevent.sleep(0.05)
    bus.numbers += [2, 3]
    replay, failures = bus.replay, []

    def flapping(*args):
        if len(failures) < 2:
            failures.append(1)
            raise BrokerUnavailable("cannot read history: connection reset")
        return replay(*args)

    bus.replay = flapping
    runtime._recover_after_reconnect()
    gevent.sleep(0.3)
    messages = received(client)
    assert data_of(messages) == ["m2", "m3"]
    assert controls_of(messages) == [{"type": "position", "id": f"{EPOCH}:1-0"}]
    assert runtime.metrics.resyncs == 0 and runtime.recovery.phase is WorkerPhase.LIVE


def test_own_publishes_stay_exactly_once_across_a_resubscribe():
    """A socket publishes just before the subscription is lost: the bus copy never arrives, the
    worker's replay brings it back with its origin. The sender without echo never gets it, the
    envelope sender with echo exactly once, the others once."""
    bus = ScriptedBus([1], page=10)
    runtime = Runtime(SETTINGS, bus)
    quiet, quiet_client = open_socket(runtime, envelope=True, publish=[CHANNEL])
    echoing, echoing_client = open_socket(runtime, envelope=True, publish=[CHANNEL], echo=True)
    _, other_client = open_socket(runtime, envelope=False)
    gevent.sleep(0.05)
    send_texts(quiet_client, "m2")
    gevent.sleep(0.05)
    send_texts(echoing_client, "m3")
    gevent.sleep(0.05)
    assert [origin for _, origin in bus.published] == [quiet.origin, echoing.origin]
    bus.numbers += [2, 3]
    bus.origins.update({2: quiet.origin, 3: echoing.origin})
    runtime._recover_after_reconnect()
    gevent.sleep(0.1)
    runtime._dispatch(CHANNEL, [live(2, quiet.origin), live(3, echoing.origin)])  # late copies
    runtime._recover_after_reconnect()  # and once more: nothing comes twice
    gevent.sleep(0.1)
    assert data_of(received(quiet_client)) == ["m3"]
    assert data_of(received(echoing_client)) == ["m2", "m3"]
    assert received(other_client) == ["m2", "m3"]


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
