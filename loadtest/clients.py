"""The client processes (``loadtest.worker``) seen from the coordinator: start them, send each a
command, collect their replies, and read their live progress.

Every command gets exactly one reply per process (see ``worker``); a process that dies or does
not answer in time raises ``BenchError``. Progress (sockets open, deliveries, connect failures)
comes from a shared array the processes write after every poll, so reading it costs them
nothing and never waits for a busy process.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for_pipes
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar

from . import messages, worker
from .stats import summarize_ms, summarize_ns_as_ms, timeline

CONNECT_TIMEOUT_S = 15.0
MAX_INFLIGHT_HANDSHAKES = 200  # per client process
CLOSE_TIMEOUT_S = 10.0
WORKER_START_TIMEOUT_S = 30.0
# A stalled socket's receive buffer: small, so the server's own queue is what fills (the kernel
# doubles the value and keeps a floor of about 4.6 KiB).
STALLED_RECEIVE_BUFFER_BYTES = 4096

Reply = TypeVar("Reply")


class BenchError(Exception):
    """The run cannot go on (stack unreachable, a client process died, a wait timed out)."""


@dataclass(frozen=True)
class Progress:
    """What all client processes hold and have received so far."""

    open: int
    deliveries: int
    failures: int


@dataclass(frozen=True)
class Protocol:
    """What a socket says besides reading: frames sent when it opens (a subscribe command,
    ``{room}`` replaced), and replies to application-level pings (frame -> reply)."""

    hello: tuple[bytes, ...] = ()
    answers: tuple[tuple[bytes, bytes], ...] = ()


def split(total: int, parts: int) -> list[int]:
    """``total`` as ``parts`` integers that differ by at most one."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


@dataclass
class Client:
    index: int
    process: BaseProcess
    pipe: Connection
    pid: int = 0


class ClientPool:
    """The client processes and the request/reply exchange with them."""

    def __init__(self, count: int, host: str, port: int, protocol: Protocol = Protocol()) -> None:
        context = multiprocessing.get_context("spawn")
        self.protocol = protocol
        self.progress_slots = context.RawArray("q", count * worker.PROGRESS_FIELDS)
        self.clients: list[Client] = []
        for index in range(count):
            ours, theirs = context.Pipe()
            process = context.Process(
                target=worker.main,
                args=(theirs, index, host, port, self.progress_slots),
                name=f"loadtest-client-{index}",
                daemon=True,
            )
            self.clients.append(Client(index, process, ours))
        for client in self.clients:
            client.process.start()
        for client, ready in zip(
            self.clients,
            self.collect(range(count), messages.Ready, WORKER_START_TIMEOUT_S),
            strict=True,
        ):
            client.pid = ready.pid

    @property
    def pids(self) -> list[int]:
        return [client.pid for client in self.clients]

    def progress(self) -> Progress:
        """Totals over every process, as of their last poll (a snapshot, no round trip)."""
        slots = list(self.progress_slots)
        fields = worker.PROGRESS_FIELDS
        return Progress(
            open=sum(slots[worker.PROGRESS_OPEN :: fields]),
            deliveries=sum(slots[worker.PROGRESS_DELIVERIES :: fields]),
            failures=sum(slots[worker.PROGRESS_FAILURES :: fields]),
        )

    def send(self, index: int, command: object) -> None:
        self.clients[index].pipe.send(command)

    def ask(
        self,
        commands: Sequence[object | None],
        expect: type[Reply],
        timeout_s: float,
    ) -> list[Reply]:
        """Send one command to each client (None: skip that one); their replies, in order."""
        asked = []
        for index, command in enumerate(commands):
            if command is not None:
                self.send(index, command)
                asked.append(index)
        return self.collect(asked, expect, timeout_s)

    def collect(
        self,
        indices: Sequence[int] | range,
        expect: type[Reply],
        timeout_s: float,
        skip_others: bool = False,
    ) -> list[Reply]:
        deadline = time.monotonic() + timeout_s
        waiting = {self.clients[i].pipe: i for i in indices}
        replies: dict[int, Reply] = {}
        while waiting:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                late = sorted(waiting.values())
                raise BenchError(f"client processes {late} sent no {expect.__name__} in time")
            for pipe in wait_for_pipes(list(waiting), timeout=remaining):
                assert isinstance(pipe, Connection)
                index = waiting.pop(pipe)
                try:
                    reply = pipe.recv()
                except EOFError as exc:
                    raise BenchError(f"client process {index} died") from exc
                if not isinstance(reply, expect):
                    if skip_others:  # a late reply to an interrupted command
                        waiting[pipe] = index
                        continue
                    raise BenchError(f"client {index}: expected {expect.__name__}, got {reply!r}")
                replies[index] = reply
        return [replies[i] for i in sorted(replies)]

    def status(self) -> list[messages.Status]:
        return self.ask([messages.StatusCmd()] * len(self.clients), messages.Status, 10.0)

    def open(
        self,
        path: str,
        total: int,
        ramp_per_s: float,
        *,
        rooms: int = 1,
        cookies: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """Open ``total`` sockets on ``path``, spread evenly over the clients, at ``ramp_per_s``
        in total; what happened (opened, failures by kind, connect-to-101 times). A ``{room}``
        in ``path`` spreads each client's sockets evenly over ``rooms`` paths; ``cookies`` log
        the sockets in, round robin (one per room: each room's sockets are that room's user)."""
        counts = split(total, len(self.clients))
        rate = ramp_per_s / len(self.clients)
        commands = [
            messages.OpenCmd(
                path=path,
                count=count,
                rate_per_s=rate,
                max_inflight=MAX_INFLIGHT_HANDSHAKES,
                timeout_s=CONNECT_TIMEOUT_S,
                rooms=rooms,
                cookies=cookies,
                hello=self.protocol.hello,
                answers=self.protocol.answers,
            )
            if count
            else None
            for count in counts
        ]
        timeout_s = total / ramp_per_s + CONNECT_TIMEOUT_S + 30.0
        replies = self.ask(commands, messages.OpenResult, timeout_s)
        failures = Counter[str]()
        connect_ms: list[float] = []
        for reply in replies:
            failures.update(reply.failures)
            connect_ms.extend(reply.connect_ms)
        opened = sum(r.opened for r in replies)
        elapsed_s = max(r.elapsed_s for r in replies)
        return {
            "requested": total,
            "opened": opened,
            "failures": sum(failures.values()),
            "failures_by_kind": dict(failures),
            "ramp_requested_per_s": ramp_per_s,
            "ramp_achieved_per_s": round(total / elapsed_s, 1) if elapsed_s else None,
            "elapsed_s": round(elapsed_s, 2),
            "connect_ms": summarize_ms(connect_ms),
        }

    def close_down_to(self, keep: int) -> None:
        """Close sockets, taking from the clients that hold the most, until ``keep`` are left."""
        opens = [s.open for s in self.status()]
        to_close = [0] * len(opens)
        for _ in range(max(0, sum(opens) - keep)):
            index = max(range(len(opens)), key=lambda i: opens[i] - to_close[i])
            to_close[index] += 1
        self.ask(
            [
                messages.CloseCmd(count=n, timeout_s=CLOSE_TIMEOUT_S) if n else None
                for n in to_close
            ],
            messages.CloseResult,
            CLOSE_TIMEOUT_S + 10.0,
        )

    def stall(self, count: int) -> int:
        """``count`` open sockets, spread over the processes, stop reading; how many did."""
        commands = [
            messages.StallCmd(count=n, receive_buffer_bytes=STALLED_RECEIVE_BUFFER_BYTES)
            if n
            else None
            for n in split(count, len(self.clients))
        ]
        return sum(r.sockets for r in self.ask(commands, messages.Stalled, 10.0))

    def release(self, expected: Sequence[tuple[int, int]], timeout_s: float) -> dict[str, Any]:
        """The stalled sockets read again; what they got of the ``(phase, messages)`` published
        while they were stalled (complete, closed by the server and how, lost)."""
        command = messages.ReleaseCmd(expected=tuple(expected), timeout_s=timeout_s)
        replies = self.ask([command] * len(self.clients), messages.Released, timeout_s + 10.0)
        closes = Counter[str]()
        for reply in replies:
            closes.update(reply.closed_by_server)
        return {
            "sockets": sum(r.sockets for r in replies),
            "messages_each": sum(messages for _, messages in expected),
            "complete": sum(r.complete for r in replies),
            "closed_by_server": dict(closes),
            "lost": sum(r.lost for r in replies),
            "duplicates": sum(r.duplicates for r in replies),
            "out_of_order": sum(r.out_of_order for r in replies),
            "drain_s": max((r.drain_s for r in replies), default=0.0),
            "timed_out_clients": [r.worker for r in replies if r.timed_out],
        }

    def arm(self, phase: int, expected: int, timeout_s: float) -> int:
        """Start counting ``phase`` on every open socket; the number of sockets armed."""
        command = messages.ArmCmd(phase=phase, expected=expected, timeout_s=timeout_s)
        armed = self.ask([command] * len(self.clients), messages.Armed, 10.0)
        return sum(a.sockets for a in armed)

    def gather(self, timeout_s: float, bucket_s: float) -> dict[str, Any]:
        """Wait for every client's ``PhaseResult``; the phase's totals, latency summary and
        time series (``bucket_s`` buckets)."""
        results = self.collect(range(len(self.clients)), messages.PhaseResult, timeout_s + 15.0)
        latencies: array[int] = array("q")
        sent: array[int] = array("q")
        for result in results:
            latencies.frombytes(result.latencies_ns)
            sent.frombytes(result.sent_ns)
        return {
            "sockets": sum(r.sockets for r in results),
            "deliveries": sum(r.deliveries for r in results),
            "distinct": sum(r.distinct for r in results),
            "lost": sum(r.lost for r in results),
            "duplicates": sum(r.duplicates for r in results),
            "out_of_order": sum(r.out_of_order for r in results),
            "closed_during": sum(r.closed_during for r in results),
            "timed_out_clients": [r.worker for r in results if r.timed_out],
            "first_ns": min((r.first_ns for r in results if r.first_ns), default=0),
            "last_ns": max((r.last_ns for r in results), default=0),
            "latency": summarize_ns_as_ms(latencies),
            "over_time": timeline(sent, latencies, bucket_s),
        }

    def shutdown(self) -> list[messages.CloseResult]:
        """Close every socket (closing handshake), stop the processes; never raises."""
        results: list[messages.CloseResult] = []
        alive = [c for c in self.clients if c.process.is_alive()]
        for client in alive:
            with contextlib.suppress(OSError, ValueError):
                client.pipe.send(messages.QuitCmd(timeout_s=CLOSE_TIMEOUT_S))
        with contextlib.suppress(BenchError, OSError):
            results = self.collect(
                [c.index for c in alive],
                messages.CloseResult,
                CLOSE_TIMEOUT_S + 10.0,
                skip_others=True,
            )
        for client in self.clients:
            client.process.join(5.0)
            if client.process.is_alive():
                client.process.terminate()
                client.process.join(5.0)
        return results
