"""A minimal RFC 6455 client on a non-blocking socket, driven by an epoll loop (``worker``).

Why not ``websockets``: its connections each carry an assembler, futures and keepalive
machinery; at 5,000 sockets per process and 100k+ frames/s the client would use more CPU than
the server it measures. Why not asyncio protocols: a bare ``select.epoll`` loop costs less per
wake-up (measured here: 3.8 us against 11.8 us of CPU per one-frame read in isolation; about
7.8 against 9.3 us per delivery in ``loadtest.ceiling`` at 1,000 sockets, where the kernel's
share dominates). A socket is one ``ClientConnection`` (no task, no coroutine, no future) and
every read is parsed in place.

What it does: a non-blocking connect, the opening handshake (``Sec-WebSocket-Accept``
verified), unmasked server frames of any length (fragmented messages reassembled), pongs that
echo the ping payload, the closing handshake from either side. What it does not: compression
(never offered), subprotocols, UTF-8 validation (the benchmark checks its own payload format).
Client frames (pong, close) are masked as RFC 6455 requires.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import socket
import struct
import time
from enum import IntEnum
from typing import Protocol

HANDSHAKE_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HANDSHAKE_RESPONSE_BYTES = 16 * 1024
RECV_BYTES = 256 * 1024

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002


class State(IntEnum):
    CONNECTING = 0  # TCP connect in progress (waiting for writable)
    HANDSHAKE = 1  # request sent, waiting for the 101
    OPEN = 2
    CLOSING = 3  # close frames exchanged, waiting for the server to close TCP
    CLOSED = 4


class Sink(Protocol):
    """Who hears what a connection does (the worker, one per process)."""

    def on_open(self, conn: ClientConnection) -> None:
        """The 101 arrived and was valid."""

    def on_failed(self, conn: ClientConnection, kind: str) -> None:
        """Connect or handshake failed (``kind``: ``refused``, ``http-503``...); closed."""

    def on_message(self, conn: ClientConnection, payload: bytes, received_ns: int) -> None:
        """A whole data message; ``received_ns`` is ``time.time_ns()`` taken once per read."""

    def on_closed(self, conn: ClientConnection) -> None:
        """An open connection is gone (``close_code`` set if a close frame came)."""

    def want_write(self, conn: ClientConnection, wanted: bool) -> None:
        """Watch the socket for writability too (``wanted``) or for readability only."""


def handshake_request(host: str, path: str, cookie: str = "") -> tuple[bytes, bytes]:
    """The upgrade request for ``path`` (with a ``Cookie`` header when given) and the
    ``Sec-WebSocket-Accept`` value it must get."""
    key = base64.b64encode(os.urandom(16))
    accept = base64.b64encode(hashlib.sha1(key + HANDSHAKE_GUID).digest())
    request = (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: {host}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key.decode()}\r\n"
        "Sec-WebSocket-Version: 13\r\n" + (f"Cookie: {cookie}\r\n" if cookie else "") + "\r\n"
    ).encode()
    return request, accept


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked client frame."""
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    if not payload:
        return header + mask
    repeated = (mask * (length // 4 + 1))[:length]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        length, "big"
    )
    return header + mask + masked


class ClientConnection:
    """One client websocket. ``seen``, ``unique``, ``last_seq`` and ``backlog`` belong to the
    sink (per-socket delivery tracking, kept here to avoid a dict lookup per frame)."""

    __slots__ = (
        "_accept",
        "_buffer",
        "_fragments",
        "_out",
        "_request",
        "_sink",
        "_watching_out",
        "backlog",
        "close_code",
        "close_sent",
        "deadline",
        "fd",
        "last_seq",
        "pings",
        "seen",
        "sock",
        "started",
        "state",
        "unique",
    )

    def __init__(
        self, sink: Sink, host: str, port: int, path: str, timeout_s: float, *, cookie: str = ""
    ) -> None:
        """Start a non-blocking connect (raises OSError if even that fails: EMFILE...)."""
        self._sink = sink
        self._request, self._accept = handshake_request(f"{host}:{port}", path, cookie)
        self._buffer = b""
        self._fragments: list[bytes] = []
        self._out = b""
        self._watching_out = True  # the loop registers a connecting socket for writability
        self.state = State.CONNECTING
        self.close_code: int | None = None
        self.close_sent = False
        self.pings = 0
        self.seen = 0
        self.unique = 0
        self.last_seq = -1
        self.backlog: dict[int, int] | None = None
        self.started = time.perf_counter()
        self.deadline = self.started + timeout_s
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.fd = self.sock.fileno()
        result = self.sock.connect_ex((host, port))
        if result not in (0, errno.EINPROGRESS):
            self.sock.close()
            raise OSError(result, os.strerror(result))

    # events from the loop

    def on_writable(self) -> None:
        if self.state is State.CONNECTING:
            error = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                name = "refused" if error == errno.ECONNREFUSED else errno.errorcode.get(error)
                self._fail(str(name))
                return
            self.state = State.HANDSHAKE
            self._write(self._request)
            return
        self._write(b"")

    def on_readable(self) -> None:
        try:
            data = self.sock.recv(RECV_BYTES)
        except BlockingIOError:
            return
        except OSError as exc:
            if self.state is State.HANDSHAKE:
                self._fail(f"oserror-{errno.errorcode.get(exc.errno or 0, exc.errno)}")
                return
            data = b""
        if not data:
            if self.state is State.HANDSHAKE:
                self._fail("eof-in-handshake")
            else:
                self._closed()
            return
        if self.state is State.CLOSING:
            return  # after the close frame: discard until the server hangs up
        if self.state is State.HANDSHAKE:
            data = self._handshake_data(data)
            if not data:
                return
        if self.state is State.OPEN:
            self._frames(data)

    def check_timeout(self, now: float) -> bool:
        """Fail a connect or handshake that passed its deadline; True if it did."""
        if self.state < State.OPEN and now > self.deadline:
            self._fail("timeout")
            return True
        return False

    # commands

    def close(self, code: int = CLOSE_NORMAL) -> None:
        """Start the closing handshake; the server answers with its close frame and hangs up."""
        if self.state is State.OPEN and not self.close_sent:
            self.close_sent = True
            self._write(client_frame(OP_CLOSE, struct.pack("!H", code)))

    def send_text(self, data: bytes) -> None:
        """One text message to the server (a subscribe command, an application-level pong)."""
        if self.state is State.OPEN and not self.close_sent:
            self._write(client_frame(OP_TEXT, data))

    def abort(self) -> None:
        if self.state is State.OPEN or self.state is State.CLOSING:
            self._closed()
        elif self.state is not State.CLOSED:
            self._fail("aborted")

    # internals

    def _write(self, data: bytes) -> None:
        """Send now what the socket takes; keep the rest and watch for writability."""
        out = self._out + data if self._out else data
        if out:
            try:
                sent = self.sock.send(out)
            except BlockingIOError:
                sent = 0
            except OSError:
                sent = len(out)  # dropped: the read side sees the error and closes
            out = out[sent:]
        self._out = out
        wanted = bool(out)
        if wanted is not self._watching_out:
            self._watching_out = wanted
            self._sink.want_write(self, wanted)

    def _fail(self, kind: str) -> None:
        self.state = State.CLOSED
        self._sink.on_failed(self, kind)
        self.sock.close()

    def _closed(self) -> None:
        self.state = State.CLOSED
        self._sink.on_closed(self)
        self.sock.close()

    def _handshake_data(self, data: bytes) -> bytes:
        """Consume the 101 response; returns the bytes after it (frames)."""
        buffer = self._buffer + data
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HANDSHAKE_RESPONSE_BYTES:
                self._fail("bad-response")
            else:
                self._buffer = buffer
            return b""
        head, rest = buffer[:end], buffer[end + 4 :]
        self._buffer = b""
        lines = head.split(b"\r\n")
        status = lines[0].split(b" ", 2)
        if len(status) < 2 or status[1] != b"101":
            code = status[1].decode("ascii", "replace") if len(status) > 1 else "?"
            self._fail(f"http-{code}")
            return b""
        accept = None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-accept":
                accept = value.strip()
        if accept != self._accept:
            self._fail("bad-accept")
            return b""
        self.state = State.OPEN
        self._sink.on_open(self)
        return rest

    def _frames(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        received_ns = time.time_ns()
        size = len(buffer)
        pos = 0
        sink = self._sink
        while size - pos >= 2:
            first = buffer[pos]
            length = buffer[pos + 1]
            if length & 0x80:  # a masked server frame is a protocol error
                self.close_code = CLOSE_PROTOCOL_ERROR
                self._closed()
                return
            header = 2
            if length == 126:
                if size - pos < 4:
                    break
                length = (buffer[pos + 2] << 8) | buffer[pos + 3]
                header = 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 10], "big")
                header = 10
            end = pos + header + length
            if end > size:
                break
            payload = buffer[pos + header : end]
            pos = end
            opcode = first & 0x0F
            if first & 0x80 and OP_TEXT <= opcode <= OP_BINARY:
                sink.on_message(self, payload, received_ns)  # the hot path: a whole message
            elif opcode < OP_CLOSE:
                self._fragment(first, opcode, payload, received_ns)
            elif opcode == OP_CLOSE:
                self._on_close_frame(payload)
                return
            elif opcode == OP_PING:
                self.pings += 1
                if not self.close_sent:
                    self._write(client_frame(OP_PONG, payload))
            # OP_PONG and reserved opcodes: ignored.
        self._buffer = buffer[pos:] if pos < size else b""

    def _fragment(self, first: int, opcode: int, payload: bytes, received_ns: int) -> None:
        if opcode != OP_CONTINUATION:
            self._fragments = [payload]
            return
        self._fragments.append(payload)
        if first & 0x80:
            whole = b"".join(self._fragments)
            self._fragments = []
            self._sink.on_message(self, whole, received_ns)

    def _on_close_frame(self, payload: bytes) -> None:
        self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
        self._buffer = b""
        if not self.close_sent:
            self.close_sent = True
            self._write(client_frame(OP_CLOSE, payload[:2]))
        self.state = State.CLOSING  # RFC 6455 7.1.1: the server closes TCP first
