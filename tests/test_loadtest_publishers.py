"""loadtest.publishers: the server-frame reader of the publishing socket, and the publish
command fed through a real pipe (the Redis, API and socket ways run against the stack in
``test_loadtest_bench``)."""

from __future__ import annotations

import sys

import pytest

from loadtest.publishers import CommandPublisher, PublishError, next_frame


def test_next_frame_reads_every_length_encoding_and_waits_for_the_rest():
    small = b"\x89\x02hi"  # ping, 7-bit length
    medium = b"\x81\x7e\x00\x7e" + b"m" * 126  # text, 16-bit length
    large = b"\x82\x7f" + (70_000).to_bytes(8, "big") + b"l" * 70_000  # binary, 64-bit length
    buffer = small + medium + large
    frames = []
    while (frame := next_frame(buffer)) is not None:
        opcode, payload, buffer = frame
        frames.append((opcode, len(payload)))
    assert frames == [(0x9, 2), (0x1, 126), (0x2, 70_000)] and buffer == b""
    assert next_frame(b"\x81") is None
    assert next_frame(b"\x81\x05abc") is None  # two bytes still to come


def test_a_command_gets_one_line_per_message_in_order(tmp_path):
    out = tmp_path / "lines"
    program = f"import sys; open({str(out)!r}, 'wb').write(sys.stdin.buffer.read())"
    publisher = CommandPublisher(f"{sys.executable} -c {program!r}")
    publisher.publish("room-1", [b"LT1 a", b"LT1 b"])
    publisher.publish("room-2", [b"LT1 c"])
    publisher.close()
    assert out.read_bytes() == b"room-1\tLT1 a\nroom-1\tLT1 b\nroom-2\tLT1 c\n"


def test_a_command_that_exited_is_an_error_not_a_silent_drop():
    publisher = CommandPublisher(f"{sys.executable} -c pass")
    publisher.process.wait(10)
    with pytest.raises(PublishError, match="exited with 0"):
        publisher.publish("room", [b"LT1 lost"])
    publisher.close()
