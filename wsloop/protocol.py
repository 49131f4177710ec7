"""The RFC 6455 core: bytes in, messages and bytes out, no sockets.

wsproto does the framing, masking, UTF-8 validation and control frames; this module adds what a
server needs on top: whole messages reassembled from fragments with a size limit, pongs that echo
the ping payload, the closing handshake, and frames encoded once for many recipients.
Permessage-deflate is not negotiated, so one encoded frame is valid for every socket.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.frame_protocol import FrameProtocol


class CloseCode(enum.IntEnum):
    """Close codes sent by wsloop (RFC 6455 7.4.1, plus one private-use code)."""

    NORMAL = 1000
    GOING_AWAY = 1001  # the worker is shutting down
    PROTOCOL_ERROR = 1002
    INVALID_PAYLOAD = 1007  # text that is not UTF-8
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009  # an inbound message above WSLOOP_MAX_MESSAGE_BYTES
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013
    SLOW_CONSUMER = 4008  # the socket's send queue passed WSLOOP_SEND_QUEUE_BYTES


class State(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"  # we sent a close frame and wait for the peer's
    CLOSED = "closed"  # the transport should be (or has been) closed


@dataclass(frozen=True)
class Message:
    """One whole inbound data message."""

    payload: bytes
    is_text: bool


Action = Message | bytes
"""A whole inbound message to handle, or bytes (a pong, a close frame) to write."""


@dataclass
class Received:
    """What a chunk of inbound bytes produced, in protocol order.

    ``actions`` must be carried out in order: handle each Message, write each bytes object.
    A pong answering a ping that arrived between two fragments goes out before the message is
    handled (and echoed); a message that arrived before a protocol error is handled before the
    close frame, which is always the last action. When ``close_code`` is set the connection is
    closing with that code.
    """

    actions: list[Action] = field(default_factory=list)
    close_code: int | None = None

    @property
    def messages(self) -> list[Message]:
        return [action for action in self.actions if isinstance(action, Message)]

    @property
    def outgoing(self) -> bytes:
        return b"".join(action for action in self.actions if isinstance(action, bytes))


_ENCODER = FrameProtocol(client=False, extensions=[])
OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2


def data_frame(opcode: int, payload: bytes) -> bytes:
    """One final, unmasked server data frame (RFC 6455 5.2: servers never mask, and wsloop
    never fragments). Written here rather than by wsproto's ``send_data``, which costs nine
    times as much, on the path of every message encoded and every message replayed."""
    length = len(payload)
    if length < 126:
        return bytes((0x80 | opcode, length)) + payload
    if length < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, length) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, length) + payload


def encode_message(payload: bytes) -> bytes:
    """A server data frame for a payload from Redis: text if it is UTF-8, binary otherwise.

    Redis carries bytes only, so the opcode is inferred; a binary payload that happens to be
    valid UTF-8 (including the empty payload) arrives as text.
    """
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return data_frame(OPCODE_BINARY, payload)
    return data_frame(OPCODE_TEXT, payload)


def encode_data(payload: bytes, is_text: bool) -> bytes:
    """A server data frame with an explicit opcode (the sender's own echo: its text was
    checked as UTF-8 when it arrived)."""
    return data_frame(OPCODE_TEXT if is_text else OPCODE_BINARY, payload)


def encode_text(text: str) -> bytes:
    return data_frame(OPCODE_TEXT, text.encode("utf-8"))


def encode_ping(payload: bytes = b"") -> bytes:
    return bytes(_ENCODER.ping(payload))


class ProtocolCore:
    """One server-side websocket connection after the handshake, without I/O."""

    def __init__(self, max_message_bytes: int) -> None:
        self._ws = Connection(ConnectionType.SERVER)
        self._max_message_bytes = max_message_bytes
        self._parts: list[bytes] = []
        self._part_bytes = 0
        self._part_is_text = False
        self.state = State.OPEN
        self.close_code: int | None = None

    def receive(self, data: bytes) -> Received:
        """Feed bytes read from the socket."""
        result = Received()
        if self.state is State.CLOSED:
            return result
        self._ws.receive_data(data)
        actions = result.actions
        for event in self._ws.events():
            if isinstance(event, TextMessage | BytesMessage):
                if self.state is State.OPEN and not self._add_part(event, actions):
                    actions.append(self._start_close(CloseCode.MESSAGE_TOO_BIG, "too big"))
                    break
            elif isinstance(event, Ping):
                if self.state is State.OPEN:  # no pong after our close frame
                    actions.append(self._ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                actions.append(self._answer_close(event))
                break
        result.close_code = self.close_code
        return result

    def receive_eof(self) -> None:
        """The peer closed the TCP connection (with or without a close frame)."""
        if self.state is not State.CLOSED:
            self.close_code = self.close_code or 1006
            self.state = State.CLOSED

    def close(self, code: CloseCode, reason: str = "") -> bytes:
        """Start the closing handshake; returns the close frame to write (empty if closing)."""
        if self.state is not State.OPEN:
            return b""
        return self._start_close(code, reason)

    def _add_part(self, event: TextMessage | BytesMessage, actions: list[Action]) -> bool:
        chunk = event.data.encode("utf-8") if isinstance(event, TextMessage) else bytes(event.data)
        if not self._parts:
            self._part_is_text = isinstance(event, TextMessage)
        self._part_bytes += len(chunk)
        if self._part_bytes > self._max_message_bytes:
            self._parts.clear()
            return False
        self._parts.append(chunk)
        if event.message_finished:
            payload = self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)
            actions.append(Message(payload, self._part_is_text))
            self._parts = []
            self._part_bytes = 0
        return True

    def _start_close(self, code: CloseCode, reason: str) -> bytes:
        self.close_code = int(code)
        self.state = State.CLOSING
        return self._ws.send(CloseConnection(code=int(code), reason=reason or None))

    def _answer_close(self, event: CloseConnection) -> bytes:
        """The peer closed, or wsproto found a protocol error (reported as a close event)."""
        was_closing = self.state is State.CLOSING
        self.state = State.CLOSED
        if self.close_code is None:
            self.close_code = event.code
        if was_closing or self._ws.state is ConnectionState.CLOSED:
            return b""
        return self._ws.send(event.response())
