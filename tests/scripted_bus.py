"""A scripted bus for the socket and worker tests: history as a list, real gevent sockets.

The bus is a fake because the interleavings these tests need (a history trimmed between two
pages, a subscription lost while a socket replays, a live copy late behind a replay) cannot be
produced on demand with a real Redis; the stack tests and the checker cover the same paths end to
end.
"""

from __future__ import annotations

import json

import gevent
import pytest
from gevent import socket
from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection, TextMessage

from wsloop import conf
from wsloop.channels import ChannelPlan
from wsloop.connection import WebSocket
from wsloop.history import DEFAULT_POLICY, Incoming, Position, StreamId, tag
from wsloop.history_redis import HistoryGap, Published, Replay

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


def live(number: int, origin: str | None = None) -> bytes:
    """The bus form of message ``m<number>`` at position ``number``."""
    return tag(pos(number), origin, f"m{number}".encode())


class NoPresence:
    ttl_s = 60

    def apply(self, changes): ...

    def refresh(self, entries): ...


class ScriptedBus:
    """History as a list of numbers; pages of ``page`` entries, each read ``read_delay_s``
    apart; HistoryGap once ``gap_after`` entries were read; subscriptions confirmed after
    ``subscribe_delay_s``; live copies reported delivered after ``deliver_delay_s``. Publishes
    are recorded, not delivered."""

    def __init__(self, numbers=(), page=2, gap_after=None, read_delay_s=0.0, payload_bytes=0):
        self.numbers = list(numbers)
        self.payload_bytes = payload_bytes
        self.page, self.gap_after, self.read_delay_s = page, gap_after, read_delay_s
        self.presence = NoPresence()
        self.subscribe_delay_s = 0.0
        self.persisted: list[tuple[str, bytes]] = []
        self.deliver_delay_s = 0.0
        self.published: list[tuple[bytes, str | None]] = []
        self.origins: dict[int, str] = {}  # number -> origin of the socket that published it
        self.on_read = lambda: None  # called at each page read: a test's hook into the replay

    def start(self, on_message, on_reconnect): ...

    def subscribe(self, channels): ...

    def unsubscribe(self, channels): ...

    def wait_subscribed(self, channels, timeout_s):
        gevent.sleep(self.subscribe_delay_s)
        return True

    def last_position(self, facility):
        return pos(self.numbers[-1]) if self.numbers else None

    def current_position(self, facility):
        return pos(self.numbers[-1]) if self.numbers else pos(0)

    def wait_delivered(self, timeout_s):
        gevent.sleep(self.deliver_delay_s)
        return True

    def fetch_persisted(self, channels):
        return list(self.persisted)

    def publish(self, facility, channels, payload, expire_s, origin=None):
        self.published.append((payload, origin))
        return Published(1, ())

    def payload(self, number):
        return f"m{number}".encode().ljust(self.payload_bytes, b".")

    def replay(self, facility, since, channels):
        def pages():
            cursor = 0 if since is None else since.id.ms
            read = 0
            while True:
                if self.gap_after is not None and read >= self.gap_after:
                    raise HistoryGap("trimmed")
                gevent.sleep(self.read_delay_s)
                self.on_read()
                after = [n for n in self.numbers if n > cursor][: self.page]
                if after:
                    yield [
                        (CHANNEL, Incoming(self.payload(n), pos(n), self.origins.get(n)))
                        for n in after
                    ]
                    cursor, read = after[-1], read + len(after)
                if len(after) < self.page:
                    return

        return Replay(None, pages())


_OPEN: list[tuple[gevent.Greenlet, socket.socket]] = []  # this test's sockets, for teardown


def open_socket(runtime, *, envelope, since=None, publish=(), echo=False):
    server, client = socket.socketpair()
    plan = ChannelPlan("f", (CHANNEL,), tuple(publish), echo, envelope=envelope)
    websocket = WebSocket(server, runtime, plan, since=since)
    _OPEN.append((gevent.spawn(websocket.run), client))
    return websocket, client


def send_texts(client, *texts, then=b""):
    """Client frames (masked, as a browser sends them), all in one write, ``then`` after them."""
    peer = Connection(ConnectionType.CLIENT)
    client.sendall(b"".join(peer.send(TextMessage(text)) for text in texts) + then)


def received(client, seconds=0.5):
    """Text messages (parsed when JSON) and close codes the client got."""
    peer, out, text = Connection(ConnectionType.CLIENT), [], ""
    client.settimeout(seconds)
    try:
        while data := client.recv(65536):
            peer.receive_data(data)
            for event in peer.events():
                if isinstance(event, TextMessage):
                    text += event.data
                    if event.message_finished:
                        out.append(json.loads(text) if text.startswith("{") else text)
                        text = ""
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


def controls_of(messages):
    return [m for m in messages if isinstance(m, dict) and m.get("type") != "message"]


@pytest.fixture(autouse=True)
def no_greenlet_errors(monkeypatch):
    """A greenlet that dies of an exception fails the test (gevent would only print it); the
    sockets a test opened are closed and their greenlets waited for first."""
    errors: list[BaseException] = []
    hub_class = type(gevent.get_hub())
    original = hub_class.handle_error

    def record(self, context, kind, value, traceback):
        if kind is not None and not issubclass(kind, gevent.GreenletExit):
            errors.append(value)
        return original(self, context, kind, value, traceback)

    monkeypatch.setattr(hub_class, "handle_error", record)
    yield
    for greenlet, client in _OPEN:  # each socket's peer goes away: its greenlet ends
        client.close()
        greenlet.join(timeout=5)
    _OPEN.clear()
    assert errors == [], f"greenlets died: {errors!r}"
