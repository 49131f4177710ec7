"""``python -m loadtest.checker``: hunts for gaps, duplicates and reorders in wsloop's recovery,
in the spirit of Jepsen: a numbered sequence published through ``wsloop.publish``, clients that
drop their connections at random moments and come back with ``since=``, faults injected while
it runs, and every client's received sequence checked against the history Redis kept.

It starts a stack of its own (devstack on free loopback ports, in a temporary directory, the
deployment of ``--deployment``), then, at once:

* a publisher thread sends ``0``, ``1``, ``2``... on one facility at ``--rate`` messages/s, with
  a burst of ``--burst-size`` back to back every ``--burst-every`` seconds, and logs how each
  call ended (confirmed, refused, or timed out: maybe applied);
* ``--clients`` envelope clients (``checker_clients``, in processes of their own) connect, half
  of them with the position a page rendered now would carry (``wsloop.position``), half without;
  each drops its connection about every ``clients x duration / --reconnects`` seconds (a clean
  close, a FIN or an RST without close frame) and comes back with its last id;
* every ``--fault-every`` seconds the next of ``--faults`` (``loadtest.faults``): Redis restarted,
  Redis paused (SIGSTOP) for ``--pause`` seconds, the websocket worker SIGKILLed, the pool
  reloaded;
* a reader follows the facility's Redis stream, which is the order of truth.

When everything is published the clients are told the last position and read until they have
it; then ``checker_analysis`` compares. Exit status 0 when nothing was found, 1 when anything
was (the findings, with examples, are in the JSON and on stdout), 2 when the run could not be
done. ``--quick`` is the size CI runs on every deployment.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import multiprocessing
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import redis

from devstack.stack import Deployment, Stack, StackConfig
from wsloop.history import StreamId

from . import checker_clients
from .checker_analysis import ClientLog, Entry, Published, Truth, analyse
from .checker_clients import Begin, ClientSpec, Finish
from .faults import Fault, Injected, inject
from .report import publish as write_result
from .stack_django import use_stack_settings

CLIENTS_PER_PROCESS = 50
TRUTH_POLL_S = 0.05
TRUTH_PAGE = 1000
FINISH_TIMEOUT_S = 60.0
CATCH_UP_TIMEOUT_S = 30.0
PREFIX = "chk"  # WSLOOP_PREFIX of the checker's own stack


@dataclass
class Options:
    clients: int = 100
    messages: int = 100_000
    rate: float = 500.0
    burst_every_s: float = 5.0
    burst_size: int = 200
    reconnects: int = 10_000
    faults: tuple[Fault, ...] = tuple(Fault)
    fault_every_s: float = 10.0
    pause_s: float = 10.0
    seed: int = 1
    history_length: int = 1000

    @property
    def duration_s(self) -> float:
        """About how long publishing takes: the steady rate plus the bursts."""
        bursts_per_s = self.burst_size / self.burst_every_s if self.burst_every_s else 0.0
        return self.messages / (self.rate + bursts_per_s)

    @property
    def lifetime_s(self) -> float:
        """The mean time a client keeps a connection, to reach ``reconnects`` in all."""
        return max(0.05, self.clients * self.duration_s / max(1, self.reconnects))


QUICK = Options(
    clients=20,
    messages=2000,
    rate=100.0,
    burst_every_s=4.0,
    burst_size=100,
    reconnects=600,
    faults=(Fault.REDIS_RESTART, Fault.WORKER_KILL),
    fault_every_s=6.0,
)


@dataclass
class _Shared:
    """What the threads of one run fill in."""

    published: list[Published] = field(default_factory=list)
    truth: list[Entry] = field(default_factory=list)
    faults: list[Injected] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    publishing: threading.Event = field(default_factory=threading.Event)


def run(stack: Stack, options: Options, facility: str | None = None) -> dict[str, Any]:
    """One check against ``stack``, with Django in this process configured to it (``wsloop``'s
    settings: the stack's Redis and prefix). The result, ``analysis`` and all."""
    import wsloop  # noqa: PLC0415 (Django is set up by the caller)
    from wsloop import conf  # noqa: PLC0415

    facility = facility or f"checker-{time.strftime('%H%M%S')}-{os.getpid()}"
    prefix = conf.load().channel_prefix
    shared = _Shared()
    started = time.monotonic()
    rng = random.Random(options.seed)
    specs = tuple(
        ClientSpec(f"c{n}", wsloop.position(facility) if n % 2 == 0 else None, rng.randrange(2**31))
        for n in range(options.clients)
    )
    begin = Begin(
        stack.config.base_url,
        f"/ws/{facility}?subscribe-broadcast&envelope",
        options.lifetime_s,
        specs,
    )
    reader = _TruthReader(stack.config.redis_url, prefix, facility, shared)
    reader.start()
    with _client_processes(begin) as pipes:
        shared.publishing.set()
        faults = threading.Thread(target=_inject_faults, args=(stack, options, shared))
        faults.start()
        _publish_all(wsloop, facility, options, shared)
        shared.publishing.clear()
        faults.join()
        last_id = reader.caught_up(CATCH_UP_TIMEOUT_S)
        logs = _finish(pipes, last_id)
    reader.stop()
    truth = Truth(shared.truth, shared.published)
    analysis = analyse(truth, shared.published, logs, options.history_length)
    return {
        "tool": "loadtest.checker",
        "started_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "deployment": str(stack.config.deployment),
        "parameters": {**asdict(options), "faults": [str(f) for f in options.faults]},
        "facility": facility,
        "published": dict(Counter(p.outcome for p in shared.published)),
        "history_entries": len(shared.truth),
        **_client_figures(logs),
        "faults": [
            {
                "fault": str(f.fault),
                "at_s": round(f.started - started, 2),
                "recovered_in_s": round(f.ended - f.started, 2),
            }
            for f in shared.faults
        ],
        "resyncs_after": _resyncs_after_faults(logs, shared.faults, started),
        "errors": shared.errors,
        "analysis": analysis.summary(),
        "elapsed_s": round(time.monotonic() - started, 1),
    }


class _TruthReader(threading.Thread):
    """Follows the facility's stream from its first entry, keeping the broadcast channel's
    entries in order; Redis errors (a restart, a pause) are waited out."""

    def __init__(self, redis_url: str, prefix: str, facility: str, shared: _Shared) -> None:
        super().__init__(daemon=True)
        self._client = redis.Redis.from_url(redis_url, socket_timeout=2)
        self._key = f"{prefix}history:{facility}"
        self._channel = f"{prefix}broadcast:{facility}".encode()
        self._shared = shared
        self._cursor = "-"
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.is_set():
            if self._read_page() < TRUTH_PAGE:
                self._stopping.wait(TRUTH_POLL_S)

    def _read_page(self) -> int:
        low = "-" if self._cursor == "-" else f"({self._cursor}"
        try:
            entries = self._client.xrange(self._key, min=low, count=TRUTH_PAGE)
        except (redis.RedisError, OSError):
            return 0
        for entry_id, fields in entries:
            self._cursor = entry_id.decode()
            if fields[b"c"] == self._channel:
                self._shared.truth.append(Entry(StreamId.parse(self._cursor), int(fields[b"d"])))
        return len(entries)

    def caught_up(self, timeout_s: float) -> str:
        """Wait until the reader has the stream's newest entry; the last message's position."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError, OSError):
                epoch = self._client.get(f"{self._key}:epoch")
                newest = self._client.xrevrange(self._key, count=1)
                if epoch and newest and newest[0][0].decode() == self._cursor:
                    last = self._shared.truth[-1].id if self._shared.truth else self._cursor
                    return f"{epoch.decode()}:{last}"
            time.sleep(TRUTH_POLL_S)
        raise TimeoutError("the history reader did not catch up with the stream")

    def stop(self) -> None:
        self._stopping.set()
        self.join()


def _publish_all(wsloop: Any, facility: str, options: Options, shared: _Shared) -> None:
    """``0``..``messages-1`` at ``rate``, a burst of ``burst_size`` every ``burst_every_s``. A
    publish that had to wait (a fault) is not made up for in a rush: the pace resumes."""
    period = 1 / options.rate
    next_at = time.monotonic()
    next_burst = next_at + options.burst_every_s
    burst_left = 0
    for number in range(options.messages):
        now = time.monotonic()
        if burst_left == 0 and options.burst_size and now >= next_burst:
            burst_left, next_burst = options.burst_size, now + options.burst_every_s
        if burst_left:
            burst_left -= 1
            next_at = now + period
        elif next_at > now:
            time.sleep(next_at - now)
            next_at += period
        else:
            next_at = now + period
        outcome = _publish(wsloop, facility, number)
        shared.published.append(Published(number, outcome, time.monotonic()))


def _publish(wsloop: Any, facility: str, number: int) -> str:
    try:
        wsloop.publish(facility, str(number), broadcast=True, expire=0)
    except wsloop.PublishError as exc:
        return "unknown" if exc.maybe_published else "refused"
    return "ok"


def _inject_faults(stack: Stack, options: Options, shared: _Shared) -> None:
    """The faults in turn, one every ``fault_every_s`` while the publisher runs."""
    number = 0
    while options.faults:
        deadline = time.monotonic() + options.fault_every_s
        while time.monotonic() < deadline:
            if not shared.publishing.is_set():
                return
            time.sleep(0.05)
        fault = options.faults[number % len(options.faults)]
        number += 1
        try:
            shared.faults.append(inject(stack, fault, options.pause_s))
        except Exception as exc:  # a fault that breaks the stack ends the run's faults
            shared.errors.append(f"{fault}: {exc!r}")
            return


@contextlib.contextmanager
def _client_processes(begin: Begin) -> Any:
    context = multiprocessing.get_context("spawn")
    pipes: list[Connection] = []
    processes = []
    count = max(1, -(-len(begin.clients) // CLIENTS_PER_PROCESS))
    try:
        for index in range(count):
            share = Begin(begin.base_url, begin.path, begin.lifetime_s, begin.clients[index::count])
            ours, theirs = context.Pipe()
            process = context.Process(
                target=checker_clients.main, args=(theirs, share), daemon=True
            )
            process.start()
            pipes.append(ours)
            processes.append(process)
        yield pipes
    finally:
        for process in processes:
            process.join(timeout=FINISH_TIMEOUT_S)
            if process.is_alive():
                process.kill()


def _finish(pipes: list[Connection], last_id: str) -> list[ClientLog]:
    for pipe in pipes:
        pipe.send(Finish(last_id, FINISH_TIMEOUT_S))
    logs: list[ClientLog] = []
    for pipe in pipes:
        if not pipe.poll(FINISH_TIMEOUT_S + 10):
            raise TimeoutError("a client process did not report")
        logs.extend(pipe.recv())
    return logs


def _resyncs_after_faults(
    logs: Sequence[ClientLog], faults: Sequence[Injected], started: float
) -> dict[str, int]:
    """Resyncs by the last fault that began before each (``none``: before any fault)."""
    counts: Counter[str] = Counter()
    for event in (e for log in logs for e in log.events if e.kind == "resync"):
        before = [f for f in faults if f.started <= event.at]
        counts[str(before[-1].fault) if before else "none"] += 1
    return dict(counts)


def _client_figures(logs: Sequence[ClientLog]) -> dict[str, Any]:
    events = [event for log in logs for event in log.events]
    closes = Counter(str(e.detail) for e in events if e.kind == "closed")
    closes.pop(checker_clients.FINISHED, None)
    drops = {how: closes.pop(how, 0) for how in checker_clients.DROPS}
    controls = Counter(e.kind for e in events if e.kind in ("position", "recovered", "resync"))
    return {
        "clients": len(logs),
        "connects": sum(1 for e in events if e.kind == "connect"),
        "drops": drops,
        "reconnects": sum(drops.values()) + sum(closes.values()),
        "server_closes": dict(closes),
        "failed_connects": dict(Counter(str(e.detail) for e in events if e.kind == "failed")),
        "controls": dict(controls),
        "deliveries": sum(len(log.received) for log in logs),
    }


def render(result: dict[str, Any]) -> str:
    analysis = result["analysis"]
    violations = {kind: n for kind, n in analysis["violations"].items() if n}
    faults = ", ".join(f"{f['fault']} at {f['at_s']} s" for f in result["faults"]) or "none"
    lines = [
        f"checker on {result['deployment']}: {result['clients']} clients, "
        f"{result['history_entries']:,} messages in history (publishes: {result['published']})",
        f"reconnects: {result['reconnects']:,} ({result['drops']} by the clients, "
        f"{result['server_closes']} by the server); deliveries: {result['deliveries']:,}",
        f"faults: {faults}; {result['elapsed_s']} s in all",
        f"resyncs: {analysis['resyncs'] or 'none'} "
        f"({len(analysis['explained_resyncs'])} explained; after {result['resyncs_after']})",
        "verdict: " + ("nothing found" if analysis["clean"] else f"FOUND {violations}"),
    ]
    for kind, examples in analysis["examples"].items():
        lines += [f"  {kind}: {example}" for example in examples]
    lines += [f"  error: {error}" for error in result["errors"]]
    return "\n".join(lines)


def parse_options(argv: Sequence[str] | None) -> tuple[argparse.Namespace, Options]:
    parser = argparse.ArgumentParser(prog="python -m loadtest.checker", description=__doc__)
    parser.add_argument("--deployment", type=Deployment, choices=list(Deployment),
                        default=Deployment.TWO_POOLS)  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="the size CI runs (about 20 s)")
    parser.add_argument("--clients", type=int)
    parser.add_argument("--messages", type=int)
    parser.add_argument("--rate", type=float, help="messages per second between bursts")
    parser.add_argument("--burst-every", dest="burst_every_s", type=float, help="seconds")
    parser.add_argument("--burst-size", type=int)
    parser.add_argument("--reconnects", type=int, help="client drops to aim for, in all")
    parser.add_argument("--faults", help="comma-separated, in turn: " + ",".join(Fault))
    parser.add_argument("--fault-every", dest="fault_every_s", type=float, help="seconds")
    parser.add_argument("--pause", dest="pause_s", type=float, help="redis-pause seconds")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--history-length", type=int, help="WSLOOP_HISTORY length of the stack")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    chosen = {
        name: getattr(args, name)
        for name in asdict(Options())
        if name != "faults" and getattr(args, name) is not None
    }
    options = dataclasses.replace(QUICK if args.quick else Options(), **chosen)
    if args.faults is not None:
        options.faults = tuple(Fault(name) for name in args.faults.split(",") if name)
    return args, options


def main(argv: Sequence[str] | None = None) -> int:
    args, options = parse_options(argv)
    env = {"WSLOOP_HISTORY_LENGTH": str(options.history_length), "WSLOOP_PREFIX": PREFIX}
    os.environ.update(env)
    with tempfile.TemporaryDirectory(prefix="wsloop-checker-") as var_dir:
        config = StackConfig.ephemeral(Path(var_dir), deployment=args.deployment, env=env)
        use_stack_settings(config.redis_url, PREFIX)
        try:
            with Stack.running(config) as stack:
                result = run(stack, options)
        except (RuntimeError, TimeoutError) as exc:
            print(f"the check could not run: {exc}", file=sys.stderr)
            return 2
    write_result(result, f"checker-{args.deployment}", args.out, render(result))
    return 0 if result["analysis"]["clean"] else 1


if __name__ == "__main__":
    sys.exit(main())
