"""The recovery state machines without sockets: each decision alone, then every interleaving of a
socket's start, live copies, the worker's resubscription and closes, checked exhaustively on small
histories against the real Hub (``tests/recovery_model.py`` plays them)."""

from __future__ import annotations

import pytest
from recovery_model import Close, Outage, SocketStart, StartKind, World, explore

from wsloop.history import UNKNOWN, Incoming, Position, Resync, StreamId
from wsloop.recovery import (
    InvalidTransition,
    Release,
    SocketPhase,
    SocketRecovery,
    Verdict,
    VerdictKind,
    WorkerPhase,
    WorkerRecovery,
    WorkerStep,
)

EPOCH = "ep"


def at(number: int, origin: str | None = None) -> Incoming:
    return Incoming(f"m{number}".encode(), Position(EPOCH, StreamId(number, 0)), origin)


def pos(number: int) -> Position:
    return Position(EPOCH, StreamId(number, 0))


def payloads(entries) -> list[bytes]:
    return [message.payload for _, message in entries]


def recovering(since: Position | None = None, limit: int = 1 << 20) -> SocketRecovery:
    return SocketRecovery(since, envelope=True, hold_limit_bytes=limit)


# The socket: decisions one at a time.


def test_a_replay_ends_in_recovered_with_the_last_position_and_that_seam():
    recovery = recovering(pos(1))
    recovery.hold("c", [at(2), at(3)])
    recovery.begin_replay()
    recovery.replayed([("c", at(2)), ("c", at(3))])
    recovery.hold("c", [at(4)])
    recovery.replay_ended(None)
    assert not recovery.needs_position
    release = recovery.go_live()
    assert release.verdict == Verdict(VerdictKind.RECOVERED, pos(3), count=2)
    assert payloads(release.held) == [b"m4"]
    assert recovery.seam is None  # 4 passed it


def test_the_seam_drops_late_live_copies_until_one_after_it_arrives():
    recovery = recovering(pos(1))
    recovery.begin_replay()
    recovery.replayed([("c", at(2)), ("c", at(3))])
    recovery.replay_ended(None)
    assert recovery.go_live().held == []
    assert recovery.seam == pos(3) and recovery.phase is SocketPhase.SEAM
    raw = Incoming(b"raw")
    assert recovery.admit([at(2), raw, at(3)]) == [1]  # a raw message has no place: it passes
    assert recovery.seam == pos(3)
    assert recovery.admit([at(3), at(4), at(5)]) == [1, 2]
    assert recovery.seam is None and recovery.phase is SocketPhase.LIVE
    assert recovery.admit([at(2)]) == [0]  # past the seam the stream is in order: no check


def test_a_message_of_another_epoch_passes_the_seam():
    recovery = recovering(pos(5))
    recovery.replay_ended(None)
    recovery.go_live()
    other = Incoming(b"x", Position("new", StreamId(1, 0)))
    assert recovery.admit([other]) == [0]
    assert recovery.seam is None


def test_nothing_to_replay_recovers_at_since():
    recovery = recovering(pos(7))
    recovery.begin_replay()
    recovery.replay_ended(None)
    assert recovery.go_live().verdict == Verdict(VerdictKind.RECOVERED, pos(7), count=0)
    assert recovery.seam == pos(7)


def test_a_socket_without_since_replays_from_the_position_it_read_and_is_told_it():
    recovery = recovering()
    recovery.start_at(pos(4))
    assert recovery.replay_from == pos(4) and not recovery.needs_position
    recovery.hold("c", [at(4), at(5), at(6)])
    recovery.begin_replay()
    recovery.replayed([("c", at(5))])  # published after the read, before the subscription
    recovery.replay_ended(None)
    release = recovery.go_live()
    assert release.verdict == Verdict(VerdictKind.POSITION, pos(5))
    assert payloads(release.held) == [b"m6"]


def test_a_socket_without_since_or_history_is_told_no_position_and_filters_nothing():
    recovery = recovering()
    recovery.start_at(None)
    recovery.hold("c", [at(4)])
    release = recovery.go_live()
    assert release.verdict == Verdict(VerdictKind.POSITION, None)
    assert payloads(release.held) == [b"m4"]


def test_since_is_not_replaced_by_a_start_position():
    recovery = recovering(pos(2))
    recovery.start_at(pos(9))
    assert recovery.replay_from == pos(2)


@pytest.mark.parametrize("reason", list(Resync))
def test_a_resync_carries_the_current_position_and_filters_from_it(reason):
    recovery = recovering(pos(1))
    recovery.begin_replay()
    recovery.replayed([("c", at(2))])
    recovery.hold("c", [at(3), at(4), at(5)])
    recovery.replay_ended(reason)
    assert recovery.needs_position
    release = recovery.go_live(pos(4))
    assert release.verdict == Verdict(VerdictKind.RESYNC, pos(4), reason=reason)
    assert payloads(release.held) == [b"m5"]


def test_a_resync_without_a_position_still_drops_what_was_replayed():
    recovery = recovering(pos(1))
    recovery.begin_replay()
    recovery.replayed([("c", at(2)), ("c", at(3))])
    recovery.hold("c", [at(3), at(4)])
    recovery.replay_ended(Resync.UNAVAILABLE)
    release = recovery.go_live(None)
    assert release.verdict == Verdict(VerdictKind.RESYNC, None, reason=Resync.UNAVAILABLE)
    assert payloads(release.held) == [b"m4"]


def test_the_first_verdict_of_a_replay_wins():
    recovery = recovering(pos(1))
    recovery.begin_replay()
    recovery.replay_ended(Resync.EXPIRED)
    recovery.replay_ended(Resync.UNAVAILABLE)
    assert recovery.go_live(pos(9)).verdict.reason is Resync.EXPIRED


def test_a_bare_socket_gets_no_verdict_and_everything_held():
    recovery = SocketRecovery(None, envelope=False, hold_limit_bytes=100)
    assert not recovery.needs_position
    recovery.hold("c", [Incoming(b"a"), at(3)])
    release = recovery.go_live()
    assert release.verdict is None
    assert payloads(release.held) == [b"a", b"m3"]
    assert recovery.seam is None


def test_a_persisted_message_already_held_goes_out_once_in_its_place():
    recovery = SocketRecovery(None, envelope=False, hold_limit_bytes=100)
    recovery.hold("c", [at(4), at(5)])
    release = recovery.go_live(persisted=[("c", b"m5"), ("d", b"m5"), ("e", b"old")])
    assert release.persisted == [("d", b"m5"), ("e", b"old")]  # another channel's is its own
    assert payloads(release.held) == [b"m4", b"m5"]


def test_a_persisted_message_older_than_what_was_held_goes_first():
    recovery = SocketRecovery(None, envelope=False, hold_limit_bytes=100)
    recovery.hold("c", [at(4)])
    release = recovery.go_live(persisted=[("c", b"m3")])
    assert release.persisted == [("c", b"m3")]
    assert payloads(release.held) == [b"m4"]


def test_a_replay_page_skips_the_senders_own_messages_unless_it_asked_for_echo():
    quiet = SocketRecovery(pos(1), envelope=True, hold_limit_bytes=100, origin="me")
    echoing = SocketRecovery(pos(1), envelope=True, hold_limit_bytes=100, origin="me", echo=True)
    page = [("c", at(2)), ("c", at(3, "me")), ("c", at(4, "other"))]
    for recovery in (quiet, echoing):
        recovery.begin_replay()
    assert payloads(quiet.replayed(page[:2])) == [b"m2"]
    assert payloads(echoing.replayed(page)) == [b"m2", b"m3", b"m4"]
    quiet.replay_ended(None)
    release = quiet.go_live()
    assert release.verdict == Verdict(VerdictKind.RECOVERED, pos(3), count=1)  # its seam: 3
    assert quiet.admit([at(3, "me"), at(4)]) == [1]
    assert not quiet.hears(at(5, "me")) and quiet.hears(at(5)) and echoing.hears(at(5, "me"))


def test_a_closed_socket_releases_no_persisted_message():
    recovery = SocketRecovery(None, envelope=False, hold_limit_bytes=100)
    recovery.close()
    assert recovery.go_live(persisted=[("c", b"m3")]).persisted == []


def test_holding_past_the_limit_is_reported():
    recovery = recovering(limit=5)
    assert recovery.hold("c", [Incoming(b"12345")])
    assert not recovery.hold("c", [Incoming(b"6")])


def test_the_worker_losing_history_tells_live_envelope_sockets_and_ends_a_replay_in_resync():
    starting, replaying, live, bare = recovering(pos(1)), recovering(pos(1)), recovering(), None
    replaying.begin_replay()
    live.go_live(pos(3))
    bare = SocketRecovery(None, envelope=False, hold_limit_bytes=100)
    bare.go_live()
    assert not starting.worker_lost(Resync.EXPIRED)  # it reads its own start afterwards
    assert not replaying.worker_lost(Resync.EXPIRED)
    assert live.worker_lost(Resync.EXPIRED)
    assert not bare.worker_lost(Resync.EXPIRED)  # bare sockets have no resync to hear
    replaying.replay_ended(None)
    assert replaying.go_live(pos(8)).verdict == Verdict(
        VerdictKind.RESYNC, pos(8), reason=Resync.EXPIRED
    )
    starting.replay_ended(None)
    assert starting.go_live().verdict.kind is VerdictKind.RECOVERED


@pytest.mark.parametrize("phase", ["starting", "replaying", "before go_live", "live"])
def test_close_at_every_step_drops_what_is_held_and_nothing_goes_live(phase):
    recovery = recovering(pos(1))
    recovery.hold("c", [at(2)])
    if phase != "starting":
        recovery.begin_replay()
        recovery.replayed([("c", at(2))])
    if phase == "before go_live":
        recovery.replay_ended(None)
    if phase == "live":
        recovery.replay_ended(None)
        recovery.go_live()
    assert recovery.phase.value == {"before go_live": "replaying", "live": "seam"}.get(phase, phase)
    recovery.close()
    assert recovery.phase is SocketPhase.CLOSED
    recovery.close()  # twice is harmless
    assert recovery.phase is SocketPhase.CLOSED
    assert recovery.hold("c", [at(3)])  # ignored, not a slow consumer
    assert recovery.go_live().verdict is None
    assert recovery.go_live().held == []
    assert not recovery.worker_lost(Resync.EXPIRED)


def test_transitions_outside_the_machine_are_bugs():
    recovery = recovering(pos(1))
    recovery.go_live()
    with pytest.raises(InvalidTransition):
        recovery.begin_replay()
    with pytest.raises(InvalidTransition):
        recovery.go_live()


# The worker: decisions one at a time.


def test_the_worker_drops_what_it_has_seen_and_records_the_newest():
    worker = WorkerRecovery()
    worker.follow("f")
    worker.position_read("f", pos(2))
    assert worker.admit("f", [at(1), at(2), at(3), Incoming(b"raw")]) == [at(3), Incoming(b"raw")]
    assert worker.replay_plan() == [("f", pos(3))]
    assert worker.admit("other", [at(1)]) == [at(1)]  # not followed: nothing to filter


def test_a_position_read_late_never_moves_the_worker_back():
    worker = WorkerRecovery()
    worker.follow("f")
    assert worker.live("broadcast:f", [b"\x00wsl1\x00ep:5-0\nm5"]) == [at(5)]
    worker.position_read("f", pos(3))  # read before 5 was published, answered after it came
    assert worker.replay_plan() == [("f", pos(5))]
    worker.follow("f")  # a second socket: nothing changes
    assert worker.replay_plan() == [("f", pos(5))]
    worker.unfollow("f")
    assert worker.replay_plan() == []


def test_a_worker_that_could_not_read_its_position_takes_everything_as_new():
    worker = WorkerRecovery()
    worker.follow("f")
    assert worker.replay_plan() == [("f", UNKNOWN)]
    assert worker.admit("f", [at(1)]) == [at(1)]


def test_resubscribing_holds_live_messages_until_the_replay_and_release_are_done():
    worker = WorkerRecovery()
    worker.follow("f")
    worker.position_read("f", pos(1))
    assert worker.resubscribed()
    assert worker.phase is WorkerPhase.RECOVERING
    assert worker.live("broadcast:f", [b"\x00wsl1\x00ep:3-0\nm3"]) is None
    assert worker.next_step() is WorkerStep.REPLAY
    fresh, over = worker.replayed("f", [("c", at(2)), ("c", at(3)), ("c", at(4))], end=pos(3))
    assert payloads(fresh) == [b"m2", b"m3"] and over
    assert not worker.resubscribed()  # a second loss during the recovery: replay again
    assert worker.next_step() is WorkerStep.REPLAY
    assert worker.next_step() is WorkerStep.RELEASE
    ((_, waiting),) = worker.take_waiting()
    assert worker.admit("f", waiting) == []  # 3 was replayed already
    assert worker.next_step() is WorkerStep.LIVE
    assert worker.phase is WorkerPhase.LIVE


def test_a_replay_that_delivered_nothing_leaves_the_position_unknown():
    worker = WorkerRecovery()
    worker.follow("f")
    worker.position_read("f", pos(1))
    worker.replay_failed("f", pos(1))
    assert worker.replay_plan() == [("f", UNKNOWN)]
    worker.position_read("f", pos(1))
    worker.admit("f", [at(4)])
    worker.replay_failed("f", pos(1))  # it got as far as 4: that still filters
    assert worker.replay_plan() == [("f", pos(4))]


def test_an_empty_history_is_a_replay_that_is_over_at_once():
    worker = WorkerRecovery()
    worker.follow("f")
    worker.position_read("f", None)
    assert worker.replayed("f", [("c", at(1))], end=None) == ([], True)


# Every interleaving, on small histories (the worlds of tests/recovery_model.py).

HISTORIES = (0, 1, 3)  # messages in history before the socket starts (for since: from each one)


@pytest.mark.parametrize("kind", list(StartKind))
def test_every_interleaving_of_a_start_with_live_copies_is_exactly_once(kind):
    """A socket starts (replaying since=, or reading the current position) while messages are
    published and their live copies arrive at every possible point: before, between and after
    its replay pages, before and after it goes live."""
    explored = explore(SocketStart(kind), published_before=HISTORIES, published_during=3)
    assert explored.violations == []
    assert explored.states > 200


@pytest.mark.parametrize("kind", list(StartKind))
def test_every_interleaving_with_a_close_anywhere_sends_nothing_after_it(kind):
    explored = explore(SocketStart(kind), Close(), published_before=HISTORIES, published_during=3)
    assert explored.violations == []
    assert explored.states > 500


@pytest.mark.parametrize("kind", list(StartKind))
def test_every_interleaving_of_a_start_with_the_workers_resubscription(kind):
    """The subscription is lost and comes back before, during or after the socket's replay;
    the worker replays what the outage missed while live sockets (bare, envelope, a sender with
    echo and one without) keep receiving: each gets every message it is owed once, in order."""
    explored = explore(SocketStart(kind), Outage(), published_before=HISTORIES, published_during=3)
    assert explored.violations == []
    assert explored.states > 2000


@pytest.mark.parametrize("kind", list(StartKind))
def test_every_interleaving_of_a_start_that_publishes_never_hears_itself(kind):
    """The starting socket (no echo) sends a message as soon as its reader runs: in a replay
    page, held or live, it never comes to it, and everything else does, once and in order; with
    a close anywhere and an outage."""
    start = SocketStart(kind, publishes=True)
    for faults in [(), (Close(),), (Outage(),)]:
        explored = explore(start, *faults, published_before=HISTORIES, published_during=3)
        assert explored.violations == []
        assert explored.states > 200


def test_every_interleaving_of_a_failed_worker_replay_is_told_and_never_duplicated():
    explored = explore(
        SocketStart(StartKind.SINCE),
        Outage(replay_fails=True),
        published_before=(2,),
        published_during=3,
    )
    assert explored.violations == []
    assert explored.resyncs > 0


def test_every_interleaving_of_a_bare_start_with_a_failed_worker_replay_keeps_order():
    explored = explore(
        SocketStart(StartKind.BARE),
        Outage(replay_fails=True),
        Close(),
        published_before=HISTORIES,
        published_during=3,
    )
    assert explored.violations == []
    assert explored.states > 10_000


def test_the_model_finds_the_bare_joiners_duplicate(monkeypatch):
    """Without waiting for the bus, or without looking at what was held, a persisted message
    published after the subscription comes twice (live and persisted), or out of order."""
    may_step = World.socket_may_step
    monkeypatch.setattr(
        World, "socket_may_step", lambda self, step: step == "delivered" or may_step(self, step)
    )
    unwaited = explore(SocketStart(StartKind.BARE), published_before=(1,), published_during=2)
    assert any("twice" in v or "out of order" in v for v in unwaited.violations)
    monkeypatch.undo()
    go_live = SocketRecovery.go_live

    def sending_every_persisted(self, position=None, persisted=()):
        release = go_live(self, position, persisted)
        closed = self.phase is SocketPhase.CLOSED
        return Release(release.verdict, release.held, [] if closed else list(persisted))

    monkeypatch.setattr(SocketRecovery, "go_live", sending_every_persisted)
    unfiltered = explore(SocketStart(StartKind.BARE), published_before=(1,), published_during=2)
    assert any("twice" in v for v in unfiltered.violations)


def test_the_model_finds_a_sender_hearing_itself(monkeypatch):
    """Without the rule in its replay, an envelope socket replays its own message; a bare one
    whose reader ran during its start reads it back as the persisted one."""
    monkeypatch.setattr(World, "reading", lambda self: "join" not in self.program)
    bare = explore(SocketStart(StartKind.BARE, publishes=True), published_before=(1,))
    assert any("heard its own" in violation for violation in bare.violations)
    monkeypatch.undo()
    replayed = SocketRecovery.replayed

    def writing_every_page(self, page):
        replayed(self, page)
        return page

    monkeypatch.setattr(SocketRecovery, "replayed", writing_every_page)
    envelope = explore(SocketStart(StartKind.SINCE, publishes=True), published_before=(1,))
    assert any("heard its own" in violation for violation in envelope.violations)


def test_the_model_finds_the_duplicate_of_issue_14_when_the_seam_is_gone(monkeypatch):
    """The checker can fail: without the socket's seam a live copy late behind the replay comes
    through a second time, right after the "recovered" control message."""
    monkeypatch.setattr(SocketRecovery, "admit", lambda self, messages: list(range(len(messages))))
    explored = explore(SocketStart(StartKind.SINCE), published_before=(1,), published_during=2)
    assert any("twice" in violation for violation in explored.violations)


def test_the_model_finds_what_the_worker_would_lose_or_repeat(monkeypatch):
    monkeypatch.setattr(WorkerRecovery, "_is_new", lambda self, facility, message: True)
    repeated = explore(SocketStart(StartKind.SINCE), Outage(), published_before=(2,))
    assert any("twice" in violation for violation in repeated.violations)
    monkeypatch.undo()
    monkeypatch.setattr(SocketRecovery, "worker_lost", lambda self, reason: False)
    silent = explore(SocketStart(StartKind.SINCE), Outage(replay_fails=True), published_before=(2,))
    assert any("missing" in violation for violation in silent.violations)
