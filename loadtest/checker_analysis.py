"""What the recovery checker concludes, without I/O: every client's received sequence against the
history Redis kept (the order the bus gave every message) and the publisher's own log.

The truth is the facility's stream as the checker read it during the run: each entry's id and
the number it carried, in history order. A client is owed every entry after the position it
started from (the ``since`` a page was rendered with, or the ``position`` it was told at its first
connect) up to the last one it reached; it must receive each exactly once, in history order.

Findings, counted separately:

* ``duplicate``: a number received twice by the same client (across its connections);
* ``reorder``: a number received after one that follows it in history;
* ``gap``: a run of owed entries never received, and not covered by a resync;
* ``resync``: the server told the client to resync. *Explained* when history really could not
  fill the gap: the reason is ``expired`` and at least the history's length in messages was
  published after the client's position before it came back (so the position may have been
  trimmed); every other resync is unexplained;
* ``phantom``: a number received that history never had;
* ``lost write``: a publish the publisher saw confirmed that history does not have; ``ghost``: a
  publish refused before it was sent that history has anyway; ``double write``: a number in
  history twice (the publisher never retries, so this is a bug);
* ``miscount``: a ``recovered`` whose count is not the number of messages replayed before it;
* ``unfinished``: a client that never reached the last entry before the checker gave up.

A publish that timed out may or may not have been applied (``wsloop.PublishError`` says so):
either way is right, and history says which. Nothing else is allowed: the bar is zero of
everything but explained resyncs.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from wsloop.history import Position, StreamId

VIOLATIONS = (
    "duplicate",
    "reorder",
    "gap",
    "unexplained resync",
    "phantom",
    "lost write",
    "ghost",
    "double write",
    "miscount",
    "unfinished",
)
EXAMPLES_PER_KIND = 5


@dataclass(frozen=True)
class Entry:
    """One message in history: its stream id and the number it carried."""

    id: StreamId
    number: int


@dataclass(frozen=True)
class Published:
    """The publisher's view of one publish: ``ok``, ``refused`` (never sent: Redis refused the
    connection) or ``unknown`` (sent, no answer: it may have been applied)."""

    number: int
    outcome: str
    at: float  # time.monotonic() when the call returned


@dataclass(frozen=True)
class Event:
    """Something a client saw. ``received``: how many messages it had received by then."""

    at: float
    received: int
    kind: str  # connect, position, recovered, resync, closed, failed
    position: str | None = None  # connect: the since it sent; controls: their id
    detail: str | int | None = None  # recovered: count; resync: reason; closed/failed: how


@dataclass
class ClientLog:
    name: str
    received: Sequence[int]
    events: list[Event] = field(default_factory=list)
    finished: bool = True


@dataclass(frozen=True)
class Finding:
    kind: str
    client: str
    detail: str


@dataclass
class Analysis:
    findings: list[Finding] = field(default_factory=list)
    resyncs: Counter[str] = field(default_factory=Counter)  # by reason, explained ones included
    explained: list[str] = field(default_factory=list)
    owed: int = 0  # deliveries owed, all clients together
    delivered: int = 0

    def count(self, kind: str) -> int:
        return sum(1 for finding in self.findings if finding.kind == kind)

    @property
    def clean(self) -> bool:
        return not self.findings

    def summary(self) -> dict[str, object]:
        by_kind = Counter(finding.kind for finding in self.findings)
        examples: dict[str, list[str]] = {}
        for finding in self.findings:
            shown = examples.setdefault(finding.kind, [])
            if len(shown) < EXAMPLES_PER_KIND:
                shown.append(f"{finding.client}: {finding.detail}")
        return {
            "clean": self.clean,
            "violations": {kind: by_kind.get(kind, 0) for kind in VIOLATIONS},
            "clients_affected": {
                kind: len({f.client for f in self.findings if f.kind == kind}) for kind in by_kind
            },
            "resyncs": dict(self.resyncs),
            "explained_resyncs": self.explained,
            "owed": self.owed,
            "delivered": self.delivered,
            "examples": examples,
        }


def stream_id_of(position: str) -> StreamId:
    return Position.parse(position).id


class Truth:
    """History in order, with what the checker needs to look up in it."""

    def __init__(self, entries: Sequence[Entry], published: Iterable[Published]) -> None:
        self.entries = list(entries)
        self.ids = [entry.id for entry in self.entries]
        self.index_of: dict[int, int] = {}
        self.doubled: list[int] = []
        for index, entry in enumerate(self.entries):
            if entry.number in self.index_of:
                self.doubled.append(entry.number)
            else:
                self.index_of[entry.number] = index
        self.published_at = {p.number: p.at for p in published}

    def after(self, position: str | None) -> int:
        """The index of the first entry after ``position`` (0 for None: the beginning)."""
        if position is None:
            return 0
        return bisect.bisect_right(self.ids, stream_id_of(position))

    def published_between(self, first: int, at: float) -> int:
        """Entries from index ``first`` on that were published by ``at``."""
        return sum(
            1
            for entry in self.entries[first:]
            if self.published_at.get(entry.number, float("inf")) <= at
        )


def analyse(
    truth: Truth, published: Iterable[Published], clients: Iterable[ClientLog], history_length: int
) -> Analysis:
    analysis = Analysis()
    _check_writes(truth, published, analysis)
    for client in clients:
        _check_client(truth, client, history_length, analysis)
    return analysis


def _check_writes(truth: Truth, published: Iterable[Published], analysis: Analysis) -> None:
    for record in published:
        in_history = record.number in truth.index_of
        if record.outcome == "ok" and not in_history:
            analysis.findings.append(Finding("lost write", "publisher", f"{record.number}"))
        elif record.outcome == "refused" and in_history:
            analysis.findings.append(Finding("ghost", "publisher", f"{record.number}"))
    for number in truth.doubled:
        analysis.findings.append(Finding("double write", "publisher", f"{number}"))


def _check_client(truth: Truth, client: ClientLog, history_length: int, analysis: Analysis) -> None:
    findings = analysis.findings
    name = client.name
    indexes: list[int] = []
    seen: set[int] = set()
    newest = -1
    for number in client.received:
        index = truth.index_of.get(number)
        if index is None:
            findings.append(Finding("phantom", name, f"{number} is not in history"))
            continue
        if number in seen:
            findings.append(Finding("duplicate", name, f"{number} received twice"))
            continue
        seen.add(number)
        if index < newest:
            findings.append(
                Finding("reorder", name, f"{number} after {truth.entries[newest].number}")
            )
        newest = max(newest, index)
        indexes.append(index)
    # Owed from the position the client started at; what its first start replayed before
    # telling it that position (published between its read and its subscription) counts too.
    first_owed = min(truth.after(_start_of(client)), min(indexes, default=len(truth.entries)))
    covered = _resyncs(truth, client, history_length, analysis)
    last_owed = max(newest, _last_position_index(truth, client))
    if not client.finished:
        findings.append(Finding("unfinished", name, f"stopped at {len(client.received)}"))
    received = set(indexes)
    missing = [
        index
        for index in range(first_owed, last_owed + 1)
        if index not in received and not any(low < index <= high for low, high in covered)
    ]
    for low, high in _runs(missing):
        first, last = truth.entries[low].number, truth.entries[high].number
        findings.append(Finding("gap", name, f"{high - low + 1} missing: {first}..{last}"))
    analysis.owed += max(0, last_owed + 1 - first_owed)
    analysis.delivered += len(received)
    _check_counts(client, analysis)


def _start_of(client: ClientLog) -> str | None:
    """The position the client's first connection started from."""
    for event in client.events:
        if event.kind == "connect" and event.position is not None:
            return event.position
        if event.kind in ("position", "recovered", "resync") and event.position is not None:
            return event.position if event.kind == "position" else None
    return None


def _last_position_index(truth: Truth, client: ClientLog) -> int:
    """The last entry the client's final position claims (a control's id counts too)."""
    last = -1
    for event in client.events:
        if event.kind in ("position", "recovered", "resync") and event.position is not None:
            last = max(last, truth.after(event.position) - 1)
    return last


def _resyncs(
    truth: Truth, client: ClientLog, history_length: int, analysis: Analysis
) -> list[tuple[int, int]]:
    """Each resync: counted, explained or not, and the range of indexes it covers (the entries
    between what the client had and what the resync's position says it now has)."""
    covered = []
    since: str | None = None
    for event in client.events:
        if event.kind == "connect":
            since = event.position
        if event.kind != "resync":
            continue
        reason = str(event.detail)
        analysis.resyncs[reason] += 1
        had = truth.after(since) - 1
        now = truth.after(event.position) - 1 if event.position else len(truth.entries) - 1
        covered.append((had, now))
        after_since = truth.published_between(had + 1, event.at)
        if reason == "expired" and after_since >= history_length:
            analysis.explained.append(
                f"{client.name}: expired after {after_since} messages (history {history_length})"
            )
        else:
            analysis.findings.append(
                Finding(
                    "unexplained resync",
                    client.name,
                    f"{reason} at since {since}: {after_since} published after it",
                )
            )
    return covered


def _check_counts(client: ClientLog, analysis: Analysis) -> None:
    """A ``recovered`` says how many messages its connection replayed before it."""
    connected_at = 0
    for event in client.events:
        if event.kind == "connect":
            connected_at = event.received
        elif event.kind == "recovered" and event.detail != event.received - connected_at:
            analysis.findings.append(
                Finding(
                    "miscount",
                    client.name,
                    f"recovered {event.detail} after {event.received - connected_at}",
                )
            )


def _runs(indexes: Sequence[int]) -> list[tuple[int, int]]:
    """Consecutive indexes as (first, last) ranges."""
    runs: list[tuple[int, int]] = []
    for index in indexes:
        if runs and runs[-1][1] == index - 1:
            runs[-1] = (runs[-1][0], index)
        else:
            runs.append((index, index))
    return runs
