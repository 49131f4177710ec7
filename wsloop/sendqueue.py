"""The per-socket send queue and its backpressure policy.

Frames are shared bytes objects (one encoding per message for every recipient), so the queue holds
references; its limit counts each frame's full size anyway, which bounds what one socket can pin.
A socket whose queue would pass the limit is a slow consumer: it is closed with
``CloseCode.SLOW_CONSUMER`` (4008) and its queue dropped. Nothing is ever buffered without bound,
and a full queue never blocks the publisher or any other socket.
"""

from __future__ import annotations

from collections import deque


class SendQueue:
    """FIFO of frames waiting for the socket to become writable, bounded in bytes."""

    __slots__ = ("_frames", "limit_bytes", "queued_bytes")

    def __init__(self, limit_bytes: int) -> None:
        self._frames: deque[bytes | memoryview] = deque()
        self.limit_bytes = limit_bytes
        self.queued_bytes = 0

    def __len__(self) -> int:
        return len(self._frames)

    def push(self, frame: bytes | memoryview) -> bool:
        """Queue a frame; False (and nothing queued) if that would pass the limit."""
        if self.queued_bytes + len(frame) > self.limit_bytes:
            return False
        self._frames.append(frame)
        self.queued_bytes += len(frame)
        return True

    def push_front(self, frame: bytes | memoryview) -> None:
        """Put back the unsent rest of a popped frame; not checked: it fitted when first pushed."""
        self._frames.appendleft(frame)
        self.queued_bytes += len(frame)

    def pop(self) -> bytes | memoryview:
        frame = self._frames.popleft()
        self.queued_bytes -= len(frame)
        return frame

    def pop_batch(self, max_bytes: int) -> bytes | memoryview:
        """The next frames joined into one write of at most ``max_bytes`` (or one larger frame),
        so a backlog drains in few system calls."""
        first = self.pop()
        if not self._frames or len(first) + len(self._frames[0]) > max_bytes:
            return first
        parts, size = [first], len(first)
        while self._frames and size + len(self._frames[0]) <= max_bytes:
            frame = self.pop()
            parts.append(frame)
            size += len(frame)
        return b"".join(parts)

    def clear(self) -> None:
        self._frames.clear()
        self.queued_bytes = 0
