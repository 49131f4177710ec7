"""In-process fan-out: one subscription per worker, shared by all of its sockets.

The hub counts local interest per channel: the first socket that needs a channel subscribes the
worker to it, the last one to leave unsubscribes. A message from the bus is encoded into one frame
and the same bytes object is handed to every recipient, so the cost of a broadcast is one encoding
plus one non-blocking write per socket.

Own-message suppression (``echo`` off): when a socket publishes to a channel it is itself
subscribed to, the hub records (channel, payload, sender) before the publish goes out; the first
copy of that payload coming back on that channel skips the sender. A sender therefore receives
its own message exactly zero times without ``echo`` and exactly once with it (the echo is
delivered locally, keeping the sender's text/binary opcode), whatever other clients send.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from .broker import Broker
from .protocol import encode_message

DISPATCH_BATCH = 256  # members served between two pauses: bounds how long a broadcast holds
# the worker (about 1 ms of writes), at the cost of one greenlet switch per batch


class Member(Protocol):
    """A socket as the hub sees it."""

    def deliver(self, frame: bytes) -> None:
        """Queue one encoded frame; must not block."""


class Hub:
    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._members: dict[str, set[Member]] = {}
        self._own_publishes: dict[str, deque[tuple[bytes, Member]]] = {}

    @property
    def channels(self) -> frozenset[str]:
        return frozenset(self._members)

    def member_count(self, channel: str) -> int:
        return len(self._members.get(channel, ()))

    def join(self, member: Member, channels: Iterable[str]) -> None:
        new = []
        for channel in channels:
            members = self._members.setdefault(channel, set())
            if not members:
                new.append(channel)
            members.add(member)
        if new:
            self._broker.subscribe(new)

    def leave(self, member: Member, channels: Iterable[str]) -> None:
        gone = []
        for channel in channels:
            members = self._members.get(channel)
            if members is None:
                continue
            members.discard(member)
            if not members:
                del self._members[channel]
                self._own_publishes.pop(channel, None)
                gone.append(channel)
            else:
                self._forget_publishes_of(member, channel)
        if gone:
            self._broker.unsubscribe(gone)

    def dispatch(
        self, channel: str, payloads: Sequence[bytes], pause: Callable[[], None] | None = None
    ) -> int:
        """Deliver consecutive messages of one channel to its local members; returns deliveries.

        Each member gets one write: the frames of all the messages joined (the same bytes object
        for every member, except a sender skipping its own message). ``pause`` is called every
        ``DISPATCH_BATCH`` members, so a broadcast to thousands of sockets lets the rest of the
        worker run in between.
        """
        members = self._members.get(channel)
        if not members or not payloads:
            return 0
        frames = [encode_message(payload) for payload in payloads]
        skips = [self._take_own_publish(channel, payload) for payload in payloads]
        shared = frames[0] if len(frames) == 1 else b"".join(frames)
        skipping = {member for member in skips if member is not None}
        recipients = tuple(members)
        for index, member in enumerate(recipients, 1):
            if member in skipping:
                own = b"".join(f for f, s in zip(frames, skips, strict=True) if s is not member)
                if own:
                    member.deliver(own)
            else:
                member.deliver(shared)
            if pause is not None and index % DISPATCH_BATCH == 0:
                pause()
        return len(frames) * len(recipients) - sum(skip is not None for skip in skips)

    def expect_own_publish(self, member: Member, channel: str, payload: bytes) -> None:
        """Record that ``member`` is about to publish ``payload`` on ``channel``."""
        if member in self._members.get(channel, ()):
            self._own_publishes.setdefault(channel, deque()).append((payload, member))

    def cancel_own_publish(self, member: Member, channel: str, payload: bytes) -> None:
        """The publish failed: its copy will never come back."""
        pending = self._own_publishes.get(channel)
        if pending is not None and (payload, member) in pending:
            pending.remove((payload, member))

    def forget_own_publishes(self) -> None:
        """The subscription was re-established: copies in flight were lost with it."""
        self._own_publishes.clear()

    def _take_own_publish(self, channel: str, payload: bytes) -> Member | None:
        pending = self._own_publishes.get(channel)
        if not pending:
            return None
        for index, (own_payload, member) in enumerate(pending):
            if own_payload == payload:
                del pending[index]
                return member
        return None

    def _forget_publishes_of(self, member: Member, channel: str) -> None:
        pending = self._own_publishes.get(channel)
        if pending:
            self._own_publishes[channel] = deque(e for e in pending if e[1] is not member)
