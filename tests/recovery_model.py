"""A small model checker for recovery: every interleaving of a socket's start, publishes, live
copies on their way, a lost and restored subscription, the worker's replay and a close, played
against the real ``SocketRecovery``, ``WorkerRecovery`` and ``Hub``; only I/O is modelled.

The world: one facility whose history holds messages 1..n (message k at position k); a worker
that follows it and has seen everything published before the scenario; four live sockets (bare,
envelope, an envelope sender with ``echo`` and one without, each publishing some of the
messages); and the socket under test, which starts during the scenario (with ``publishes``, it
sends the last message of the scenario itself, without echo, once its reader runs: an
envelope socket's once it has joined, a bare socket's once it is live). Events, in any order
their causes allow:

* ``publish``: the next message goes into history; while subscribed, its live copy is on its way
  (copies arrive in publish order);
* ``arrive``: the oldest live copy reaches the worker (and through the hub, the sockets);
* the starting socket's steps, as ``wsloop.connection`` takes them: wait for the worker to be live,
  replay history page by page (or read the current position), go live; a bare one reads its
  persisted message (the newest), waits until the bus delivered what was published before that
  read (on a live subscription, with the worker live), and goes live;
* with ``Outage``: the subscription is lost (copies on the way are lost with it), then restored,
  and the worker's recovery steps (replay, release, live) run; with ``replay_fails`` the worker's
  replay cannot read history;
* with ``Close``: the starting socket is closed.

Checked at the end of every schedule: each socket got each message it is owed exactly once, in
history order, nothing after a close, nothing it sent itself without echo, and a resync wherever
something it was owed is missing.
"""

from __future__ import annotations

import copy
import enum
import json
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from wsloop.history import Incoming, Position, Resync, StreamId, tag
from wsloop.hub import Hub
from wsloop.recovery import Release, SocketPhase, SocketRecovery, VerdictKind, WorkerStep

EPOCH = "ep"
FACILITY = "f"
CHANNEL = "broadcast:f"
ORIGINS = (None, "echoing", "quiet")  # who publishes message k during the scenario: k % 3
OWN = "starting"  # the origin of the starting socket's own message, with ``publishes``


def pos(number: int) -> Position:
    return Position(EPOCH, StreamId(number, 0))


class StartKind(enum.Enum):
    SINCE = "since"  # recovers from a position (every one of the history's, in turn)
    POSITION = "position"  # connects without since: reads the current position
    BARE = "bare"  # a ws4redis socket: the persisted message (the newest), then live ones


@dataclass(frozen=True)
class SocketStart:
    kind: StartKind
    page: int = 2
    publishes: bool = False  # the starting socket sends the scenario's last message


@dataclass(frozen=True)
class Close:
    """The starting socket is closed at some point."""


@dataclass(frozen=True)
class Outage:
    """The worker's subscription is lost and comes back."""

    replay_fails: bool = False


class NullBroker:
    def subscribe(self, channels): ...

    def unsubscribe(self, channels): ...


class Member:
    """A socket for the hub; ``got`` is what its client received, decoded."""

    def __init__(self, name, *, envelope, since=None, origin=None, echo=False, live=True):
        self.name, self.envelope, self.origin, self.echo = name, envelope, origin, echo
        self.recovery = SocketRecovery(
            since, envelope=envelope, hold_limit_bytes=1 << 20, origin=origin, echo=echo
        )
        self.got: list[object] = []
        self.verdict_at: int | None = None  # where in ``got`` the verdict of its start is
        if live:
            self.recovery.go_live(pos(0) if envelope else None)

    def deliver(self, frame: bytes) -> None:
        self.got.extend(decode(frame))

    def hold(self, channel, messages) -> None:
        assert self.recovery.hold(channel, messages)


def _member_key(member: Member) -> tuple[object, ...]:
    recovery = member.recovery
    state = tuple(repr(getattr(recovery, slot)) for slot in SocketRecovery.__slots__)
    return (tuple(member.got), member.verdict_at, state)


def decode(frames: bytes) -> Iterator[object]:
    """Server text frames (no masking) into message numbers and control tuples."""
    while frames:
        length, offset = frames[1] & 0x7F, 2
        if length == 126:
            length, offset = int.from_bytes(frames[2:4], "big"), 4
        text, frames = frames[offset : offset + length].decode(), frames[offset + length :]
        if not text.startswith("{"):
            yield int(text[1:])
            continue
        body = json.loads(text)
        if body["type"] == "message":
            yield int(body["data"][1:])
        else:
            yield (body["type"], body.get("reason"), body.get("id"))


@dataclass
class World:
    start: SocketStart
    since: Position | None
    history: list[int]
    to_publish: int
    close: bool
    outage: Outage | None
    hub: Hub = field(init=False)
    worker: object = field(init=False)
    live: list[Member] = field(init=False)
    starting: Member = field(init=False)
    in_flight: deque[int] = field(default_factory=deque)
    subscribed: bool = True
    lost: bool = False  # the outage happened
    worker_looping: bool = False
    program: list[str] = field(default_factory=list)
    cursor: int = 0
    newest_read: Position | None = None
    resynced: bool = False
    closed: bool = False

    def __post_init__(self) -> None:
        from wsloop.recovery import WorkerRecovery  # noqa: PLC0415

        self.hub = Hub(NullBroker())
        self.worker = WorkerRecovery()
        self.worker.follow(FACILITY)
        self.worker.position_read(FACILITY, pos(self.history[-1]) if self.history else None)
        self.live = [
            Member("bare", envelope=False),
            Member("envelope", envelope=True),
            Member("echoing", envelope=True, origin="echoing", echo=True),
            Member("quiet", envelope=True, origin="quiet"),
        ]
        bare = self.start.kind is StartKind.BARE
        origin = OWN if self.start.publishes else None
        self.starting = Member(
            "starting", envelope=not bare, since=self.since, origin=origin, live=False
        )
        for member in self.live:
            self.hub.join(member, [CHANNEL])
        # As wsloop.connection: a socket without since reads its start before it joins.
        self.program = ["join", "wait", "replay", "go_live"]
        if self.start.kind is StartKind.POSITION:
            self.program.insert(0, "start")
        if bare:  # every message is kept as the persisted one; the bus tells when all is in
            self.program = ["join", "wait", "persisted", "delivered", "go_live"]
        self.start_read: Position | None = None
        self.read_mark = 0  # messages published when the persisted one was read
        self.initial = len(self.history)
        self.own = self.initial + self.to_publish if self.start.publishes else None

    def key(self) -> tuple[object, ...]:
        """Everything the rest of a schedule depends on, and everything checked at its end."""
        worker = self.worker
        return (
            self.since,
            tuple(self.history),
            tuple(self.in_flight),
            self.to_publish,
            self.subscribed,
            self.lost,
            self.worker_looping,
            tuple(self.program),
            self.cursor,
            self.newest_read,
            self.start_read,
            self.read_mark,
            self.resynced,
            self.closed,
            worker.phase,
            tuple(worker.replay_plan()),
            repr(worker.__dict__),
            *(_member_key(member) for member in [*self.live, self.starting]),
        )

    # what may happen next

    def enabled(self) -> list[str]:
        events = []
        own_next = self.origin(len(self.history) + 1) == OWN
        if self.to_publish and not (own_next and not self.reading()):
            events.append("publish")
        if self.in_flight:
            events.append("arrive")
        if self.program and self.socket_may_step(self.program[0]):
            events.append("socket")
        if self.close and not self.closed:
            events.append("close")
        if self.outage is not None and not self.lost:
            events.append("lose")
        if self.outage is not None and self.lost and not self.subscribed:
            events.append("resubscribe")
        if self.worker_looping:
            events.append("worker")
        return events

    def reading(self) -> bool:
        """The starting socket's reader runs (as in wsloop.connection): beside an envelope
        socket's start, after a bare socket's."""
        if self.start.kind is StartKind.BARE:
            return not self.program
        return "join" not in self.program

    def socket_may_step(self, step: str) -> bool:
        if step == "wait":
            return self.worker.phase.value == "live"
        if step == "delivered":  # wait_delivered (again on the next subscription), wait_live
            read_in_flight = any(n <= self.read_mark for n in self.in_flight)
            return self.subscribed and self.worker.phase.value == "live" and not read_in_flight
        return True

    def apply(self, event: str) -> None:
        getattr(self, f"_{event}")()

    def _publish(self) -> None:
        number = len(self.history) + 1
        self.history.append(number)
        self.to_publish -= 1
        if self.subscribed:
            self.in_flight.append(number)

    def _arrive(self) -> None:
        number = self.in_flight.popleft()
        fresh = self.worker.live(CHANNEL, [tag(pos(number), self.origin(number), b"m%d" % number)])
        if fresh:
            self.hub.dispatch(CHANNEL, fresh)

    def newest(self) -> Position:
        """The current position (an empty history's is a marker, here at 0)."""
        return pos(self.history[-1]) if self.history else pos(0)

    def origin(self, number: int) -> str | None:
        if number <= self.initial:
            return None
        if number == self.own:
            return OWN
        return ORIGINS[number % 3]

    def message(self, number: int) -> Incoming:
        return Incoming(b"m%d" % number, pos(number), self.origin(number))

    def _socket(self) -> None:
        step = self.program.pop(0)
        recovery = self.starting.recovery
        if step == "start":
            self.start_read = self.newest()
            recovery.start_at(self.start_read)
        elif step == "join":
            self.hub.join(self.starting, [CHANNEL])
        elif step == "replay":
            if recovery.phase is SocketPhase.CLOSED:
                return
            self.cursor = recovery.replay_from.id.ms
            recovery.begin_replay()
            self.program.insert(0, "page")
        elif step == "page":
            if recovery.phase is SocketPhase.CLOSED:
                return
            after = [n for n in self.history if n > self.cursor][: self.start.page]
            page = [(CHANNEL, self.message(n)) for n in after]
            written = recovery.replayed(page)
            self.starting.got.extend(message.position.id.ms for _, message in written)
            if after:
                self.cursor = after[-1]
            if len(after) < self.start.page:
                recovery.replay_ended(None)
            else:
                self.program.insert(0, "page")
        elif step == "position":
            self.newest_read = self.newest()
        elif step == "persisted":
            self.read_mark = len(self.history)
        elif step == "go_live":
            self.go_live()

    def go_live(self) -> None:
        recovery = self.starting.recovery
        if recovery.needs_position and self.newest_read is None:
            self.program[:0] = ["position", "go_live"]  # a read of its own, then live
            return
        position = self.newest_read if recovery.needs_position else None
        mark = self.read_mark
        persisted = [(CHANNEL, b"m%d" % mark)] if mark else []
        self.record_release(recovery.go_live(position, persisted))

    def record_release(self, release: Release) -> None:
        starting = self.starting
        starting.got.extend(int(payload[1:]) for _, payload in release.persisted)
        if release.verdict is not None:
            verdict = release.verdict
            starting.verdict_at = len(starting.got)
            at = verdict.position.id.ms if verdict.position is not None else None
            starting.got.append((verdict.kind.value, verdict.count, at))
        starting.got.extend(message.position.id.ms for _, message in release.held)

    def _close(self) -> None:
        self.closed = True
        self.starting.recovery.close()
        self.starting.got.append(("closed", None, None))

    def _lose(self) -> None:
        self.lost, self.subscribed = True, False
        self.in_flight.clear()

    def _resubscribe(self) -> None:
        self.subscribed = True
        if self.worker.resubscribed():
            self.worker_looping = True

    def _worker(self) -> None:
        step = self.worker.next_step()
        if step is WorkerStep.REPLAY:
            for facility, last in self.worker.replay_plan():
                if self.outage.replay_fails or (last is not None and last.epoch != EPOCH):
                    self.tell_lost(Resync.UNAVAILABLE)
                    self.worker.replay_failed(facility, last)
                    continue
                end = pos(self.history[-1]) if self.history else None
                start = last.id.ms if last is not None else 0
                page = [(CHANNEL, self.message(n)) for n in self.history if n > start]
                fresh, _ = self.worker.replayed(facility, page, end)
                for channel, message in fresh:
                    self.hub.dispatch(channel, [message])
        elif step is WorkerStep.RELEASE:
            for channel, messages in self.worker.take_waiting():
                fresh = self.worker.admit(FACILITY, messages)
                if fresh:
                    self.hub.dispatch(channel, fresh)
        else:
            self.worker_looping = False

    def tell_lost(self, reason: Resync) -> None:
        self.resynced = True
        for member in [*self.live, self.starting]:
            if member.recovery.worker_lost(reason):
                member.got.append(("resync", reason.value, None))

    # what must hold at the end

    def violations(self) -> list[str]:
        problems = []
        after_start = self.history[self.initial :]
        for member in self.live:
            owed = [n for n in after_start if not self.skips(member, n)]
            problems += check(member.name, member.got, owed, lossy=self.resynced)
        return problems + self.check_starting()

    def skips(self, member: Member, number: int) -> bool:
        """A sender without echo never hears its own message."""
        return (
            member.origin is not None and self.origin(number) == member.origin and not member.echo
        )

    def heard(self, after: int, upto: float = float("inf")) -> list[int]:
        """The messages after ``after`` up to ``upto`` that the starting socket hears."""
        return [n for n in self.history if after < n <= upto and self.origin(n) != OWN]

    def check_starting(self) -> list[str]:
        got, at = self.starting.got, self.starting.verdict_at
        own = [n for n in got if not isinstance(n, tuple) and self.origin(n) == OWN]
        if own:
            return [f"starting: heard its own {own} in {got}"]
        if self.closed:
            close = got.index(("closed", None, None))
            if got[close + 1 :]:
                return [f"starting: {got[close + 1 :]} after the close"]
            return check("starting", got, [], lossy=True, extra_ok=True)
        if self.start.kind is StartKind.BARE:
            return self.check_bare(got)
        if at is None:
            return [f"starting: no verdict in {got}"]
        kind, count, where = got[at]
        if any(isinstance(item, tuple) for item in got[:at]):
            return [f"starting: {got[:at]} before its verdict"]
        replayed = got[:at]
        # The verdict's id: everything the socket hears up to it was replayed, nothing after it.
        if kind == VerdictKind.RECOVERED.value:
            since = self.since.id.ms
            problems = check("starting", got, self.heard(since), lossy=True)
            exact = where == since or where in self.history
            if not exact or count != len(replayed) or self.heard(since, where) != replayed:
                problems.append(f"starting: recovered {count} at {where} after {replayed}")
            return problems
        if kind == VerdictKind.POSITION.value:
            start = self.start_read.id.ms
            problems = check("starting", got, self.heard(start), lossy=True)
            exact = where == start or where in self.history
            if not exact or self.heard(start, where) != replayed:
                problems.append(f"starting: position {where} after {replayed} from {start}")
            return problems
        owed = self.heard(where or 0)
        # a resync: nothing twice nor out of order, and everything after its position
        problems = check("starting", got, [], lossy=True, extra_ok=True)
        return problems + check("starting after its resync", got[at + 1 :], owed, lossy=True)

    def check_bare(self, got: list[object]) -> list[str]:
        """The persisted message (the newest when it was read) and everything after it, once
        and in order; an older one only if it was on its way when the socket joined, and then
        with nothing missing after it. A failed worker replay may lose messages silently (a
        bare socket is never told), never repeat or reorder them."""
        owed = [] if self.resynced else self.heard(max(self.read_mark, 1) - 1)
        problems = check("starting", got, owed, lossy=self.resynced, extra_ok=True)
        numbers = [item for item in got if not isinstance(item, tuple)]
        if numbers and numbers != self.heard(numbers[0] - 1, numbers[-1]) and not self.resynced:
            problems.append(f"starting: a gap in {got}")
        return problems


def check(
    name: str, got: list[object], owed: list[int], *, lossy: bool, extra_ok: bool = False
) -> list[str]:
    """Each owed message once, in order; missing ones only after a resync the socket was told
    (``lossy``: the worker's replay failed, so a bare socket may miss them silently)."""
    numbers = [item for item in got if not isinstance(item, tuple)]
    problems = []
    twice = sorted({n for n in numbers if numbers.count(n) > 1})
    if twice:
        problems.append(f"{name}: {twice} twice in {got}")
    elif numbers != sorted(numbers):
        problems.append(f"{name}: out of order {got}")
    told = any(isinstance(item, tuple) and item[0] == "resync" for item in got)
    missing = [n for n in owed if n not in numbers]
    if missing and not (lossy and (told or name == "bare")):
        problems.append(f"{name}: missing {missing} of {owed} (got {got})")
    extra = [n for n in numbers if n not in owed]
    if extra and not extra_ok:
        problems.append(f"{name}: {extra} not owed (owed {owed}, got {got})")
    return problems


@dataclass
class Explored:
    schedules: int = 0  # complete schedules that ended in a distinct world
    states: int = 0  # distinct worlds visited
    resyncs: int = 0
    violations: list[str] = field(default_factory=list)
    seen: set[tuple[object, ...]] = field(default_factory=set, repr=False)


def explore(
    start: SocketStart, *faults: Close | Outage, published_before=(2,), published_during=2
) -> Explored:
    """Every schedule of every world of these shapes (for SINCE: each possible since). Worlds
    reached again by another order of the same events are not explored twice: what follows
    depends on the world only."""
    explored = Explored()
    outage = next((f for f in faults if isinstance(f, Outage)), None)
    close = any(isinstance(f, Close) for f in faults)
    for before in published_before:
        sinces = [pos(n) for n in range(before + 1)] if start.kind is StartKind.SINCE else [None]
        for since in sinces:
            world = World(start, since, list(range(1, before + 1)), published_during, close, outage)
            _walk(world, [], explored)
    return explored


def _walk(world: World, schedule: list[str], explored: Explored) -> None:
    key = world.key()
    if key in explored.seen:
        return
    explored.seen.add(key)
    explored.states += 1
    events = world.enabled()
    if not events:
        explored.schedules += 1
        explored.resyncs += world.resynced
        for problem in world.violations():
            if len(explored.violations) < 20:
                explored.violations.append(f"{' '.join(schedule)} (since {world.since}): {problem}")
        return
    for index, event in enumerate(events):
        branch = world if index == len(events) - 1 else copy.deepcopy(world)
        branch.apply(event)
        _walk(branch, [*schedule, event], explored)
