"""A client process: holds up to ``MAX_SOCKETS_PER_PROCESS`` websockets and measures deliveries.

The coordinator (``loadtest.bench``) sends commands over a ``multiprocessing`` pipe; each command
gets exactly one reply. The process is one ``select.epoll`` loop over its sockets and the pipe
(no asyncio: see ``wsclient`` for why), with a small timer heap for phase timeouts. Progress
(sockets open, deliveries and connect failures so far) is written after every poll into this
process's slots of a shared array that the coordinator reads once a second (``PROGRESS_*``).

A payload is recognised anywhere in a frame (``MAGIC``), so servers that wrap messages in an
envelope of their own (JSON, Socket.IO's ``42[...]``) are measured too; ``OpenCmd.hello`` frames
are sent when a socket opens (a subscribe command) and ``OpenCmd.answers`` reply to
application-level pings.

Commands and what is measured:

* ``OpenCmd``: open ``count`` sockets on one path (or, with ``{room}`` in it, spread evenly over
  ``rooms`` paths) at ``rate_per_s`` (a schedule, not a burst:
  socket ``i`` starts at ``i / rate_per_s`` seconds, at most ``max_inflight`` connects and
  handshakes at a time). Reply ``OpenResult``: sockets opened, failures by kind (``http-503``,
  ``timeout``, ``refused``, ``eof-in-handshake``, ``oserror-EMFILE``...), the connect-to-101
  time of every success, elapsed time.
* ``ArmCmd``: start a phase on every open socket: from now on, payloads of that phase are
  counted per socket. Reply ``Armed`` at once; later, unprompted, ``PhaseResult`` when every
  armed socket has all ``expected`` messages (or closed), or when ``timeout_s`` passes.
  Per socket: a bit per ``seq`` seen (a second copy is a duplicate), the highest ``seq`` so far
  (a lower unseen ``seq`` arriving later is out of order), and lost = expected - distinct seen.
  Per delivery: ``received_ns - sent_ns`` (receive time taken once per read).
* ``CloseCmd``: close ``count`` sockets with the closing handshake (1000), wait up to
  ``timeout_s`` for the server to finish it, abort what is left. Reply ``CloseResult``.
* ``StallCmd``: ``count`` open sockets stop reading (a slow consumer: a phone on a bad network,
  a frozen tab) with a small receive buffer; they are left out of later phases. Reply
  ``Stalled``.
* ``ReleaseCmd``: the stalled sockets read again; every payload of the phases published while
  they were stalled must arrive, in order, or the server must have closed the socket (a
  slow-consumer close is the contract; silent loss is not). Reply ``Released`` when each one is
  complete or closed, or at ``timeout_s``.
* ``StatusCmd``: reply ``Status`` (open sockets, closes the server started, pings answered).
* ``QuitCmd``: close everything as ``CloseCmd`` does, reply ``CloseResult``, exit.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import heapq
import itertools
import os
import select
import signal
import socket
import time
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from .messages import (
    ArmCmd,
    Armed,
    CloseCmd,
    CloseResult,
    OpenCmd,
    OpenResult,
    PhaseResult,
    QuitCmd,
    Ready,
    ReleaseCmd,
    Released,
    StallCmd,
    Stalled,
    Status,
    StatusCmd,
)
from .payload import HEADER_BYTES, MAGIC, MAX_SEQ, PHASE, SENT_NS, SEQ
from .wsclient import ClientConnection, State

MAX_SOCKETS_PER_PROCESS = 5000  # the open-files limit is 20,000 per process; leave headroom
RAMP_TICK_S = 0.005  # how often the ramp schedule starts the connections that are due
TIMEOUT_SWEEP_S = 0.1  # how often connects and handshakes are checked against their deadline
IDLE_POLL_S = 1.0
READ_EVENTS = select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR | select.EPOLLRDHUP
EPOLLOUT = select.EPOLLOUT
# Shared progress array: PROGRESS_FIELDS slots per client process, written by the process only.
PROGRESS_OPEN = 0
PROGRESS_DELIVERIES = 1
PROGRESS_FAILURES = 2
PROGRESS_FIELDS = 3


# Work in progress


@dataclass(order=True)
class _Timer:
    when: float
    seq: int
    callback: Callable[[], None] | None = field(compare=False)


@dataclass
class _Opening:
    command: OpenCmd
    count: int
    started_at: float
    started: int = 0
    inflight: int = 0
    finished: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    connect_ms: list[float] = field(default_factory=list)
    next_sweep: float = 0.0


@dataclass
class _Phase:
    phase: int
    expected: int
    conns: list[ClientConnection]  # armed
    deliveries: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    complete: int = 0
    closed_during: int = 0
    first_ns: int = 0
    last_ns: int = 0
    latencies: array[int] = field(default_factory=lambda: array("q"))
    sent: array[int] = field(default_factory=lambda: array("q"))
    timer: _Timer | None = None


@dataclass
class _Release:
    expected: dict[int, int]
    total: int  # messages per socket over all expected phases
    conns: list[ClientConnection]
    pending: set[ClientConnection]
    started_at: float
    closed_by_server: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    out_of_order: int = 0
    timer: _Timer | None = None


@dataclass
class _Closing:
    conns: list[ClientConnection]
    pending: set[ClientConnection]
    reply: bool
    then_exit: bool
    timer: _Timer | None = None


class Worker:
    """The sink of every socket of this process, and the loop."""

    def __init__(
        self, pipe: Connection, index: int, host: str, port: int, progress: Any = None
    ) -> None:
        self.pipe = pipe
        self.index = index
        self.progress = progress  # a shared array('q'), or None
        self.progress_base = index * PROGRESS_FIELDS
        self.host = host
        self.port = port
        self.epoll = select.epoll()
        self.epoll.register(pipe.fileno(), select.EPOLLIN)
        self.conns: dict[int, ClientConnection] = {}  # every registered socket, by fd
        self.sockets: set[ClientConnection] = set()  # open and not being closed by us
        self.pending: set[ClientConnection] = set()  # connecting or in the handshake
        self.opening: _Opening | None = None
        self.phase: _Phase | None = None
        self.closing: _Closing | None = None
        self.stalled: list[ClientConnection] = []  # not read, not in ``conns`` nor ``sockets``
        self.release: _Release | None = None
        self.greetings: dict[ClientConnection, list[bytes]] = {}
        self.answers: dict[bytes, bytes] = {}
        self.deliveries = 0
        self.failures = 0
        self.server_closes: Counter[str] = Counter()
        self.stale_messages = 0
        self.other_messages = 0
        self.running = True
        self._timers: list[_Timer] = []
        self._timer_ids = itertools.count()

    # the loop

    def run(self) -> None:
        pipe_fd = self.pipe.fileno()
        conns = self.conns
        poll = self.epoll.poll
        connecting, handshake, closing = State.CONNECTING, State.HANDSHAKE, State.CLOSING
        while self.running:
            for fd, events in poll(self._poll_timeout()):
                if fd == pipe_fd:
                    self.on_command()
                    continue
                conn = conns.get(fd)
                if conn is None:
                    continue
                if events & EPOLLOUT or conn.state is connecting:
                    conn.on_writable()
                if events & READ_EVENTS and handshake <= conn.state <= closing:
                    conn.on_readable()
            if self._timers:
                self._run_timers()
            if self.opening is not None:
                self._ramp(self.opening)
            if self.progress is not None:
                self._report_progress()

    def _report_progress(self) -> None:
        progress, base = self.progress, self.progress_base
        progress[base + PROGRESS_OPEN] = len(self.sockets) + len(self.stalled)
        progress[base + PROGRESS_DELIVERIES] = self.deliveries
        progress[base + PROGRESS_FAILURES] = self.failures

    def _poll_timeout(self) -> float:
        if self.opening is not None:
            return RAMP_TICK_S
        if self._timers:
            return max(0.0, min(IDLE_POLL_S, self._timers[0].when - time.monotonic()))
        return IDLE_POLL_S

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> _Timer:
        timer = _Timer(time.monotonic() + delay_s, next(self._timer_ids), callback)
        heapq.heappush(self._timers, timer)
        return timer

    @staticmethod
    def cancel(timer: _Timer | None) -> None:
        if timer is not None:
            timer.callback = None

    def _run_timers(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0].when <= now:
            callback = heapq.heappop(self._timers).callback
            if callback is not None:
                callback()

    # Sink (called by the connections)

    def on_open(self, conn: ClientConnection) -> None:
        self.pending.discard(conn)
        self.sockets.add(conn)
        opening = self.opening
        if opening is not None:
            opening.connect_ms.append((time.perf_counter() - conn.started) * 1000.0)
            opening.inflight -= 1
            opening.finished += 1
        for frame in self.greetings.pop(conn, ()):
            conn.send_text(frame)

    def on_failed(self, conn: ClientConnection, kind: str) -> None:
        self._forget(conn)
        self.pending.discard(conn)
        self.greetings.pop(conn, None)
        self.failures += 1
        opening = self.opening
        if opening is not None:
            opening.failures[kind] += 1
            opening.inflight -= 1
            opening.finished += 1

    def on_message(self, conn: ClientConnection, payload: bytes, received_ns: int) -> None:
        if not payload.startswith(MAGIC):
            start = payload.find(MAGIC)  # inside another server's envelope
            if start < 0:
                self._on_other(conn, payload)
                return
            payload = payload[start : start + HEADER_BYTES]
        try:
            phase_id, seq, sent_ns = int(payload[PHASE]), int(payload[SEQ]), int(payload[SENT_NS])
        except ValueError:
            self.other_messages += 1
            return
        if conn.backlog is not None:
            self._on_backlog(conn, phase_id, seq)
            return
        phase = self.phase
        if phase is None or phase_id != phase.phase or seq >= phase.expected:
            self.stale_messages += 1
            return
        self.deliveries += 1
        phase.deliveries += 1
        phase.latencies.append(received_ns - sent_ns)
        phase.sent.append(sent_ns)
        if not phase.first_ns:
            phase.first_ns = received_ns
        if received_ns > phase.last_ns:  # noqa: PLR1730  (hot path: no call)
            phase.last_ns = received_ns
        bit = 1 << seq
        if conn.seen & bit:
            phase.duplicates += 1
            return
        conn.seen |= bit
        if seq < conn.last_seq:
            phase.out_of_order += 1
        else:
            conn.last_seq = seq
        conn.unique += 1
        if conn.unique == phase.expected:
            phase.complete += 1
            self._maybe_finish(phase)

    def _on_other(self, conn: ClientConnection, payload: bytes) -> None:
        reply = self.answers.get(payload)
        if reply is not None:
            conn.send_text(reply)
        self.other_messages += 1

    def on_closed(self, conn: ClientConnection) -> None:
        self._forget(conn)
        release = self.release
        if release is not None and conn in release.pending:
            code = str(conn.close_code) if conn.close_code is not None else "eof"
            release.closed_by_server[code] += 1
            release.pending.discard(conn)
            if not release.pending:
                self._finish_release(release, timed_out=False)
        if conn in self.sockets:  # the server closed it: we did not ask
            self.sockets.discard(conn)
            code = str(conn.close_code) if conn.close_code is not None else "eof"
            self.server_closes[code] += 1
            phase = self.phase
            if phase is not None and conn.unique < phase.expected:
                phase.closed_during += 1
                self._maybe_finish(phase)
        closing = self.closing
        if closing is not None and conn in closing.pending:
            closing.pending.discard(conn)
            if not closing.pending:
                self._finish_closing(closing)

    def want_write(self, conn: ClientConnection, wanted: bool) -> None:
        with contextlib.suppress(OSError):
            self.epoll.modify(conn.fd, READ_EVENTS | (EPOLLOUT if wanted else 0))

    def _forget(self, conn: ClientConnection) -> None:
        if self.conns.pop(conn.fd, None) is conn:
            with contextlib.suppress(OSError, ValueError):
                self.epoll.unregister(conn.fd)

    # commands

    def on_command(self) -> None:
        try:
            command = self.pipe.recv()
        except EOFError:  # the coordinator is gone: close everything and stop
            with contextlib.suppress(OSError, ValueError):
                self.epoll.unregister(self.pipe.fileno())
            self._stop_opening()
            self._unstall_all()
            self._close(list(self.sockets), 2.0, reply=False, then_exit=True)
            return
        if isinstance(command, OpenCmd):
            self._start_opening(command)
        elif isinstance(command, ArmCmd):
            self._arm(command)
        elif isinstance(command, CloseCmd):
            self._close(list(self.sockets)[: command.count], command.timeout_s, True, False)
        elif isinstance(command, StallCmd):
            self._stall(command)
        elif isinstance(command, ReleaseCmd):
            self._release(command)
        elif isinstance(command, StatusCmd):
            self.pipe.send(self._status())
        elif isinstance(command, QuitCmd):
            self._stop_opening()
            self._unstall_all()
            self._close(list(self.sockets), command.timeout_s, reply=True, then_exit=True)
        else:
            raise TypeError(f"unknown command {command!r}")

    def _stop_opening(self) -> None:
        """Quit during a ramp: no more connects, the ones in progress are aborted."""
        self.opening = None
        for conn in list(self.pending):
            conn.abort()

    def _start_opening(self, command: OpenCmd) -> None:
        count = min(command.count, MAX_SOCKETS_PER_PROCESS - len(self.sockets))
        opening = _Opening(command=command, count=count, started_at=time.monotonic())
        if count < command.count:
            opening.failures["over-process-limit"] += command.count - count
        self.opening = opening
        self.answers = dict(command.answers)
        self._ramp(opening)

    def _ramp(self, opening: _Opening) -> None:
        command = opening.command
        now = time.monotonic()
        due = min(opening.count, int((now - opening.started_at) * command.rate_per_s) + 1)
        while opening.started < due and opening.inflight < command.max_inflight:
            room = opening.started % command.rooms
            path = command.path.format(room=room)
            cookies = command.cookies
            cookie = cookies[opening.started % len(cookies)] if cookies else ""
            opening.started += 1
            try:
                conn = ClientConnection(
                    self, self.host, self.port, path, command.timeout_s, cookie=cookie
                )
            except OSError as exc:
                name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
                opening.failures[f"oserror-{name}"] += 1
                opening.finished += 1
                continue
            self.conns[conn.fd] = conn
            self.pending.add(conn)
            if command.hello:
                label = str(room).encode()
                self.greetings[conn] = [f.replace(b"{room}", label) for f in command.hello]
            self.epoll.register(conn.fd, READ_EVENTS | EPOLLOUT)
            opening.inflight += 1
        if now >= opening.next_sweep:
            opening.next_sweep = now + TIMEOUT_SWEEP_S
            perf_now = time.perf_counter()
            for conn in list(self.pending):
                conn.check_timeout(perf_now)
        if opening.finished >= opening.count:
            self.opening = None
            gc.collect()
            gc.freeze()  # long-lived connection objects: keep them out of later collections
            self.pipe.send(
                OpenResult(
                    worker=self.index,
                    opened=len(opening.connect_ms),
                    failures=dict(opening.failures),
                    connect_ms=opening.connect_ms,
                    elapsed_s=time.monotonic() - opening.started_at,
                )
            )

    def _arm(self, command: ArmCmd) -> None:
        for conn in self.sockets:
            conn.seen = 0
            conn.unique = 0
            conn.last_seq = -1
        phase = _Phase(phase=command.phase, expected=command.expected, conns=list(self.sockets))
        self.phase = phase
        self.pipe.send(Armed(worker=self.index, phase=command.phase, sockets=len(phase.conns)))
        phase.timer = self.call_later(command.timeout_s, lambda: self._finish(phase, True))
        self._maybe_finish(phase)

    def _maybe_finish(self, phase: _Phase) -> None:
        if phase.complete + phase.closed_during >= len(phase.conns):
            self._finish(phase, False)

    def _finish(self, phase: _Phase, timed_out: bool) -> None:
        if self.phase is not phase:
            return
        self.phase = None
        self.cancel(phase.timer)
        distinct = sum(conn.unique for conn in phase.conns)  # closed ones included
        lost = phase.expected * len(phase.conns) - distinct
        self.pipe.send(
            PhaseResult(
                worker=self.index,
                phase=phase.phase,
                sockets=len(phase.conns),
                expected=phase.expected,
                deliveries=phase.deliveries,
                distinct=distinct,
                duplicates=phase.duplicates,
                out_of_order=phase.out_of_order,
                lost=lost,
                closed_during=phase.closed_during,
                first_ns=phase.first_ns,
                last_ns=phase.last_ns,
                latencies_ns=phase.latencies.tobytes(),
                sent_ns=phase.sent.tobytes(),
                timed_out=timed_out,
            )
        )

    def _close(
        self, conns: list[ClientConnection], timeout_s: float, reply: bool, then_exit: bool
    ) -> None:
        closing = _Closing(conns=conns, pending=set(conns), reply=reply, then_exit=then_exit)
        self.closing = closing
        for conn in conns:
            self.sockets.discard(conn)
            conn.close()
        if not closing.pending:
            self._finish_closing(closing)
        else:
            closing.timer = self.call_later(timeout_s, lambda: self._finish_closing(closing))

    def _finish_closing(self, closing: _Closing) -> None:
        if self.closing is not closing:
            return
        self.closing = None
        self.cancel(closing.timer)
        aborted = 0
        for conn in closing.conns:
            if conn.state is not State.CLOSED:
                aborted += 1
                conn.abort()
        if closing.reply:
            self.pipe.send(
                CloseResult(worker=self.index, closed=len(closing.conns) - aborted, aborted=aborted)
            )
        if closing.then_exit:
            self.running = False

    # slow consumers

    def _stall(self, command: StallCmd) -> None:
        chosen = list(self.sockets)[: command.count]
        for conn in chosen:
            self.sockets.discard(conn)
            self._forget(conn)  # not polled: the kernel's buffers fill, then the server's queue
            with contextlib.suppress(OSError):
                conn.sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_RCVBUF, command.receive_buffer_bytes
                )
            conn.backlog = {}
            conn.unique = 0
            conn.last_seq = -1
            self.stalled.append(conn)
        self.pipe.send(Stalled(worker=self.index, sockets=len(chosen)))

    def _unstall(self, conn: ClientConnection) -> None:
        self.conns[conn.fd] = conn
        self.epoll.register(conn.fd, READ_EVENTS | EPOLLOUT)

    def _unstall_all(self) -> None:
        """Before a quit: stalled sockets are ordinary open sockets again."""
        for conn in self.stalled:
            conn.backlog = None
            self._unstall(conn)
            self.sockets.add(conn)
        self.stalled = []

    def _release(self, command: ReleaseCmd) -> None:
        expected = dict(command.expected)
        conns, self.stalled = self.stalled, []
        release = _Release(
            expected=expected,
            total=sum(expected.values()),
            conns=conns,
            pending=set(conns),
            started_at=time.monotonic(),
        )
        self.release = release
        for conn in conns:
            self._unstall(conn)
        if not release.total:
            release.pending.clear()
        if release.pending:
            release.timer = self.call_later(
                command.timeout_s, lambda: self._finish_release(release, timed_out=True)
            )
        else:
            self._finish_release(release, timed_out=False)

    def _on_backlog(self, conn: ClientConnection, phase_id: int, seq: int) -> None:
        release = self.release
        backlog = conn.backlog
        assert backlog is not None
        if release is None or seq >= release.expected.get(phase_id, 0):
            self.stale_messages += 1
            return
        seen = backlog.get(phase_id, 0)
        bit = 1 << seq
        if seen & bit:
            release.duplicates += 1
            return
        backlog[phase_id] = seen | bit
        position = phase_id * (MAX_SEQ + 1) + seq  # phases are published one after the other
        if position < conn.last_seq:
            release.out_of_order += 1
        else:
            conn.last_seq = position
        conn.unique += 1
        if conn.unique == release.total and conn in release.pending:
            release.pending.discard(conn)
            if not release.pending:
                self._finish_release(release, timed_out=False)

    def _finish_release(self, release: _Release, *, timed_out: bool) -> None:
        if self.release is not release:
            return
        self.release = None
        self.cancel(release.timer)
        lost = 0
        for conn in release.conns:
            conn.backlog = None
            if conn.state is State.OPEN:
                lost += release.total - conn.unique
                self.sockets.add(conn)
        self.pipe.send(
            Released(
                worker=self.index,
                sockets=len(release.conns),
                complete=sum(1 for conn in release.conns if conn.unique == release.total),
                closed_by_server=dict(release.closed_by_server),
                lost=lost,
                duplicates=release.duplicates,
                out_of_order=release.out_of_order,
                drain_s=round(time.monotonic() - release.started_at, 3),
                timed_out=timed_out,
            )
        )

    def _status(self) -> Status:
        return Status(
            worker=self.index,
            open=len(self.sockets),
            stalled=len(self.stalled),
            server_closes=dict(self.server_closes),
            pings=sum(conn.pings for conn in self.sockets),
            stale_messages=self.stale_messages,
            other_messages=self.other_messages,
        )


def main(pipe: Connection, index: int, host: str, port: int, progress: Any = None) -> None:
    """Entry point of a client process (``multiprocessing`` target); ``progress`` is the shared
    array of ``PROGRESS_FIELDS`` slots per process, or None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the coordinator quits us in order
    worker = Worker(pipe, index, host, port, progress)
    pipe.send(Ready(worker=index, pid=os.getpid()))
    try:
        worker.run()
    finally:
        for conn in list(worker.conns.values()):
            conn.sock.close()
        worker.epoll.close()
        pipe.close()
