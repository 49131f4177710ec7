"""Recovery without I/O: how a socket goes from its handshake to live delivery, and how a worker
catches up after its Redis subscription came back, with no gap and no duplicate at either seam.

The guarantee, for the messages of one facility that went through history: a socket delivers
each at most once, in history order. An envelope socket starts from a position (the client's
``since=``, or the facility's current position, which it is told) and delivers every message after
it, or is told to resync when history could not fill a gap. Messages published raw (no position)
are delivered live at most once and never replayed.

**The socket's seam.** A socket starts from a position: the client's ``since=``, or, without
one, the facility's current position, read before the socket joins the worker's fan-out. Once
the worker's subscription to the socket's channels is confirmed, the socket replays history
after that position: whatever was published after it reaches the socket, by the replay if it
came before the subscription, live if after. Confirmed is not delivered, though: a message
published just before the replay's read is both in what the read returned and on its way on the
subscription, and its live copy can arrive after the socket went live. So the position the
replay reached is the socket's *seam*: live messages held during the start, and live messages
after it, are dropped while they are at or before the seam, until the first one after it shows
the stream has passed it (a facility's live messages arrive in history order, so nothing older
can follow).

**A bare socket's start.** As in ws4redis, a socket joining a channel first gets its persisted
message (the last one published with an expiry). That message is read once the subscription is
confirmed, so nothing falls between the read and live delivery; but what it read may have been
published after the subscription, its live copy then on its way too. So the socket holds live
messages until the bus has delivered everything published before the read, and sends a persisted
message only if its live copy is not among the held ones: each message at most once, in publish
order.

**Own messages.** A socket that publishes carries an origin, and its messages carry it too
(``Incoming.origin``). Without ``echo`` it hears none of them: ``hears`` is the rule, for its
replay here and for live messages in the hub. A persisted message carries no origin, so a bare
socket starts before it reads anything its client sends: the persisted message its start reads
is never one of its own.

**The worker's seam.** When the worker's subscription comes back after an outage it holds live
messages, replays from history what it missed since the last position it saw per facility, then
releases the held ones; both pass the same per-facility position filter, so a message both
replayed and held is delivered once. A socket that is starting while the worker recovers waits
for the worker (``WorkerRecovery.phase``) before it reads its own start, so it never needs the
worker's replay; a socket already replaying or live relies on it, and is told to resync if the
worker's replay could not be done.

Socket phases and their transitions (anything else is a bug and raises ``InvalidTransition``)::

    STARTING --> REPLAYING --> SEAM --> LIVE --> CLOSED
        |            |           '------------> CLOSED
        |            '----------------> LIVE
        |            '-------------------------> CLOSED
        '----------> SEAM, LIVE, CLOSED

A socket is live in both SEAM (dropping copies at or before its seam) and LIVE (nothing to drop:
the hub hands it the frame every socket shares).

Worker phases: ``LIVE`` <-> ``RECOVERING`` (``resubscribed`` enters it, ``next_step`` leaves it).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from .channels import facility_of_channel
from .history import UNKNOWN, Incoming, Position, Resync, untag

Page = Sequence[tuple[str, Incoming]]
"""Replayed messages with their channels, oldest first."""


class InvalidTransition(RuntimeError):
    """A phase change the state machine does not have: a bug in its caller."""


class SocketPhase(enum.Enum):
    STARTING = "starting"  # live messages held while the start is settled (nothing sent yet)
    REPLAYING = "replaying"  # the socket writes history pages; live messages held
    SEAM = "seam"  # live; copies at or before the seam dropped until one after it passes
    LIVE = "live"  # live, nothing to drop
    CLOSED = "closed"  # closing or closed: nothing but the close frame goes out


_SOCKET_TRANSITIONS = {
    SocketPhase.STARTING: frozenset(
        {SocketPhase.REPLAYING, SocketPhase.SEAM, SocketPhase.LIVE, SocketPhase.CLOSED}
    ),
    SocketPhase.REPLAYING: frozenset({SocketPhase.SEAM, SocketPhase.LIVE, SocketPhase.CLOSED}),
    SocketPhase.SEAM: frozenset({SocketPhase.LIVE, SocketPhase.CLOSED}),
    SocketPhase.LIVE: frozenset({SocketPhase.CLOSED}),
    SocketPhase.CLOSED: frozenset(),
}


class VerdictKind(enum.Enum):
    POSITION = "position"  # connected without since: where the socket starts
    RECOVERED = "recovered"  # everything after since was replayed
    RESYNC = "resync"  # history could not fill the gap: the client reloads its state


@dataclass(frozen=True)
class Verdict:
    """The control message that ends an envelope socket's start. ``position``: every message
    after it follows on this socket (None: no position is known, nothing can be recovered)."""

    kind: VerdictKind
    position: Position | None
    count: int = 0  # RECOVERED: messages replayed
    reason: Resync | None = None  # RESYNC: why


@dataclass(frozen=True)
class Release:
    """What a socket sends when it goes live, in this order: the persisted messages (bare
    sockets only) whose live copies were not held, the verdict (envelope sockets only), then the
    live messages held during its start that are past its seam."""

    verdict: Verdict | None
    held: list[tuple[str, Incoming]]
    persisted: list[tuple[str, bytes]] = field(default_factory=list)


class SocketRecovery:
    """One socket's start and seam.

    The socket's adapter drives it: ``start_at`` for a socket without ``since`` (the position it
    read before joining), then, with its subscription confirmed, ``begin_replay`` and
    ``replayed`` for every page read from ``replay_from`` (it writes what that returns),
    ``replay_ended``, then ``go_live`` (reading the current position first when
    ``needs_position``; a bare socket passes its persisted messages instead); ``close`` at any
    time, after which the start's calls change nothing and ``go_live`` releases nothing. The hub
    feeds it live messages that it ``hears``: ``hold`` while ``holding``, ``admit`` at the seam,
    and in LIVE the shared frame without asking. The worker reports its own failed replays with
    ``worker_lost``.
    """

    __slots__ = (
        "_count",
        "_echo",
        "_envelope",
        "_from",
        "_held",
        "_held_bytes",
        "_last",
        "_limit_bytes",
        "_origin",
        "_resync",
        "_since",
        "_unreachable",
        "phase",
        "seam",
    )

    def __init__(
        self,
        since: Position | None,
        *,
        envelope: bool,
        hold_limit_bytes: int,
        origin: str | None = None,
        echo: bool = False,
    ) -> None:
        self.phase = SocketPhase.STARTING
        self.seam: Position | None = None
        self._since = since
        self._from = since
        self._envelope = envelope
        self._held: list[tuple[str, Incoming]] = []
        self._held_bytes = 0
        self._limit_bytes = hold_limit_bytes
        self._count = 0
        self._last: Position | None = None
        self._resync: Resync | None = None
        self._unreachable = False
        self._origin = origin
        self._echo = echo

    @property
    def since(self) -> Position | None:
        """The position the client asked to recover from."""
        return self._since

    @property
    def replay_from(self) -> Position | None:
        """Where the replay starts: ``since``, or the position found by ``start_at``."""
        return self._from

    @property
    def holding(self) -> bool:
        """Live messages are held, not delivered (the start is not settled)."""
        return self.phase is SocketPhase.STARTING or self.phase is SocketPhase.REPLAYING

    @property
    def live(self) -> bool:
        """Live messages are delivered (at the seam, or past it)."""
        return self.phase is SocketPhase.LIVE or self.phase is SocketPhase.SEAM

    @property
    def retry_later(self) -> bool:
        """History could not be reached while the start was settled (Redis away or too slow):
        nothing may be guessed, so the socket closes with TRY_AGAIN_LATER and the client comes
        back with the same position."""
        return self._unreachable

    @property
    def needs_position(self) -> bool:
        """``go_live`` wants the facility's current position: the replay ended in a resync."""
        return self._envelope and self._resync is not None

    def start_at(self, position: Position | None) -> None:
        """A socket without ``since``: the facility's position, read before it joined (None:
        no history, or it could not be read)."""
        if self._since is None:
            self._from = position

    def hold(self, channel: str, messages: Sequence[Incoming]) -> bool:
        """Keep live messages until the start is settled; False once they pass the limit (the
        socket is then a slow consumer)."""
        if not self.holding:
            return True
        self._held.extend((channel, message) for message in messages)
        self._held_bytes += sum(len(message.payload) for message in messages)
        return self._held_bytes <= self._limit_bytes

    def hears(self, message: Incoming) -> bool:
        """Whether the socket gets ``message``: anything but its own, unless it asked for echo."""
        return self._echo or self._origin is None or message.origin != self._origin

    def begin_replay(self) -> None:
        """The socket's subscription is confirmed and its replay's first read succeeded."""
        if self.phase is not SocketPhase.CLOSED:
            self._move(SocketPhase.REPLAYING)

    def replayed(self, page: Page) -> Page:
        """A page of history was read: the messages of it that the socket writes (what it
        ``hears``). The seam moves to the page's last message, heard or not."""
        if not page:
            return page
        heard = [(channel, message) for channel, message in page if self.hears(message)]
        self._count += len(heard)
        self._last = page[-1][1].position
        return heard

    def history_unreachable(self) -> None:
        """A read of history (or the subscription's confirmation) failed during the start."""
        self._unreachable = True

    def replay_ended(self, resync: Resync | None) -> None:
        """The replay is complete (None), or history could not fill the gap (why)."""
        if resync is not None and self._resync is None:
            self._resync = resync

    def worker_lost(self, reason: Resync) -> bool:
        """The worker could not replay what its lost subscription missed: True if the client
        must be told now (a live envelope socket). A replaying socket ends its replay with the
        resync instead; a starting envelope one reads its own start after the worker is back. A
        starting bare one sends no persisted message that it did not hold: it may be one the
        worker lost, newer than what was held."""
        if self.phase is SocketPhase.REPLAYING or (not self._envelope and self.holding):
            self.replay_ended(reason)
        return self._envelope and self.live

    def go_live(
        self, position: Position | None = None, persisted: Sequence[tuple[str, bytes]] = ()
    ) -> Release:
        """End the start: what to send, in the order of ``Release`` (after the replayed pages).
        ``position``: the facility's current position when ``needs_position`` (None if it could
        not be read). Nothing when the socket closed meanwhile.

        ``persisted``: a bare socket's ws4redis persisted messages (channel, payload), read once
        its subscription was confirmed, and passed here only once everything published before
        that read has reached the socket. A persisted message published after the subscription
        is then among the held ones and goes out there, in its place; the others, older than
        anything held, go first. (A held message with the same payload on the same channel is
        taken for the persisted one: the client sees that payload once, in order.) After a
        ``worker_lost`` during the start, only the held ones go out."""
        if self.phase is SocketPhase.CLOSED:
            return Release(None, [])
        verdict = self._verdict(position)
        if verdict is not None:  # without a position, at least nothing already had comes again
            self.seam = verdict.position or self._last or self._from
        self._move(SocketPhase.LIVE if self.seam is None else SocketPhase.SEAM)
        held, self._held, self._held_bytes = self._held, [], 0
        keep = self.admit([message for _, message in held])
        held_payloads = {(channel, message.payload) for channel, message in held}
        lost = self._resync is not None
        first = [] if lost else [pair for pair in persisted if pair not in held_payloads]
        return Release(verdict, [held[index] for index in keep], first)

    def _verdict(self, position: Position | None) -> Verdict | None:
        if not self._envelope:
            return None
        reached = self._last or self._from
        if self._since is None:
            return Verdict(VerdictKind.POSITION, position if self._resync else reached)
        if self._resync is not None:
            return Verdict(VerdictKind.RESYNC, position, reason=self._resync)
        return Verdict(VerdictKind.RECOVERED, reached, count=self._count)

    def admit(self, messages: Sequence[Incoming]) -> list[int]:
        """The indexes of the live messages to deliver: those at or before the seam are
        dropped; the first one after it clears the seam (SEAM -> LIVE)."""
        seam = self.seam
        if seam is None:
            return list(range(len(messages)))
        keep = []
        for index, message in enumerate(messages):
            position = message.position
            if position is None:
                keep.append(index)
            elif seam is not None and position.not_after(seam):
                continue
            else:
                keep.append(index)
                seam = None
        if seam is None:
            self.seam = None
            if self.phase is SocketPhase.SEAM:
                self._move(SocketPhase.LIVE)
        return keep

    def close(self) -> None:
        """The socket is closing (any phase, any number of times): what is held is dropped and
        nothing more goes live."""
        if self.phase is not SocketPhase.CLOSED:
            self._move(SocketPhase.CLOSED)
        self._held, self._held_bytes = [], 0

    def _move(self, phase: SocketPhase) -> None:
        if phase not in _SOCKET_TRANSITIONS[self.phase]:
            raise InvalidTransition(f"socket: {self.phase.value} -> {phase.value}")
        self.phase = phase


class WorkerPhase(enum.Enum):
    LIVE = "live"  # live messages are dispatched as they come
    RECOVERING = "recovering"  # the subscription came back: live messages wait for the replay


class WorkerStep(enum.Enum):
    """What the worker's recovery does next (``WorkerRecovery.next_step``)."""

    REPLAY = "replay"  # replay every followed facility from its position
    RELEASE = "release"  # dispatch the live messages that waited
    LIVE = "live"  # done: the worker is live again


class WorkerRecovery:
    """A worker's position per facility with local sockets, and its recovery after a lost
    subscription.

    Positions: the last message the worker saw per facility (``None``: anything in history is
    newer; ``UNKNOWN``: it could not read history, so everything is new and a replay from it is a
    resync). Every live or replayed message goes through ``admit``, which drops what is at or
    before the position (a message both replayed and waiting on the new subscription) and
    records the rest.

    Recovery: ``resubscribed`` on every new subscription. While it runs, ``live`` keeps messages
    instead of returning them. The recovery loop asks ``next_step``: REPLAY while a resubscription
    came since the last replay (a reconnect during a replay makes it replay again), then RELEASE
    while messages wait, then LIVE, which ends the recovery in the same call that finds nothing
    left (the caller must not yield between its last RELEASE and asking again).
    """

    def __init__(self) -> None:
        self.phase = WorkerPhase.LIVE
        self._positions: dict[str, Position | None] = {}
        self._waiting: list[tuple[str, list[Incoming]]] = []
        self._resubscriptions = 0
        self._replayed = 0

    def following(self, facility: str) -> bool:
        return facility in self._positions

    def follow(self, facility: str) -> None:
        """The first local socket of ``facility``: followed from now, its position unknown until
        ``position_read``."""
        self._positions.setdefault(facility, UNKNOWN)

    def position_read(self, facility: str, position: Position | None) -> None:
        """The facility's newest position, read when the worker began following it; ignored if a
        message (or a later follow) set the position meanwhile."""
        if self._positions.get(facility, None) == UNKNOWN:
            self._positions[facility] = position

    def unfollow(self, facility: str) -> None:
        """The last local socket of ``facility`` left."""
        self._positions.pop(facility, None)

    def live(self, channel: str, payloads: Sequence[bytes]) -> list[Incoming] | None:
        """Messages from the subscription: the ones to dispatch now, or None while recovering
        (they wait for ``take_waiting``)."""
        messages = [untag(payload) for payload in payloads]
        if self.phase is WorkerPhase.RECOVERING:
            self._waiting.append((channel, messages))
            return None
        return self.admit(facility_of_channel(channel), messages)

    def admit(self, facility: str, messages: Sequence[Incoming]) -> list[Incoming]:
        """The messages after the facility's position, recording the newest one."""
        return [message for message in messages if self._is_new(facility, message)]

    def _is_new(self, facility: str, message: Incoming) -> bool:
        position = message.position
        if position is None or facility not in self._positions:
            return True
        last = self._positions[facility]
        if last is not None and position.not_after(last):
            return False
        self._positions[facility] = position
        return True

    def resubscribed(self) -> bool:
        """The subscription was lost and is back; True if a recovery loop must start (none is
        running: the running one replays again)."""
        self._resubscriptions += 1
        if self.phase is WorkerPhase.RECOVERING:
            return False
        self.phase = WorkerPhase.RECOVERING
        return True

    def next_step(self) -> WorkerStep:
        if self._replayed != self._resubscriptions:
            self._replayed = self._resubscriptions
            return WorkerStep.REPLAY
        if self._waiting:
            return WorkerStep.RELEASE
        self.phase = WorkerPhase.LIVE
        return WorkerStep.LIVE

    def replay_plan(self) -> list[tuple[str, Position | None]]:
        """Each followed facility and the position to replay it from."""
        return list(self._positions.items())

    def replayed(self, facility: str, page: Page, end: Position | None) -> tuple[Page, bool]:
        """A page of the facility's replay: its new messages up to ``end`` (the newest position
        when the replay began: later ones came on the new subscription and wait), and whether
        the page reached past ``end`` (the replay is over)."""
        fresh: list[tuple[str, Incoming]] = []
        for channel, message in page:
            position = message.position
            if end is None or position is None or not position.not_after(end):
                return fresh, True
            if self._is_new(facility, message):
                fresh.append((channel, message))
        return fresh, False

    def replay_again(self) -> None:
        """History could not be read: the next step replays again."""
        self._resubscriptions += 1

    def replay_failed(self, facility: str, before: Position | None) -> None:
        """The facility's replay failed; a replay that delivered nothing leaves the worker not
        knowing where it is (otherwise the position reached still filters what waits)."""
        if facility in self._positions and self._positions[facility] == before:
            self._positions[facility] = UNKNOWN

    def take_waiting(self) -> list[tuple[str, list[Incoming]]]:
        """The live messages that waited, in bus order, to pass through ``admit``."""
        waiting, self._waiting = self._waiting, []
        return waiting
