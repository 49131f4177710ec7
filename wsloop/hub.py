"""In-process fan-out: one subscription per worker, shared by all of its sockets.

The hub counts local interest per channel: the first socket that needs a channel subscribes the
worker to it, the last one to leave unsubscribes. A message from the bus is encoded into one frame
and the same bytes object is handed to every recipient, so the cost of a broadcast is one encoding
plus one non-blocking write per socket.

Own messages: when a socket publishes to a channel it is itself subscribed to, the hub records
(channel, payload, sender) before the publish goes out; the first copy of that payload coming
back on that channel skips the sender (``echo`` off) or reaches it re-encoded with the opcode
it sent (``echo`` on), in its place in the bus order. A sender therefore receives its own
message exactly zero times without ``echo`` and exactly once with it, whatever other clients
send.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from .broker import Broker
from .envelope import audience_of, message_frame
from .history import Incoming
from .protocol import encode_data, encode_message

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
        self._own_publishes: dict[str, deque[OwnPublish]] = {}

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
        owns = [self._take_own_publish(channel, message.payload) for message in messages]
        variants = _Variants(messages, audience_of(channel, self._prefix))
        recipients = tuple(members)
        senders = {own.member for own in owns if own is not None}
        for index, member in enumerate(recipients, 1):
            if member.recovering:
                member.hold(
                    channel,
                    [
                        m
                        for m, own in zip(messages, owns, strict=True)
                        if own is None or own.member is not member or own.echo
                    ],
                )
            elif member in senders:
                self._deliver_with_own(member, variants.frames(member.envelope), owns)
            else:
                member.deliver(variants.joined(member.envelope))
            if pause is not None and index % DISPATCH_BATCH == 0:
                pause()
        skipped = sum(own is not None and not own.echo for own in owns)
        return len(messages) * len(recipients) - skipped

    @staticmethod
    def _deliver_with_own(
        member: Member, frames: list[bytes], owns: list[OwnPublish | None]
    ) -> None:
        """The run for a sender: its own messages skipped (no echo) or re-encoded with the
        opcode it sent (echo), in their place in the run."""
        parts = []
        for frame, own in zip(frames, owns, strict=True):
            if own is None or own.member is not member:
                parts.append(frame)
            elif own.echo:
                parts.append(frame if member.envelope else encode_data(own.payload, own.is_text))
        if parts:
            member.deliver(b"".join(parts))

    def members_of(self, channel: str) -> tuple[Member, ...]:
        return tuple(self._members.get(channel, ()))

    def expect_own_publish(
        self,
        member: Member,
        channel: str,
        payload: bytes,
        *,
        is_text: bool = True,
        echo: bool = False,
    ) -> None:
        """Record that ``member`` is about to publish ``payload`` on ``channel``: its copy
        coming back skips it, or with ``echo`` reaches it with its own opcode, in bus order."""
        if member in self._members.get(channel, ()):
            pending = self._own_publishes.setdefault(channel, deque())
            pending.append(OwnPublish(member, payload, is_text, echo))

    def cancel_own_publish(self, member: Member, channel: str, payload: bytes) -> None:
        """The publish failed: its copy will never come back."""
        pending = self._own_publishes.get(channel)
        if pending is None:
            return
        for own in pending:
            if own.member is member and own.payload == payload:
                pending.remove(own)
                return

    def forget_own_publishes(self) -> None:
        """The subscription was re-established: copies in flight were lost with it."""
        self._own_publishes.clear()

    def _take_own_publish(self, channel: str, payload: bytes) -> OwnPublish | None:
        pending = self._own_publishes.get(channel)
        if not pending:
            return None
        for index, own in enumerate(pending):
            if own.payload == payload:
                del pending[index]
                return own
        return None

    def _forget_publishes_of(self, member: Member, channel: str) -> None:
        pending = self._own_publishes.get(channel)
        if pending:
            self._own_publishes[channel] = deque(e for e in pending if e.member is not member)


@dataclass(frozen=True, eq=False)
class OwnPublish:
    """A message a local socket published, on its way back from the bus."""

    member: Member
    payload: bytes
    is_text: bool
    echo: bool


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
