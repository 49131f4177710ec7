"""A client process: holds up to ``MAX_SOCKETS_PER_PROCESS`` websockets and measures deliveries.

The coordinator (``loadtest.bench``) sends commands over a ``multiprocessing`` pipe; each command
gets exactly one reply. The process runs one asyncio loop; the pipe is watched with
``loop.add_reader``, so commands and socket traffic share the loop without threads.

Commands and what is measured:

* ``OpenCmd``: open ``count`` sockets on one path at ``rate_per_s`` (a schedule, not a burst:
  socket ``i`` starts at ``i / rate_per_s`` seconds, at most ``max_inflight`` handshakes at a
  time). Reply ``OpenResult``: sockets opened, failures by kind (``http-503``, ``timeout``,
  ``refused``, ``oserror-EMFILE``...), the connect-to-101 time of every success, elapsed time.
* ``ArmCmd``: start a phase on every open socket: from now on, payloads of that phase are
  counted per socket. Reply ``Armed`` at once; later, unprompted, ``PhaseResult`` when every
  armed socket has all ``expected`` messages (or closed), or when ``timeout_s`` passes.
  Per socket: a bit per ``seq`` seen (a second copy is a duplicate), the highest ``seq`` so far
  (a lower unseen ``seq`` arriving later is out of order), and lost = expected - distinct seen.
  Per delivery: ``received_ns - sent_ns`` (receive time taken once per inbound TCP chunk).
* ``CloseCmd``: close ``count`` sockets with the closing handshake (1000), wait up to
  ``timeout_s`` for the server to finish it, abort what is left. Reply ``CloseResult``.
* ``StatusCmd``: reply ``Status`` (open sockets, closes the server started, pings answered).
* ``QuitCmd``: close everything as ``CloseCmd`` does, reply ``CloseResult``, exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import os
import signal
import time
from array import array
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from .payload import MAGIC
from .wsclient import ClientConnection, HandshakeError, handshake_request

MAX_SOCKETS_PER_PROCESS = 5000  # the open-files limit is 20,000 per process; leave headroom
RAMP_TICK_S = 0.005  # how often the ramp schedule starts the connections that are due
CLOSE_POLL_S = 0.05


# Commands (coordinator -> worker)


@dataclass(frozen=True)
class OpenCmd:
    path: str
    count: int
    rate_per_s: float
    max_inflight: int
    timeout_s: float


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
    timed_out: bool


@dataclass
class CloseResult:
    worker: int
    closed: int  # the closing handshake completed
    aborted: int  # still open at the timeout: aborted


@dataclass
class Status:
    worker: int
    open: int
    server_closes: dict[str, int]  # close code (or "eof") -> count, closes we did not ask for
    pings: int  # server pings answered, over all open sockets
    stale_messages: int  # payloads of a phase that is not armed (late copies)
    other_messages: int  # not our payload format (heartbeats...)


@dataclass
class _Phase:
    phase: int
    expected: int
    conns: list[ClientConnection]
    deliveries: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    complete: int = 0
    closed_during: int = 0
    first_ns: int = 0
    last_ns: int = 0
    latencies: array[int] = field(default_factory=lambda: array("q"))
    timer: asyncio.TimerHandle | None = None


class Worker:
    """The sink of every socket of this process, and the command loop."""

    def __init__(self, pipe: Connection, index: int, host: str, port: int) -> None:
        self.pipe = pipe
        self.index = index
        self.host = host
        self.port = port
        self.loop = asyncio.get_running_loop()
        self.sockets: set[ClientConnection] = set()
        self.phase: _Phase | None = None
        self.server_closes: Counter[str] = Counter()
        self.stale_messages = 0
        self.other_messages = 0
        self.done: asyncio.Future[None] = self.loop.create_future()
        self._tasks: set[asyncio.Task[None]] = set()

    # MessageSink

    def on_message(self, conn: ClientConnection, payload: bytes, received_ns: int) -> None:
        phase = self.phase
        if not payload.startswith(MAGIC):
            self.other_messages += 1
            return
        fields = payload.split(b" ", 4)
        try:
            phase_id, seq, sent_ns = int(fields[1]), int(fields[2]), int(fields[3])
        except (IndexError, ValueError):
            self.other_messages += 1
            return
        if phase is None or phase_id != phase.phase or not 0 <= seq < phase.expected:
            self.stale_messages += 1
            return
        phase.deliveries += 1
        phase.latencies.append(received_ns - sent_ns)
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

    def on_closed(self, conn: ClientConnection) -> None:
        if conn in self.sockets:  # we did not ask for it
            self.sockets.discard(conn)
            code = str(conn.close_code) if conn.close_code is not None else "eof"
            self.server_closes[code] += 1
            phase = self.phase
            if phase is not None and conn.unique < phase.expected:
                phase.closed_during += 1
                self._maybe_finish(phase)

    # commands

    def on_command(self) -> None:
        try:
            command = self.pipe.recv()
        except EOFError:  # the coordinator is gone: stop
            self._spawn(self._quit(QuitCmd(timeout_s=2.0), reply=False))
            self.loop.remove_reader(self.pipe.fileno())
            return
        if isinstance(command, OpenCmd):
            self._spawn(self._open(command))
        elif isinstance(command, ArmCmd):
            self._arm(command)
        elif isinstance(command, CloseCmd):
            self._spawn(self._close_some(command))
        elif isinstance(command, StatusCmd):
            self.pipe.send(self._status())
        elif isinstance(command, QuitCmd):
            self.loop.remove_reader(self.pipe.fileno())
            self._spawn(self._quit(command, reply=True))
        else:
            raise TypeError(f"unknown command {command!r}")

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = self.loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _open(self, command: OpenCmd) -> None:
        started_at = self.loop.time()
        failures: Counter[str] = Counter()
        connect_ms: list[float] = []
        inflight = asyncio.Semaphore(command.max_inflight)
        pending: set[asyncio.Task[None]] = set()
        count = min(command.count, MAX_SOCKETS_PER_PROCESS - len(self.sockets))
        if count < command.count:
            failures["over-process-limit"] += command.count - count
        started = 0
        while started < count:
            due = min(count, int((self.loop.time() - started_at) * command.rate_per_s) + 1)
            while started < due:
                await inflight.acquire()
                task = self.loop.create_task(
                    self._open_one(command, inflight, failures, connect_ms)
                )
                pending.add(task)
                task.add_done_callback(pending.discard)
                started += 1
            await asyncio.sleep(RAMP_TICK_S)
        if pending:
            await asyncio.gather(*pending)
        gc.collect()
        gc.freeze()  # long-lived connection objects: keep them out of later collections
        self.pipe.send(
            OpenResult(
                worker=self.index,
                opened=len(connect_ms),
                failures=dict(failures),
                connect_ms=connect_ms,
                elapsed_s=self.loop.time() - started_at,
            )
        )

    async def _open_one(
        self,
        command: OpenCmd,
        inflight: asyncio.Semaphore,
        failures: Counter[str],
        connect_ms: list[float],
    ) -> None:
        """One connection and handshake; a success joins ``self.sockets``, a failure is counted
        by kind. Releases ``inflight`` when done."""
        holder: list[ClientConnection] = []
        request, accept = handshake_request(f"{self.host}:{self.port}", command.path)

        def factory() -> ClientConnection:
            conn = ClientConnection(self, request, accept)
            holder.append(conn)
            return conn

        begin = time.perf_counter()
        try:
            async with asyncio.timeout(command.timeout_s):
                await self.loop.create_connection(factory, self.host, self.port)
                await holder[0].handshake
        except HandshakeError as exc:
            failures[exc.kind] += 1
        except TimeoutError:
            failures["timeout"] += 1
            if holder:
                holder[0].abort()
        except ConnectionRefusedError:
            failures["refused"] += 1
        except OSError as exc:
            name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
            failures[f"oserror-{name}"] += 1
        else:
            connect_ms.append((time.perf_counter() - begin) * 1000.0)
            self.sockets.add(holder[0])
        finally:
            inflight.release()

    def _arm(self, command: ArmCmd) -> None:
        conns = list(self.sockets)
        for conn in conns:
            conn.seen = 0
            conn.unique = 0
            conn.last_seq = -1
        phase = _Phase(phase=command.phase, expected=command.expected, conns=conns)
        self.phase = phase
        self.pipe.send(Armed(worker=self.index, phase=command.phase, sockets=len(conns)))
        phase.timer = self.loop.call_later(command.timeout_s, self._finish, phase, True)
        self._maybe_finish(phase)

    def _maybe_finish(self, phase: _Phase) -> None:
        if phase.complete + phase.closed_during >= len(phase.conns):
            self._finish(phase, False)

    def _finish(self, phase: _Phase, timed_out: bool) -> None:
        if self.phase is not phase:
            return
        self.phase = None
        if phase.timer is not None:
            phase.timer.cancel()
        distinct = sum(conn.unique for conn in phase.conns)
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
                lost=phase.expected * len(phase.conns) - distinct,
                closed_during=phase.closed_during,
                first_ns=phase.first_ns,
                last_ns=phase.last_ns,
                latencies_ns=phase.latencies.tobytes(),
                timed_out=timed_out,
            )
        )

    async def _close_conns(self, conns: list[ClientConnection], timeout_s: float) -> CloseResult:
        for conn in conns:
            self.sockets.discard(conn)
            conn.close()
        deadline = self.loop.time() + timeout_s
        while self.loop.time() < deadline and not all(conn.closed for conn in conns):
            await asyncio.sleep(CLOSE_POLL_S)
        aborted = 0
        for conn in conns:
            if not conn.closed:
                aborted += 1
                conn.abort()
        await asyncio.sleep(0)  # let connection_lost callbacks run
        return CloseResult(worker=self.index, closed=len(conns) - aborted, aborted=aborted)

    async def _close_some(self, command: CloseCmd) -> None:
        conns = list(self.sockets)[: command.count]
        self.pipe.send(await self._close_conns(conns, command.timeout_s))

    async def _quit(self, command: QuitCmd, reply: bool) -> None:
        result = await self._close_conns(list(self.sockets), command.timeout_s)
        if reply:
            self.pipe.send(result)
        if not self.done.done():
            self.done.set_result(None)

    def _status(self) -> Status:
        return Status(
            worker=self.index,
            open=len(self.sockets),
            server_closes=dict(self.server_closes),
            pings=sum(conn.pings for conn in self.sockets),
            stale_messages=self.stale_messages,
            other_messages=self.other_messages,
        )


async def _serve(pipe: Connection, index: int, host: str, port: int) -> None:
    worker = Worker(pipe, index, host, port)
    worker.loop.add_reader(pipe.fileno(), worker.on_command)
    pipe.send(Ready(worker=index, pid=os.getpid()))
    await worker.done


def main(pipe: Connection, index: int, host: str, port: int) -> None:
    """Entry point of a client process (``multiprocessing`` target)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the coordinator quits us in order
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(pipe, index, host, port))
    pipe.close()
