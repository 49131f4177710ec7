"""How the bench publishes (``--publish``): four ways into a server, one contract.

``publish(facility, payloads)`` sends every payload to every socket of ``facility``, in order,
as fast as the way allows, and returns when they have left this process (not when they are
delivered: that is what the receivers measure). Each payload carries its own ``sent_ns``, taken
just before it was handed over, so the time a way takes is inside the latency it measures.

* ``redis``: ``PUBLISH`` on the facility's channel, a burst in one pipeline (what any Redis
  client can do; the ws4redis wire contract). Works for a peer that listens on Redis channels
  too (``--channel``).
* ``api``: ``wsloop.publish(facility, payload, broadcast=True)`` with the demo project's
  settings, one call per message, as a Django view does (history append included).
* ``socket``: a websocket opened with ``?publish-broadcast`` (the facility must allow it),
  one text frame per message; answers the server's pings.
* ``command``: a long-running program that reads ``<facility>\\t<payload>`` lines on stdin,
  flushed per batch: the way to reach any other server (``loadtest.peers`` has examples).
"""

from __future__ import annotations

import contextlib
import shlex
import socket
import subprocess
import threading
from collections.abc import Sequence
from typing import Protocol

import redis

from . import wsclient
from .stack_django import use_stack_settings

SOCKET_TIMEOUT_S = 10.0
COMMAND_STOP_TIMEOUT_S = 5.0
CLOSE_NORMAL = (1000).to_bytes(2, "big")


class PublishError(Exception):
    """The way to the server is broken (refused handshake, a command that exited)."""


class Publisher(Protocol):
    @property
    def sockets(self) -> int:
        """Websockets it holds on the server (counted there like any other)."""
        ...

    def publish(self, facility: str, payloads: Sequence[bytes]) -> None: ...

    def done(self, facility: str) -> None:
        """Nothing more goes to ``facility``: let go of what was held for it."""

    def close(self) -> None: ...


class RedisPublisher:
    """``PUBLISH`` on ``channel.format(facility=...)``; a batch is one pipeline."""

    sockets = 0

    def __init__(self, redis_url: str, channel: str) -> None:
        self.client = redis.Redis.from_url(redis_url, socket_timeout=SOCKET_TIMEOUT_S)
        self.channel = channel

    def publish(self, facility: str, payloads: Sequence[bytes]) -> None:
        channel = self.channel.format(facility=facility)
        if len(payloads) == 1:
            self.client.publish(channel, payloads[0])
            return
        pipe = self.client.pipeline(transaction=False)
        for payload in payloads:
            pipe.publish(channel, payload)
        pipe.execute()

    def done(self, facility: str) -> None:
        pass

    def close(self) -> None:
        self.client.close()


class ApiPublisher:
    """``wsloop.publish`` in this process, one call (one Redis round trip) per message."""

    sockets = 0

    def __init__(self, redis_url: str, prefix: str) -> None:
        use_stack_settings(redis_url, prefix)
        import wsloop  # noqa: PLC0415 (after Django's settings)

        self._publish = wsloop.publish

    def publish(self, facility: str, payloads: Sequence[bytes]) -> None:
        for payload in payloads:
            self._publish(facility, payload, broadcast=True, expire=0)

    def done(self, facility: str) -> None:
        pass

    def close(self) -> None:
        pass


def next_frame(buffer: bytes) -> tuple[int, bytes, bytes] | None:
    """The first whole (unmasked) server frame in ``buffer``: opcode, payload, what follows."""
    if len(buffer) < 2:
        return None
    length, header = buffer[1] & 0x7F, 2
    if length == 126:
        length, header = int.from_bytes(buffer[2:4], "big"), 4
    elif length == 127:
        length, header = int.from_bytes(buffer[2:10], "big"), 10
    if len(buffer) < header + length:
        return None
    return buffer[0] & 0x0F, buffer[header : header + length], buffer[header + length :]


class SocketPublisher:
    """One blocking websocket per facility, ``<path>`` formatted with the facility; a reader
    thread answers pings (the server closes a socket that never pongs) until the server closes
    it, after which a publish fails."""

    def __init__(self, host: str, port: int, path: str) -> None:
        self.host, self.port, self.path = host, port, path
        self.open: dict[str, socket.socket] = {}
        self.lock = threading.Lock()

    @property
    def sockets(self) -> int:
        return len(self.open)

    def _connect(self, facility: str) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=SOCKET_TIMEOUT_S)
        request, accept = wsclient.handshake_request(
            f"{self.host}:{self.port}", self.path.format(facility=facility)
        )
        sock.sendall(request)
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = sock.recv(4096)
            if not chunk:
                raise PublishError("publishing socket: connection closed in the handshake")
            response += chunk
        head, _, rest = response.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101") or accept not in head:
            sock.close()
            status = head.split(b"\r\n", 1)[0].decode("latin-1")
            raise PublishError(f"publishing socket refused: {status}")
        sock.settimeout(None)
        threading.Thread(target=self._read, args=(sock, rest), daemon=True).start()
        return sock

    def _read(self, sock: socket.socket, buffer: bytes) -> None:
        """Answer pings; anything else the server sends a publisher is dropped."""
        try:
            while True:
                while (frame := next_frame(buffer)) is not None:
                    opcode, payload, buffer = frame
                    if opcode == wsclient.OP_PING:
                        with self.lock:
                            sock.sendall(wsclient.client_frame(wsclient.OP_PONG, payload))
                    elif opcode == wsclient.OP_CLOSE:
                        return
                chunk = sock.recv(65536)
                if not chunk:
                    return
                buffer += chunk
        except OSError:
            return

    def publish(self, facility: str, payloads: Sequence[bytes]) -> None:
        sock = self.open.get(facility) or self.open.setdefault(facility, self._connect(facility))
        data = b"".join(wsclient.client_frame(wsclient.OP_TEXT, p) for p in payloads)
        try:
            with self.lock:
                sock.sendall(data)
        except OSError as exc:
            raise PublishError(f"publishing socket: {exc}") from exc

    def done(self, facility: str) -> None:
        sock = self.open.pop(facility, None)
        if sock is not None:
            with self.lock, contextlib.suppress(OSError):
                sock.sendall(wsclient.client_frame(wsclient.OP_CLOSE, CLOSE_NORMAL))
            sock.close()

    def close(self) -> None:
        for facility in list(self.open):
            self.done(facility)


class CommandPublisher:
    """A program fed ``<facility>\\t<payload>`` lines on stdin (payloads are ASCII, no tabs)."""

    sockets = 0

    def __init__(self, command: str) -> None:
        self.command = command
        self.process = subprocess.Popen(shlex.split(command), stdin=subprocess.PIPE)

    def publish(self, facility: str, payloads: Sequence[bytes]) -> None:
        if self.process.poll() is not None:
            raise PublishError(f"{self.command!r} exited with {self.process.returncode}")
        prefix = facility.encode() + b"\t"
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(b"".join(prefix + p + b"\n" for p in payloads))
            self.process.stdin.flush()
        except OSError as exc:  # the program exited meanwhile (EPIPE)
            raise PublishError(f"{self.command!r}: {exc}") from exc

    def done(self, facility: str) -> None:
        pass

    def close(self) -> None:
        assert self.process.stdin is not None
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        try:
            self.process.wait(COMMAND_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
