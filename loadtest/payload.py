"""The benchmark's message format, shared by the publisher (coordinator) and the receivers.

A payload is ASCII text with fixed-width fields, ``LT1 <phase:6> <seq:6> <sent_ns:19> ``, padded
with ``x`` to ``--payload-bytes`` (default 100). ``phase`` tells one measurement from another
(late copies of an earlier phase are counted as stale, not as deliveries), ``seq`` numbers the
messages of a phase from 0 (loss, duplicates and order are checked per socket against it),
``sent_ns`` is ``time.time_ns()`` of the publisher just before the message went to Redis.
Publisher and receivers run on the same machine, so their ``time.time_ns()`` clocks are one
clock and ``received_ns - sent_ns`` is the latency. Fixed widths let a receiver read the fields
by slicing, without splitting (that is its hot path).

Anything that does not start with ``MAGIC`` (a ``WSLOOP_HEARTBEAT`` frame, a message someone
else published) is not a payload and is ignored by the receivers.
"""

from __future__ import annotations

MAGIC = b"LT1 "
DEFAULT_PAYLOAD_BYTES = 100
PHASE = slice(4, 10)
SEQ = slice(11, 17)
SENT_NS = slice(18, 37)
HEADER_BYTES = 38
MAX_PHASE = 999_999
MAX_SEQ = 999_999


def encode(phase: int, seq: int, sent_ns: int, size_bytes: int = DEFAULT_PAYLOAD_BYTES) -> bytes:
    """One payload of ``max(size_bytes, HEADER_BYTES)`` bytes."""
    if not (0 <= phase <= MAX_PHASE and 0 <= seq <= MAX_SEQ):
        raise ValueError(f"phase {phase} or seq {seq} out of range")
    head = b"%s%06d %06d %019d " % (MAGIC, phase, seq, sent_ns)
    return head + b"x" * (size_bytes - HEADER_BYTES) if size_bytes > HEADER_BYTES else head


def decode(payload: bytes) -> tuple[int, int, int] | None:
    """``(phase, seq, sent_ns)``, or None if ``payload`` is not a benchmark payload."""
    if len(payload) < HEADER_BYTES or not payload.startswith(MAGIC):
        return None
    try:
        return int(payload[PHASE]), int(payload[SEQ]), int(payload[SENT_NS])
    except ValueError:
        return None
