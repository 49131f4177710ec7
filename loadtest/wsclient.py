"""A minimal RFC 6455 client on asyncio protocol callbacks, built to hold thousands of sockets.

Why not the ``websockets`` library: each of its connections carries an assembler, a keepalive
machinery and per-message futures; at 5,000 sockets per process and 100k+ frames/s the client,
not the server, would set the figures. Here a socket is one ``asyncio.Protocol`` object (no task,
no coroutine while idle) and every inbound chunk is parsed in place in ``data_received``.

What it does: the opening handshake (with ``Sec-WebSocket-Accept`` verified), unmasked server
frames of any length (fragmented messages reassembled), pongs that echo the ping payload, the
closing handshake from either side. What it does not: permessage-deflate (never offered),
subprotocols, UTF-8 validation of text frames (the benchmark checks its own payload format).
Client frames (pong, close) are masked as RFC 6455 requires.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
from time import time_ns
from typing import Protocol

HANDSHAKE_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HANDSHAKE_RESPONSE_BYTES = 16 * 1024

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

CLOSE_NORMAL = 1000


class HandshakeError(Exception):
    """The server did not switch protocols; ``kind`` is a short label used to count failures."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


class MessageSink(Protocol):
    """Who receives what a connection reads (one sink per client process)."""

    def on_message(self, conn: ClientConnection, payload: bytes, received_ns: int) -> None:
        """A whole data message (text or binary); ``received_ns`` is ``time.time_ns()`` taken
        once per inbound chunk."""

    def on_closed(self, conn: ClientConnection) -> None:
        """The TCP connection is gone (after ``close_code`` was set, if a close frame came)."""


def handshake_request(host: str, path: str) -> tuple[bytes, bytes]:
    """The upgrade request for ``path`` and the ``Sec-WebSocket-Accept`` value it must get."""
    key = base64.b64encode(os.urandom(16))
    accept = base64.b64encode(hashlib.sha1(key + HANDSHAKE_GUID).digest())
    request = (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: {host}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key.decode()}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "\r\n"
    ).encode()
    return request, accept


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked client frame (control frames: payload <= 125 bytes)."""
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


class ClientConnection(asyncio.Protocol):
    """One client websocket. The ``seen``/``unique``/``last_seq`` slots belong to the sink (it
    tracks per-socket delivery there, to avoid a dict lookup per frame)."""

    __slots__ = (
        "_accept",
        "_buffer",
        "_fragments",
        "_fragments_opcode",
        "_request",
        "_sink",
        "close_code",
        "close_sent",
        "closed",
        "handshake",
        "last_seq",
        "open",
        "pings",
        "seen",
        "transport",
        "unique",
    )

    def __init__(self, sink: MessageSink, request: bytes, accept: bytes) -> None:
        self._sink = sink
        self._request = request
        self._accept = accept
        self._buffer = b""
        self._fragments: list[bytes] = []
        self._fragments_opcode = 0
        self.transport: asyncio.Transport | None = None
        self.handshake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.open = False
        self.closed = False
        self.close_sent = False
        self.close_code: int | None = None
        self.pings = 0
        self.seen = 0
        self.unique = 0
        self.last_seq = -1

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        if not self.open:
            data = self._handshake_data(data)
            if not data:
                return
        self._frames(data)

    def eof_received(self) -> bool | None:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self.closed = True
        if not self.handshake.done():
            self.handshake.set_exception(HandshakeError("eof-in-handshake", str(exc or "")))
            return
        self._sink.on_closed(self)

    # public

    def close(self, code: int = CLOSE_NORMAL) -> None:
        """Start the closing handshake; the server answers with its close frame and closes."""
        if self.transport is None or self.closed:
            return
        if not self.close_sent:
            self.close_sent = True
            self.transport.write(client_frame(OP_CLOSE, struct.pack("!H", code)))

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()

    # internals

    def _handshake_data(self, data: bytes) -> bytes:
        """Consume the 101 response; returns the bytes that follow it (frames)."""
        buffer = self._buffer + data
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HANDSHAKE_RESPONSE_BYTES:
                self._fail_handshake(HandshakeError("bad-response", "headers too long"))
            else:
                self._buffer = buffer
            return b""
        head, rest = buffer[:end], buffer[end + 4 :]
        self._buffer = b""
        lines = head.split(b"\r\n")
        status = lines[0].split(b" ", 2)
        if len(status) < 2 or status[1] != b"101":
            code = status[1].decode("ascii", "replace") if len(status) > 1 else "?"
            self._fail_handshake(HandshakeError(f"http-{code}", lines[0].decode(errors="replace")))
            return b""
        accept = None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-accept":
                accept = value.strip()
        if accept != self._accept:
            self._fail_handshake(HandshakeError("bad-accept", repr(accept)))
            return b""
        self.open = True
        self.handshake.set_result(None)
        return rest

    def _fail_handshake(self, error: HandshakeError) -> None:
        if not self.handshake.done():
            self.handshake.set_exception(error)
        if self.transport is not None:
            self.transport.abort()

    def _frames(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        received_ns = time_ns()
        size = len(buffer)
        pos = 0
        sink = self._sink
        while size - pos >= 2:
            first = buffer[pos]
            length = buffer[pos + 1]
            if length & 0x80:  # a masked server frame is a protocol error
                self._protocol_error()
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
                self._on_close(payload)
                return
            else:
                self._control(opcode, payload)
        self._buffer = buffer[pos:] if pos < size else b""

    def _fragment(self, first: int, opcode: int, payload: bytes, received_ns: int) -> None:
        if opcode != OP_CONTINUATION:
            self._fragments = [payload]
            self._fragments_opcode = opcode
            return
        self._fragments.append(payload)
        if first & 0x80:
            whole = b"".join(self._fragments)
            self._fragments = []
            self._sink.on_message(self, whole, received_ns)

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_PING:
            self.pings += 1
            if self.transport is not None and not self.close_sent:
                self.transport.write(client_frame(OP_PONG, payload))
        # OP_PONG and reserved opcodes: ignored.

    def _on_close(self, payload: bytes) -> None:
        self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
        self._buffer = b""
        if self.transport is None:
            return
        if not self.close_sent:
            self.close_sent = True
            self.transport.write(client_frame(OP_CLOSE, payload[:2]))
        # The server closes TCP after the closing handshake; do not wait for it.
        self.transport.close()

    def _protocol_error(self) -> None:
        self.close_code = 1002
        if self.transport is not None:
            self.transport.abort()
