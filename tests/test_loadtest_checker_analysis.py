"""The checker's conclusions on made-up runs: each kind of violation is found, and only there."""

from __future__ import annotations

from loadtest.checker_analysis import (
    ClientLog,
    Entry,
    Event,
    Published,
    Truth,
    analyse,
)
from wsloop.history import StreamId

EPOCH = "ep"


def position(number: int) -> str:
    """The position of message ``number`` (message n is entry n-1, at stream id n-0)."""
    return f"{EPOCH}:{number}-0"


def truth(numbers=range(1, 11), published=None):
    entries = [Entry(StreamId(n, 0), n) for n in numbers]
    published = published or [Published(n, "ok", float(n)) for n in numbers]
    return Truth(entries, published), published


def client(received, events=None, name="c", finished=True):
    """A client that connected once without since (told it starts before message 1) unless
    ``events`` say otherwise."""
    if events is None:
        events = [Event(0.0, 0, "connect", None), Event(0.0, 0, "position", position(0))]
    return ClientLog(name, list(received), events, finished)


def found(clients, numbers=range(1, 11), published=None, history=1000):
    facts, log = truth(numbers, published)
    return analyse(facts, log, clients, history)


def test_everything_once_in_order_is_clean():
    analysis = found([client(range(1, 11))])
    assert analysis.clean and analysis.owed == analysis.delivered == 10


def test_duplicates_reorders_gaps_and_phantoms_are_each_found():
    assert found([client([1, 2, 2, 3, 4, 5, 6, 7, 8, 9, 10])]).count("duplicate") == 1
    assert found([client([1, 3, 2, 4, 5, 6, 7, 8, 9, 10])]).count("reorder") == 1
    gap = found([client([1, 2, 5, 6, 7, 8, 9, 10])])
    assert [f.detail for f in gap.findings] == ["2 missing: 3..4"]
    assert found([client([*range(1, 11), 99])]).count("phantom") == 1
    assert found([client(range(1, 8), finished=False)]).count("unfinished") == 1


def test_a_client_is_owed_what_follows_the_position_it_started_from():
    rendered = [Event(0.0, 0, "connect", position(4))]
    assert found([client(range(5, 11), rendered)]).clean
    assert found([client(range(6, 11), rendered)]).count("gap") == 1


def test_what_a_first_start_replayed_before_telling_its_position_counts():
    """A socket without since reads the position (3), subscribes, replays 4..5 published
    meanwhile, and is told it stands at 5."""
    events = [Event(0.0, 0, "connect", None), Event(0.1, 2, "position", position(5))]
    assert found([client(range(4, 11), events)]).clean


def test_a_resync_covers_its_gap_and_is_explained_only_when_history_was_outrun():
    def resynced(reason, at):
        events = [
            Event(0.0, 0, "connect", None),
            Event(0.0, 0, "position", position(0)),
            Event(1.0, 3, "connect", position(3)),
            Event(at, 3, "resync", position(8), reason),
        ]
        return client([1, 2, 3, 9, 10], events)

    outrun = found([resynced("expired", at=9.0)], history=5)
    assert outrun.clean and len(outrun.explained) == 1
    assert found([resynced("expired", at=9.0)], history=1000).count("unexplained resync") == 1
    assert found([resynced("reset", at=9.0)], history=5).count("unexplained resync") == 1
    assert found([resynced("expired", at=9.0)], history=5).count("gap") == 0


def test_the_publishers_claims_are_checked_against_history():
    published = [Published(n, "ok", float(n)) for n in range(1, 11)]
    published[2] = Published(3, "refused", 3.0)  # said never sent, yet in history
    published.append(Published(11, "ok", 11.0))  # confirmed, yet not in history
    published.append(Published(12, "unknown", 12.0))  # either way is right
    analysis = found([client(range(1, 11))], published=published)
    assert analysis.count("ghost") == 1 and analysis.count("lost write") == 1
    assert found([client(range(1, 11))], numbers=[*range(1, 11), 5]).count("double write") == 1


def test_a_recovered_count_must_match_what_its_connection_replayed():
    events = [
        Event(0.0, 0, "connect", None),
        Event(0.0, 0, "position", position(0)),
        Event(1.0, 4, "connect", position(4)),
        Event(1.1, 7, "recovered", position(7), 3),
        Event(2.0, 8, "connect", position(8)),
        Event(2.1, 10, "recovered", position(10), 1),
    ]
    analysis = found([client(range(1, 11), events)])
    assert [f.kind for f in analysis.findings] == ["miscount"]
