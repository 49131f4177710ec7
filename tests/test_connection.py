"""A socket's start and life on real gevent sockets, against a scripted bus (tests/scripted_bus).

Each test plays one interleaving that a real Redis produces only by chance: a live copy that
arrives after the replay read its message, a close between two pages, a gap in the middle of a
replay. ``tests/test_recovery.py`` checks the decisions exhaustively without sockets; these check
that the socket carries them out.
"""

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
from wsproto.events import CloseConnection, Ping, Pong

from wsloop.broker import BrokerUnavailable
from wsloop.history import Resync
from wsloop.history_redis import Replay
from wsloop.protocol import CloseCode
from wsloop.recovery import SocketPhase
from wsloop.runtime import Runtime


def new_runtime(bus, **settings):
    return Runtime(dataclasses.replace(SETTINGS, **settings), bus)


def test_a_live_copy_late_behind_the_replay_is_dropped_at_the_seam():
    """The interleaving behind the duplicate found in issue 14: the replay read message 3 from
    history before its live copy reached the worker, so the copy arrives after the socket went
    live."""
    runtime = new_runtime(ScriptedBus([1, 2, 3]))
    websocket, client = open_socket(runtime, envelope=True, since=pos(1))
    gevent.sleep(0.05)
    assert websocket.recovery.phase is SocketPhase.SEAM
    runtime._dispatch(CHANNEL, [live(2), live(3), live(4)])
    messages = received(client)
    assert data_of(messages) == ["m2", "m3", "m4"]
    assert controls_of(messages) == [{"type": "recovered", "count": 2, "id": f"{EPOCH}:3-0"}]
    assert websocket.recovery.seam is None and websocket.recovery.phase is SocketPhase.LIVE


def test_live_copies_held_during_the_replay_go_out_after_it_past_the_seam():
    bus = ScriptedBus([1, 2, 3, 4], page=2)
    runtime = new_runtime(bus)
    reads = []

    def at_each_read():
        reads.append(1)
        if len(reads) == 1:  # before the first page
            runtime._dispatch(CHANNEL, [live(1), live(2)])
        elif len(reads) == 2:  # between the pages, and one published meanwhile
            bus.numbers.append(5)
            runtime._dispatch(CHANNEL, [live(3), live(4), live(5)])
        elif len(reads) == 3:  # the replay's last read sees 5; 6 comes after it
            runtime._dispatch(CHANNEL, [live(6)])

    bus.on_read = at_each_read
    _, client = open_socket(runtime, envelope=True, since=pos(0))
    messages = received(client)
    assert data_of(messages) == ["m1", "m2", "m3", "m4", "m5", "m6"]
    assert messages[5] == {"type": "recovered", "count": 5, "id": f"{EPOCH}:5-0"}


def test_a_socket_without_since_is_told_its_position_and_gets_what_follows_it():
    runtime = new_runtime(ScriptedBus([1, 2, 3]))
    _, client = open_socket(runtime, envelope=True)
    gevent.sleep(0.05)
    runtime._dispatch(CHANNEL, [live(3), live(4)])  # 3 was before the position it was told
    assert received(client) == [
        {"type": "position", "id": f"{EPOCH}:3-0"},
        {"type": "message", "id": f"{EPOCH}:4-0", "audience": "broadcast", "data": "m4"},
    ]


def test_nothing_follows_a_close_sent_while_waiting_for_the_worker():
    runtime = new_runtime(ScriptedBus([1, 2, 3]))
    runtime._live.clear()  # the worker is recovering
    websocket, client = open_socket(runtime, envelope=True, since=pos(0))
    gevent.sleep(0.05)
    websocket.close(CloseCode.GOING_AWAY, "server restarting")
    gevent.sleep(1.2)
    messages = received(client, 0.3)
    assert messages == [("close", 1001)]


def test_a_client_gone_while_its_subscription_is_awaited_is_no_retry():
    bus = ScriptedBus([1, 2, 3])
    bus.wait_subscribed = lambda channels, timeout_s: gevent.sleep(0.3) or False
    runtime = new_runtime(bus)
    _, client = open_socket(runtime, envelope=True, since=pos(0))
    gevent.sleep(0.05)
    peer = Connection(ConnectionType.CLIENT)
    client.sendall(peer.send(CloseConnection(code=1000)))
    assert received(client, 1) == [("close", 1000)]
    gevent.sleep(0.4)
    assert runtime.metrics.retries == 0 and runtime.sockets == set()


def test_a_close_between_two_pages_ends_the_replay_with_the_close_frame():
    bus = ScriptedBus(range(1, 7), page=2, read_delay_s=0.05)
    runtime = new_runtime(bus)
    websocket, client = open_socket(runtime, envelope=True, since=pos(0))
    reads = []

    def close_at_the_second_read():
        reads.append(1)
        if len(reads) == 2:
            websocket.close(CloseCode.GOING_AWAY)

    bus.on_read = close_at_the_second_read
    gevent.sleep(0.5)
    messages = received(client)
    assert messages[-1] == ("close", 1001)
    assert data_of(messages) == ["m1", "m2"]  # the page written before the close, nothing after
    assert controls_of(messages) == []


def test_a_gap_in_the_middle_of_a_replay_resyncs_from_the_current_position():
    bus = ScriptedBus([1, 2, 3, 4, 5], page=2, gap_after=2, read_delay_s=0.1)
    runtime = new_runtime(bus)
    _, client = open_socket(runtime, envelope=True, since=pos(0))
    gevent.sleep(0.02)
    runtime._dispatch(CHANNEL, [live(n) for n in (1, 2, 3, 4, 5, 6)])  # held
    gevent.sleep(0.5)
    messages = received(client)
    assert data_of(messages) == ["m1", "m2", "m6"]  # told to resync from 5: what follows it
    assert controls_of(messages) == [{"type": "resync", "reason": "expired", "id": f"{EPOCH}:5-0"}]


def test_a_bare_socket_gets_persisted_messages_first_then_what_was_held():
    bus = ScriptedBus()
    bus.persisted = [(CHANNEL, b"kept")]
    bus.subscribe_delay_s = 0.0
    runtime = new_runtime(bus)
    original = bus.fetch_persisted

    def slow_fetch(channels):
        runtime._dispatch(CHANNEL, [b"live while fetching"])
        return original(channels)

    bus.fetch_persisted = slow_fetch
    _, client = open_socket(runtime, envelope=False)
    gevent.sleep(0.05)
    runtime._dispatch(CHANNEL, [b"later"])
    assert received(client) == ["kept", "live while fetching", "later"]


def test_a_persisted_message_whose_live_copy_is_on_its_way_goes_out_once():
    """The duplicate a bare joiner got on a busy channel: message 5 was published after the
    subscription and read as persisted before its live copy arrived."""
    bus = ScriptedBus()
    bus.persisted = [(CHANNEL, b"m5")]
    bus.deliver_delay_s = 0.2
    runtime = new_runtime(bus)
    _, client = open_socket(runtime, envelope=False)
    gevent.sleep(0.05)
    runtime._dispatch(CHANNEL, [live(4), live(5)])  # before the bus says all is in
    gevent.sleep(0.3)
    runtime._dispatch(CHANNEL, [live(6)])
    assert received(client) == ["m4", "m5", "m6"]


def test_a_bare_socket_asks_the_next_subscription_when_its_answer_was_lost():
    """The subscription was lost with message 5's live copy on its way; the worker's recovery
    replays it, and the socket, asking again, holds it before it goes live."""
    bus = ScriptedBus()
    bus.persisted = [(CHANNEL, b"m5")]
    answers = iter([False, False, True])
    bus.wait_delivered = lambda timeout_s: next(answers)
    runtime = new_runtime(bus)
    websocket, client = open_socket(runtime, envelope=False)
    gevent.sleep(0.02)
    assert websocket.recovery.holding
    runtime._dispatch(CHANNEL, [live(5)])  # the replayed copy
    assert received(client) == ["m5"]


def test_a_bare_socket_goes_live_only_once_the_bus_delivered_what_it_read():
    bus = ScriptedBus()
    bus.persisted = [(CHANNEL, b"m3")]
    bus.deliver_delay_s = 0.3
    runtime = new_runtime(bus)
    websocket, client = open_socket(runtime, envelope=False)
    gevent.sleep(0.1)
    assert websocket.recovery.holding
    gevent.sleep(0.3)
    assert websocket.recovery.phase is SocketPhase.LIVE
    assert received(client) == ["m3"]


def test_a_bare_sender_does_not_get_its_own_message_back_as_the_persisted_one():
    """It sent a message as it connected; its start reads the channel's persisted message
    before its reader publishes that one (issue 14: a sender without echo got its own message
    back as the persisted one when both ran at once)."""
    bus = ScriptedBus()
    bus.subscribe_delay_s = 0.1
    runtime = new_runtime(bus)
    original = bus.publish

    def publish_and_keep(facility, channels, payload, expire_s, origin=None):
        bus.persisted = [(CHANNEL, payload)]
        return original(facility, channels, payload, expire_s, origin)

    bus.publish = publish_and_keep
    sender, client = open_socket(runtime, envelope=False, publish=[CHANNEL])
    send_texts(client, "mine")
    gevent.sleep(0.2)
    assert sender.recovery.phase is SocketPhase.LIVE
    runtime._dispatch(CHANNEL, [b"after"])
    assert received(client) == ["after"]


def test_an_envelope_sender_skips_its_own_message_in_its_replay():
    bus = ScriptedBus([1, 2, 3], page=1, read_delay_s=0.05)
    runtime = new_runtime(bus)
    sender, client = open_socket(runtime, envelope=True, since=pos(0), publish=[CHANNEL])
    bus.origins[2] = sender.origin  # published by this socket as its replay began
    messages = received(client)
    assert data_of(messages) == ["m1", "m3"]
    assert controls_of(messages) == [{"type": "recovered", "count": 2, "id": f"{EPOCH}:3-0"}]


def test_held_messages_past_the_limit_close_a_slow_consumer():
    runtime = new_runtime(ScriptedBus([1], read_delay_s=0.3), send_queue_bytes=100)
    _, client = open_socket(runtime, envelope=True, since=pos(0))
    gevent.sleep(0.05)
    runtime._dispatch(CHANNEL, [b"x" * 60, b"y" * 60])
    gevent.sleep(0.1)
    assert received(client) == [("close", 4008)]
    assert runtime.metrics.slow_consumers == 1


def test_a_replay_larger_than_the_send_queue_goes_out_whole():
    bus = ScriptedBus(range(1, 3001), page=1000, payload_bytes=100)
    runtime = new_runtime(bus, send_queue_bytes=64 * 1024)  # a replay of about 400 KiB
    _, client = open_socket(runtime, envelope=True, since=pos(0))
    messages = received(client, seconds=2)
    assert data_of(messages) == [bus.payload(n).decode() for n in range(1, 3001)]
    assert runtime.metrics.slow_consumers == 0


def test_a_bare_sender_echoes_itself_at_once_and_skips_its_copy_from_the_bus():
    bus = ScriptedBus()
    runtime = new_runtime(bus)
    sender, sender_client = open_socket(runtime, envelope=False, publish=[CHANNEL], echo=True)
    quiet, quiet_client = open_socket(runtime, envelope=False, publish=[CHANNEL])
    gevent.sleep(0.05)
    for client in (sender_client, quiet_client):
        send_texts(client, "hi")
        gevent.sleep(0.05)
    assert bus.published == [(b"hi", sender.origin), (b"hi", quiet.origin)]
    runtime._dispatch(CHANNEL, [live(1, sender.origin), live(2, quiet.origin)])
    assert received(sender_client) == ["hi", "m2"]
    assert received(quiet_client) == ["m1"]


# A text frame with RSV2 set and no extension that defines it (Autobahn case 3.2).
RSV2_FRAME = bytes([0xA1, 0x80, 0, 0, 0, 0])


def test_the_echo_of_a_message_before_a_frame_that_fails_the_connection_goes_out_first():
    """One read holds a message, a frame that fails the connection and a ping: the message is
    published and echoed, then the close frame; no pong (RFC 6455 7.1.7, Autobahn 3.2)."""
    bus = ScriptedBus()
    runtime = new_runtime(bus)
    sender, client = open_socket(runtime, envelope=False, publish=[CHANNEL], echo=True)
    gevent.sleep(0.05)
    ping = Connection(ConnectionType.CLIENT).send(Ping(b"p"))
    send_texts(client, "hello", then=RSV2_FRAME + ping)
    assert received(client) == ["hello", ("close", CloseCode.PROTOCOL_ERROR)]
    assert bus.published == [(b"hello", sender.origin)]


def test_no_echo_follows_a_close_sent_while_the_message_was_publishing():
    bus = ScriptedBus()
    runtime = new_runtime(bus)
    sender, client = open_socket(runtime, envelope=False, publish=[CHANNEL], echo=True)
    gevent.sleep(0.05)
    publish = bus.publish

    def close_meanwhile(*args):
        sender.close(CloseCode.GOING_AWAY)
        return publish(*args)

    bus.publish = close_meanwhile
    send_texts(client, "hello")
    assert received(client) == [("close", CloseCode.GOING_AWAY)]


def test_a_start_that_cannot_read_history_closes_with_1013_and_nothing_else():
    """Redis away while a socket starts: no resync (history is fine, only out of reach); the
    client comes back later with the same position."""
    bus = ScriptedBus([1, 2])

    def unreachable(*args):
        raise BrokerUnavailable("cannot read history: connection refused")

    bus.replay = unreachable
    runtime = new_runtime(bus)
    _, client = open_socket(runtime, envelope=True, since=pos(1))
    assert received(client) == [("close", 1013)]
    bus.current_position = unreachable
    _, fresh = open_socket(runtime, envelope=True)
    assert received(fresh) == [("close", 1013)]
    assert runtime.metrics.retries == 2 and runtime.metrics.resyncs == 0


def test_history_that_is_disabled_is_a_resync_not_a_retry():
    bus = ScriptedBus([])
    bus.replay = lambda *args: Replay(Resync.UNAVAILABLE)
    bus.current_position = lambda facility: None
    runtime = new_runtime(bus)
    _, client = open_socket(runtime, envelope=True, since=pos(1))
    assert received(client) == [{"type": "resync", "reason": "unavailable"}]
    _, fresh = open_socket(runtime, envelope=True)
    assert received(fresh) == [{"type": "position"}]


def test_a_client_that_closes_during_a_long_replay_stops_it_and_gets_its_answer():
    bus = ScriptedBus(range(1, 2001), page=100, read_delay_s=0.02)
    runtime = new_runtime(bus)
    reads = []
    bus.on_read = lambda: reads.append(1)
    _, client = open_socket(runtime, envelope=True, since=pos(0))
    peer = Connection(ConnectionType.CLIENT)
    gevent.sleep(0.1)
    client.sendall(peer.send(Ping(b"still there?")))
    client.sendall(peer.send(CloseConnection(code=1000)))
    events = []
    client.settimeout(1)
    with contextlib.suppress(TimeoutError, OSError):
        while data := client.recv(65536):
            peer.receive_data(data)
            events += list(peer.events())
    assert any(isinstance(e, Pong) and e.payload == b"still there?" for e in events)
    assert isinstance(events[-1], CloseConnection) and events[-1].code == 1000
    assert len(reads) < 10  # of 21: the replay stopped with the client
