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
from .envelope import audience_of, message_frame
from .history import Incoming
from .protocol import encode_message

DISPATCH_BATCH = 256  # members served between two pauses: bounds how long a broadcast holds
# the worker (about 1 ms of writes), at the cost of one greenlet switch per batch


class Member(Protocol):
    """A socket as the hub sees it."""

    @property
    def envelope(self) -> bool:
        """Wants JSON envelopes (ids, audiences) rather than bare payloads."""

    @property
    def recovering(self) -> bool:
        """Replaying history: live messages are held, not sent."""

    def deliver(self, frame: bytes) -> None:
        """Queue one encoded frame; must not block."""

    def hold(self, channel: str, messages: Sequence[Incoming]) -> None:
        """Keep live messages that arrive during recovery; must not block."""


class Hub:
    def __init__(self, broker: Broker, prefix: str = "") -> None:
        self._broker = broker
        self._prefix = prefix
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
        self,
        channel: str,
        messages: Sequence[Incoming],
        pause: Callable[[], None] | None = None,
    ) -> int:
        """Deliver consecutive messages of one channel to its local members; returns deliveries.

        Each member gets one write: the frames of all the messages joined (the same bytes object
        for every member of the same kind, bare or envelope, except a sender skipping its own
        message). Members replaying history get the messages to hold instead. ``pause`` is
        called every ``DISPATCH_BATCH`` members, so a broadcast to thousands of sockets lets the
        rest of the worker run in between.
        """
        members = self._members.get(channel)
        if not members or not messages:
            return 0
        skips = [self._take_own_publish(channel, message.payload) for message in messages]
        variants = _Variants(messages, audience_of(channel, self._prefix))
        recipients = tuple(members)
        for index, member in enumerate(recipients, 1):
            if member.recovering:
                member.hold(
                    channel, [m for m, s in zip(messages, skips, strict=True) if s is not member]
                )
            elif any(skip is member for skip in skips):
                frames = variants.frames(member.envelope)
                own = b"".join(f for f, s in zip(frames, skips, strict=True) if s is not member)
                if own:
                    member.deliver(own)
            else:
                member.deliver(variants.joined(member.envelope))
            if pause is not None and index % DISPATCH_BATCH == 0:
                pause()
        return len(messages) * len(recipients) - sum(skip is not None for skip in skips)

    def members_of(self, channel: str) -> tuple[Member, ...]:
        return tuple(self._members.get(channel, ()))

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


class _Variants:
    """The frames of a run of messages, encoded once per kind (bare, envelope) on first use."""

    def __init__(self, messages: Sequence[Incoming], audience: str) -> None:
        self._messages = messages
        self._audience = audience
        self._frames: dict[bool, list[bytes]] = {}
        self._joined: dict[bool, bytes] = {}

    def frames(self, envelope: bool) -> list[bytes]:
        envelope = envelope and self._audience != "presence"  # events are JSON already
        if envelope not in self._frames:
            self._frames[envelope] = [
                message_frame(m.payload, m.position, self._audience)
                if envelope
                else encode_message(m.payload)
                for m in self._messages
            ]
        return self._frames[envelope]

    def joined(self, envelope: bool) -> bytes:
        envelope = envelope and self._audience != "presence"
        if envelope not in self._joined:
            frames = self.frames(envelope)
            self._joined[envelope] = frames[0] if len(frames) == 1 else b"".join(frames)
        return self._joined[envelope]
