"""In-process fan-out: one subscription per worker, shared by all of its sockets.

The hub counts local interest per channel: the first socket that needs a channel subscribes the
worker to it, the last one to leave unsubscribes. A message from the bus is encoded into one frame
and the same bytes object is handed to every recipient, so the cost of a broadcast is one encoding
plus one non-blocking write per socket.

What each socket gets is its recovery's decision (``wsloop.recovery``): a socket that is still
starting holds the messages, a LIVE one gets the shared frame, one at its SEAM gets the messages
after it. Only a LIVE socket that sent none of the messages takes the fast path: one phase check
and one write.

Own messages: a message a socket published carries that socket's origin (``Incoming.origin``),
live and replayed. The sender skips its own copy (``SocketRecovery.hears``), except an envelope
socket with ``echo``, which gets it from the bus in its place in history order (a bare socket
with ``echo`` answers itself at once). So a sender receives its own message exactly zero times
without ``echo`` and exactly once with it, whatever other clients send and across the worker's
resubscriptions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from .broker import Broker
from .envelope import audience_of, message_frame
from .history import Incoming
from .protocol import encode_message
from .recovery import SocketPhase, SocketRecovery

DISPATCH_BATCH = 256  # members served between two pauses: bounds how long a broadcast holds
# the worker (about 1 ms of writes), at the cost of one greenlet switch per batch


class Member(Protocol):
    """A socket as the hub sees it."""

    @property
    def envelope(self) -> bool:
        """Wants JSON envelopes (ids, audiences) rather than bare payloads."""

    @property
    def recovery(self) -> SocketRecovery:
        """Whether live messages are held, delivered, or dropped at the seam."""

    @property
    def origin(self) -> str | None:
        """The origin its own publishes carry; None if it publishes nothing it hears."""

    def deliver(self, frame: bytes) -> None:
        """Queue one encoded frame; must not block."""

    def hold(self, channel: str, messages: Sequence[Incoming]) -> None:
        """Keep live messages that arrive while the socket starts; must not block."""


class Hub:
    def __init__(self, broker: Broker, prefix: str = "") -> None:
        self._broker = broker
        self._prefix = prefix
        self._members: dict[str, set[Member]] = {}
        self._publishers: dict[str, Member] = {}  # by origin

    @property
    def channels(self) -> frozenset[str]:
        return frozenset(self._members)

    def join(self, member: Member, channels: Iterable[str]) -> None:
        new = []
        for channel in channels:
            members = self._members.setdefault(channel, set())
            if not members:
                new.append(channel)
            members.add(member)
        if member.origin is not None:
            self._publishers[member.origin] = member
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
                gone.append(channel)
        if member.origin is not None:
            self._publishers.pop(member.origin, None)
        if gone:
            self._broker.unsubscribe(gone)

    def dispatch(
        self,
        channel: str,
        messages: Sequence[Incoming],
        pause: Callable[[], None] | None = None,
    ) -> int:
        """Deliver consecutive messages of one channel to its local members; returns the
        deliveries (messages queued to sockets; held ones count when they are released).

        Each member gets one write: the frames of all the messages joined (the same bytes object
        for every member of the same kind, bare or envelope). ``pause`` is called every
        ``DISPATCH_BATCH`` members, so a broadcast to thousands of sockets lets the rest of the
        worker run in between.
        """
        members = self._members.get(channel)
        if not members or not messages:
            return 0
        senders = self._senders(messages)
        variants = _Variants(messages, audience_of(channel, self._prefix))
        shared: list[bytes | None] = [None, None]  # the joined frame, bare and envelope
        live = SocketPhase.LIVE
        fast = others = 0
        for index, member in enumerate(tuple(members), 1):
            if member.recovery.phase is live and member not in senders:
                envelope = member.envelope
                frame = shared[envelope]
                if frame is None:
                    frame = shared[envelope] = variants.joined(envelope)
                member.deliver(frame)
                fast += 1
            else:
                others += self._deliver_some(channel, member, messages, variants)
            if pause is not None and index % DISPATCH_BATCH == 0:
                pause()
        return fast * len(messages) + others

    def _senders(self, messages: Sequence[Incoming]) -> set[Member]:
        if not self._publishers:
            return set()
        publishers = self._publishers
        return {publishers[m.origin] for m in messages if m.origin in publishers}

    @staticmethod
    def _deliver_some(
        channel: str, member: Member, messages: Sequence[Incoming], variants: _Variants
    ) -> int:
        """A member that holds, is at its seam, or sent some of the messages."""
        recovery = member.recovery
        wanted = [index for index, message in enumerate(messages) if recovery.hears(message)]
        if recovery.holding:
            member.hold(channel, [messages[index] for index in wanted])
            return 0
        if not recovery.live:
            return 0
        admitted = recovery.admit([messages[index] for index in wanted])
        if not admitted:
            return 0
        frames = variants.frames(member.envelope)
        member.deliver(b"".join(frames[wanted[index]] for index in admitted))
        return len(admitted)

    def members_of(self, channel: str) -> tuple[Member, ...]:
        return tuple(self._members.get(channel, ()))


class _Variants:
    """The frames of a run of messages, encoded once per kind (bare, envelope) on first use."""

    def __init__(self, messages: Sequence[Incoming], audience: str) -> None:
        self._messages = messages
        self._audience = audience
        self._frames: dict[bool, list[bytes]] = {}

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
        """All the frames of one kind in one write (the caller keeps it for every member)."""
        frames = self.frames(envelope)
        return frames[0] if len(frames) == 1 else b"".join(frames)
