"""What the coordinator and a client process say to each other over their ``multiprocessing``
pipe: commands one way, replies the other, every command answered by exactly one reply (what
each one does is in ``worker``)."""

from __future__ import annotations

from dataclasses import dataclass

# Commands (coordinator -> worker)


@dataclass(frozen=True)
class OpenCmd:
    path: str  # may contain "{room}": socket i of this process joins room i % rooms
    count: int
    rate_per_s: float
    max_inflight: int
    timeout_s: float
    rooms: int = 1
    # Socket i sends cookies[i % len(cookies)]: a logged-in user's session (with as many cookies
    # as rooms, each room's sockets are one user's tabs).
    cookies: tuple[str, ...] = ()
    hello: tuple[bytes, ...] = ()  # text frames sent when a socket opens; b"{room}" is replaced
    answers: tuple[tuple[bytes, bytes], ...] = ()  # (frame, reply): application-level pongs


@dataclass(frozen=True)
class ArmCmd:
    phase: int
    expected: int  # messages per socket, seq 0 .. expected-1
    timeout_s: float


@dataclass(frozen=True)
class CloseCmd:
    count: int
    timeout_s: float


@dataclass(frozen=True)
class StallCmd:
    count: int
    receive_buffer_bytes: int


@dataclass(frozen=True)
class ReleaseCmd:
    expected: tuple[tuple[int, int], ...]  # (phase, messages) published while stalled
    timeout_s: float


@dataclass(frozen=True)
class StatusCmd:
    pass


@dataclass(frozen=True)
class QuitCmd:
    timeout_s: float


# Replies (worker -> coordinator)


@dataclass
class Ready:
    worker: int
    pid: int


@dataclass
class OpenResult:
    worker: int
    opened: int
    failures: dict[str, int]
    connect_ms: list[float]
    elapsed_s: float


@dataclass
class Armed:
    worker: int
    phase: int
    sockets: int


@dataclass
class PhaseResult:
    worker: int
    phase: int
    sockets: int  # armed
    expected: int  # per socket
    deliveries: int  # payloads of this phase received, duplicates included
    distinct: int  # (socket, seq) pairs received at least once
    duplicates: int
    out_of_order: int
    lost: int  # expected * sockets - distinct
    closed_during: int  # armed sockets that closed before getting everything
    first_ns: int  # time.time_ns() of the first and last delivery (0 if none)
    last_ns: int
    latencies_ns: bytes  # array('q') of received_ns - sent_ns, one per delivery
    sent_ns: bytes  # array('q') of the publisher's sent_ns, same order (for time series)
    timed_out: bool


@dataclass
class CloseResult:
    worker: int
    closed: int  # the closing handshake completed
    aborted: int  # still open at the timeout: aborted


@dataclass
class Stalled:
    worker: int
    sockets: int


@dataclass
class Released:
    worker: int
    sockets: int  # stalled sockets released
    complete: int  # every message of every expected phase, none lost
    closed_by_server: dict[str, int]  # close code (or "eof") -> count
    lost: int  # messages missing on sockets the server did not close
    duplicates: int
    out_of_order: int
    drain_s: float  # release to the last socket done
    timed_out: bool


@dataclass
class Status:
    worker: int
    open: int
    stalled: int
    server_closes: dict[str, int]  # close code (or "eof") -> count, closes we did not ask for
    pings: int  # server pings answered, over all open sockets
    stale_messages: int  # payloads of a phase that is not armed (late copies)
    other_messages: int  # not our payload format (heartbeats...)
