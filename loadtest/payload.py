"""The benchmark's message format, shared by the publisher (coordinator) and the receivers.

A payload is ASCII text: ``LT1 <phase> <seq> <sent_ns> `` padded with ``x`` to a fixed size.
``phase`` tells one measurement from another (late copies of an earlier phase are counted as
stale, not as deliveries), ``seq`` numbers the messages of a phase from 0 (loss, duplicates and
order are checked per socket against it), ``sent_ns`` is ``time.time_ns()`` of the publisher just
before the message went to Redis. Publisher and receivers run on the same machine, so their
``time.time_ns()`` clocks are the same clock and ``received_ns - sent_ns`` is the latency.

Anything that does not start with ``MAGIC`` (a ``WSLOOP_HEARTBEAT`` frame, a message someone else
published) is not a payload and is ignored by the receivers.
"""

from __future__ import annotations

MAGIC = b"LT1 "
DEFAULT_PAYLOAD_BYTES = 100


def encode(phase: int, seq: int, sent_ns: int, size_bytes: int = DEFAULT_PAYLOAD_BYTES) -> bytes:
    """One payload of at least ``size_bytes`` (longer only if the fields alone are longer)."""
    head = b"%s%d %d %d " % (MAGIC, phase, seq, sent_ns)
    return head + b"x" * (size_bytes - len(head)) if len(head) < size_bytes else head


def decode(payload: bytes) -> tuple[int, int, int] | None:
    """``(phase, seq, sent_ns)``, or None if ``payload`` is not a benchmark payload."""
    if not payload.startswith(MAGIC):
        return None
    fields = payload.split(b" ", 4)
    if len(fields) < 4:
        return None
    try:
        return int(fields[1]), int(fields[2]), int(fields[3])
    except ValueError:
        return None
