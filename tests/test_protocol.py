import struct

from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.frame_protocol import FrameProtocol

from wsloop.protocol import (
    CloseCode,
    Message,
    ProtocolCore,
    State,
    encode_data,
    encode_message,
    encode_ping,
    encode_text,
)


def client() -> Connection:
    return Connection(ConnectionType.CLIENT)


def server_events(data: bytes) -> list:
    """What a client makes of bytes the server sent."""
    peer = client()
    peer.receive_data(data)
    return list(peer.events())


def test_text_and_binary_messages():
    core, peer = ProtocolCore(1024), client()
    received = core.receive(peer.send(TextMessage("héllo")) + peer.send(BytesMessage(b"\x00\xff")))
    assert received.messages == [Message("héllo".encode(), True), Message(b"\x00\xff", False)]
    assert received.outgoing == b"" and received.close_code is None


def test_fragments_are_reassembled():
    core, peer = ProtocolCore(1024), client()
    data = peer.send(TextMessage("ab", message_finished=False)) + peer.send(TextMessage("cd"))
    assert core.receive(data).messages == [Message(b"abcd", True)]


def test_fragments_may_arrive_byte_by_byte():
    core, peer = ProtocolCore(1024), client()
    data = peer.send(BytesMessage(b"x" * 300))
    messages = []
    for byte in data:
        messages += core.receive(bytes([byte])).messages
    assert messages == [Message(b"x" * 300, False)]


def test_message_above_the_limit_closes_with_1009():
    core, peer = ProtocolCore(100), client()
    received = core.receive(peer.send(BytesMessage(b"x" * 101)))
    assert received.messages == []
    assert received.close_code == CloseCode.MESSAGE_TOO_BIG
    assert core.state is State.CLOSING
    (event,) = server_events(received.outgoing)
    assert isinstance(event, CloseConnection) and event.code == 1009


def test_limit_counts_the_whole_fragmented_message():
    core, peer = ProtocolCore(100), client()
    first = core.receive(peer.send(BytesMessage(b"x" * 60, message_finished=False)))
    assert first.close_code is None
    second = core.receive(peer.send(BytesMessage(b"x" * 60)))
    assert second.close_code == CloseCode.MESSAGE_TOO_BIG


def test_message_exactly_at_the_limit_passes():
    core, peer = ProtocolCore(100), client()
    assert core.receive(peer.send(BytesMessage(b"x" * 100))).messages == [
        Message(b"x" * 100, False)
    ]


def test_ping_is_answered_with_the_same_payload():
    core, peer = ProtocolCore(100), client()
    received = core.receive(peer.send(Ping(b"payload")))
    (event,) = server_events(received.outgoing)
    assert isinstance(event, Pong) and event.payload == b"payload"


def test_peer_close_is_answered_and_closes():
    core, peer = ProtocolCore(100), client()
    received = core.receive(peer.send(CloseConnection(code=1000, reason="bye")))
    assert core.state is State.CLOSED
    assert received.close_code == 1000
    (event,) = server_events(received.outgoing)
    assert isinstance(event, CloseConnection) and event.code == 1000


def test_lone_continuation_frame_is_a_protocol_error():
    core = ProtocolCore(100)
    lone_continuation = struct.pack("!BB", 0x80, 0x80) + b"\x00\x00\x00\x00"
    received = core.receive(lone_continuation)
    assert received.close_code == CloseCode.PROTOCOL_ERROR
    assert core.state is State.CLOSED
    (event,) = server_events(received.outgoing)
    assert event.code == 1002


def test_invalid_utf8_is_1007():
    core = ProtocolCore(100)
    frame = struct.pack("!BB", 0x81, 0x82) + b"\x00\x00\x00\x00" + b"\xc3\x28"
    assert core.receive(frame).close_code == CloseCode.INVALID_PAYLOAD


def test_unmasked_client_frame_is_refused():
    core = ProtocolCore(100)
    assert core.receive(b"\x81\x02hi").close_code == CloseCode.PROTOCOL_ERROR


def test_server_close_then_peer_answer():
    core, peer = ProtocolCore(100), client()
    frame = core.close(CloseCode.GOING_AWAY, "restart")
    assert core.state is State.CLOSING
    assert core.close(CloseCode.NORMAL) == b""  # only one close frame
    (event,) = server_events(frame)
    assert event.code == 1001
    peer.receive_data(frame)
    list(peer.events())
    answer = core.receive(peer.send(CloseConnection(code=1001)))
    assert core.state is State.CLOSED and answer.outgoing == b""


def test_messages_after_our_close_are_ignored():
    core, peer = ProtocolCore(100), client()
    core.close(CloseCode.NORMAL)
    assert core.receive(peer.send(TextMessage("late"))).messages == []


def test_eof_closes_abnormally():
    core = ProtocolCore(100)
    core.receive_eof()
    assert core.state is State.CLOSED and core.close_code == 1006


def test_encode_message_infers_the_opcode():
    (text,) = server_events(encode_message("ok ✓".encode()))
    assert isinstance(text, TextMessage) and text.data == "ok ✓"
    (binary,) = server_events(encode_message(b"\xff\xfe"))
    assert isinstance(binary, BytesMessage) and binary.data == b"\xff\xfe"


def test_encode_data_keeps_an_explicit_opcode():
    (event,) = server_events(encode_data(b"", is_text=False))
    assert isinstance(event, BytesMessage) and event.data == b""


def test_server_frames_are_unmasked_and_shareable():
    frame = encode_message(b"same bytes for everyone")
    assert frame[1] & 0x80 == 0
    assert encode_message(b"same bytes for everyone") == frame
    (ping,) = server_events(encode_ping())
    assert isinstance(ping, Ping)


def test_actions_keep_protocol_order():
    core, peer = ProtocolCore(1024), client()
    data = (
        peer.send(TextMessage("a", message_finished=False))
        + peer.send(Ping(b"p"))
        + peer.send(TextMessage("b"))
    )
    pong, message = core.receive(data).actions
    assert isinstance(pong, bytes) and isinstance(server_events(pong)[0], Pong)
    assert message == Message(b"ab", True)


def test_message_before_a_protocol_error_is_still_handled_first():
    core, peer = ProtocolCore(1024), client()
    lone_continuation = struct.pack("!BB", 0x80, 0x80) + b"\x00\x00\x00\x00"
    message, close = core.receive(peer.send(TextMessage("first")) + lone_continuation).actions
    assert message == Message(b"first", True)
    assert server_events(close)[0].code == 1002


def test_ping_after_our_close_is_not_answered():
    core, peer = ProtocolCore(100), client()
    core.close(CloseCode.GOING_AWAY)
    assert core.receive(peer.send(Ping(b"late"))).actions == []


def test_data_frames_are_those_wsproto_would_write_at_every_length_boundary():
    reference = FrameProtocol(client=False, extensions=[])
    for length in (0, 1, 125, 126, 127, 65535, 65536, 70_000):
        text = "é" * (length // 2) + "x" * (length % 2)  # UTF-8: `length` bytes
        assert encode_text(text) == bytes(reference.send_data(text))
        binary = bytes(range(256)) * (length // 256) + bytes(length % 256)
        assert encode_data(binary, is_text=False) == bytes(reference.send_data(binary))
        peer = Connection(ConnectionType.CLIENT)
        peer.receive_data(encode_text(text) + encode_data(binary, is_text=False))
        assert [e.data for e in peer.events()] == [text, binary]
