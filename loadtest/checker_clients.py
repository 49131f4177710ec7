"""The recovery checker's clients: envelope websockets in a process of their own, each dropping
its connection at random moments and coming back with ``since=<last id>``, as a browser that
loses its network does.

One ``select.epoll`` loop (``wsclient.ClientConnection`` sockets, no asyncio: see ``wsclient``)
serves every client of the process; the coordinator (``loadtest.checker``) talks to it over a
``multiprocessing`` pipe: ``Begin`` starts the clients, ``Finish`` tells them the last position
published so that each reads until it has it, then closes; the reply is every client's log
(``checker_analysis.ClientLog``).

Each client, over and over until ``Finish``: connects (the first time with the ``since`` a page
would have been rendered with, or without one to be told its position), reads for a random
lifetime (exponential, mean ``lifetime_s``), then drops the connection one of three ways, as
chosen by its own seeded random source: a clean close (the closing handshake), the TCP connection
cut with a FIN and no close frame, or cut with an RST. It comes back at once, with the last id
it received. A connection the server closes (1001 on a reload, 1013 while history is out of
reach, EOF when its worker is killed) or that fails to open (refused, 502 while a worker
restarts) is retried with a short backoff.
"""

from __future__ import annotations

import heapq
import itertools
import json
import random
import select
import socket
import struct
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from urllib.parse import urlsplit

from wsloop.history import Position

from .checker_analysis import ClientLog, Event
from .wsclient import ClientConnection, State

READ_EVENTS = select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR | select.EPOLLRDHUP
HANDSHAKE_TIMEOUT_S = 10.0
RETRY_FIRST_S = 0.05
RETRY_CAP_S = 1.0
SWEEP_S = 0.1
DROPS = ("clean", "cut-fin", "cut-rst")
FINISHED = "finished"  # the close at the end of the run


@dataclass(frozen=True)
class ClientSpec:
    name: str
    since: str | None  # the first connect's since (a rendered page), or None
    seed: int


@dataclass(frozen=True)
class Begin:
    base_url: str  # http://host:port of nginx (or the standalone server)
    path: str  # /ws/<facility>?subscribe-broadcast&envelope
    lifetime_s: float
    clients: tuple[ClientSpec, ...]


@dataclass(frozen=True)
class Finish:
    last_id: str  # every client reads until its last id is at least this one
    timeout_s: float


@dataclass
class _Timer:
    when: float
    seq: int
    action: Callable[[], None] | None = field(compare=False)

    def __lt__(self, other: _Timer) -> bool:
        return (self.when, self.seq) < (other.when, other.seq)


class _Client:
    """One logical client across its connections."""

    def __init__(self, spec: ClientSpec, loop: _Loop) -> None:
        self.name = spec.name
        self.last_id = spec.since
        self.random = random.Random(spec.seed)
        self.loop = loop
        self.received = array("i")
        self.events: list[Event] = []
        self.conn: ClientConnection | None = None
        self.dropping: str | None = None  # how the current connection is being dropped
        self.retry_s = RETRY_FIRST_S
        self.drop_timer: _Timer | None = None
        self.done = False

    def event(
        self, kind: str, position: str | None = None, detail: str | int | None = None
    ) -> None:
        self.events.append(Event(time.monotonic(), len(self.received), kind, position, detail))

    def connect(self) -> None:
        if self.done:
            return
        since = f"&since={self.last_id}" if self.last_id else ""
        self.event("connect", self.last_id)
        self.dropping = None
        try:
            self.conn = self.loop.open(self, f"{self.loop.path}{since}")
        except OSError as exc:
            self.event("failed", detail=f"oserror-{exc.errno}")
            self.retry()

    def opened(self) -> None:
        self.retry_s = RETRY_FIRST_S
        if not self.loop.finishing:
            lifetime = self.random.expovariate(1 / self.loop.lifetime_s)
            self.drop_timer = self.loop.later(lifetime, self.drop)

    def message(self, payload: bytes) -> None:
        if not payload.startswith(b"{"):
            return  # the server's heartbeat (WSLOOP_HEARTBEAT), the only frame that is not JSON
        body = json.loads(payload)
        kind = body["type"]
        if kind == "message":
            self.received.append(int(body["data"]))
            self.last_id = body["id"]
        elif kind in ("position", "recovered", "resync"):
            position = body.get("id")
            self.event(kind, position, body.get("count", body.get("reason")))
            self.last_id = position
        if self.loop.finishing and self.reached():
            self.finish()

    def reached(self) -> bool:
        target = self.loop.target
        if self.last_id is None or target is None:
            return False
        return not Position.parse(self.last_id).id < target.id

    def drop(self) -> None:
        conn = self.conn
        self.drop_timer = None
        if conn is None or conn.state is not State.OPEN or self.loop.finishing:
            return
        how = self.random.choice(DROPS)
        self.dropping = how
        if how == "clean":
            conn.close()
            return
        if how == "cut-rst":
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            conn.sock.shutdown(socket.SHUT_WR)
        conn.abort()

    def closed(self, conn: ClientConnection) -> None:
        if conn is not self.conn:
            return
        self.conn = None
        self.loop.cancel(self.drop_timer)
        how = self.dropping or (conn.close_code if conn.close_code is not None else "eof")
        self.event("closed", detail=how)
        if self.done:
            return
        if self.dropping is not None:
            self.connect()  # we dropped it: back at once
        else:
            self.retry()  # the server closed it: after a short backoff

    def failed(self, conn: ClientConnection, kind: str) -> None:
        if conn is not self.conn:
            return
        self.conn = None
        self.event("failed", detail=kind)
        self.retry()

    def retry(self) -> None:
        delay = self.random.uniform(0, self.retry_s)
        self.retry_s = min(RETRY_CAP_S, self.retry_s * 2)
        self.loop.later(delay, self.connect)

    def finish(self) -> None:
        self.done = True
        self.loop.cancel(self.drop_timer)
        if self.conn is not None and self.conn.state is State.OPEN:
            self.dropping = FINISHED
            self.conn.close()

    def log(self) -> ClientLog:
        return ClientLog(self.name, self.received, self.events, finished=self.reached())


class _Loop:
    """The epoll loop over every client's current connection, with a timer heap."""

    def __init__(self, begin: Begin) -> None:
        url = urlsplit(begin.base_url)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.path = begin.path
        self.lifetime_s = begin.lifetime_s
        self.poll = select.epoll()
        self.conns: dict[int, tuple[ClientConnection, _Client]] = {}
        self.timers: list[_Timer] = []
        self.sequence = itertools.count()
        self.finishing = False
        self.target: Position | None = None
        self.clients = [_Client(spec, self) for spec in begin.clients]

    # what clients use

    def open(self, client: _Client, path: str) -> ClientConnection:
        conn = ClientConnection(self, self.host, self.port, path, HANDSHAKE_TIMEOUT_S)
        self.conns[conn.fd] = (conn, client)
        self.poll.register(conn.fd, READ_EVENTS | select.EPOLLOUT)
        return conn

    def later(self, delay_s: float, action: Callable[[], None]) -> _Timer:
        timer = _Timer(time.monotonic() + delay_s, next(self.sequence), action)
        heapq.heappush(self.timers, timer)
        return timer

    @staticmethod
    def cancel(timer: _Timer | None) -> None:
        if timer is not None:
            timer.action = None

    # wsclient.Sink

    def on_open(self, conn: ClientConnection) -> None:
        self.conns[conn.fd][1].opened()

    def on_failed(self, conn: ClientConnection, kind: str) -> None:
        _, client = self._forget(conn)
        client.failed(conn, kind)

    def on_message(self, conn: ClientConnection, payload: bytes, received_ns: int) -> None:
        self.conns[conn.fd][1].message(payload)

    def on_closed(self, conn: ClientConnection) -> None:
        _, client = self._forget(conn)
        client.closed(conn)

    def want_write(self, conn: ClientConnection, wanted: bool) -> None:
        self.poll.modify(conn.fd, READ_EVENTS | (select.EPOLLOUT if wanted else 0))

    def _forget(self, conn: ClientConnection) -> tuple[ClientConnection, _Client]:
        entry = self.conns.pop(conn.fd)
        self.poll.unregister(conn.fd)
        return entry

    # running

    def run(self, pipe: Connection) -> None:
        for client in self.clients:
            client.connect()
        self.poll.register(pipe.fileno(), select.EPOLLIN)
        deadline: float | None = None
        next_sweep = time.monotonic() + SWEEP_S
        while True:
            now = time.monotonic()
            wait = max(0.0, min(next_sweep, self.timers[0].when if self.timers else now + 1) - now)
            for fd, events in self.poll.poll(wait):
                if fd == pipe.fileno():
                    finish: Finish = pipe.recv()
                    deadline = self.begin_finish(finish)
                    continue
                entry = self.conns.get(fd)
                if entry is None:
                    continue
                conn = entry[0]
                if events & select.EPOLLOUT or conn.state is State.CONNECTING:
                    conn.on_writable()
                if fd in self.conns and events & READ_EVENTS:
                    conn.on_readable()
            now = time.monotonic()
            while self.timers and self.timers[0].when <= now:
                action = heapq.heappop(self.timers).action
                if action is not None:
                    action()
            if now >= next_sweep:
                next_sweep = now + SWEEP_S
                for conn, _ in list(self.conns.values()):
                    conn.check_timeout(now)
            if self.finishing and (
                all(c.done and c.conn is None for c in self.clients)
                or (deadline is not None and now > deadline)
            ):
                return

    def begin_finish(self, finish: Finish) -> float:
        self.finishing = True
        self.target = Position.parse(finish.last_id)
        for client in self.clients:
            self.cancel(client.drop_timer)
            if client.reached():
                client.finish()
        return time.monotonic() + finish.timeout_s


def main(pipe: Connection, begin: Begin) -> None:
    """The client process: run until ``Finish`` is done, reply with every client's log."""
    loop = _Loop(begin)
    loop.run(pipe)
    for conn, _ in list(loop.conns.values()):
        conn.abort()
    pipe.send([client.log() for client in loop.clients])
