"""``python -m loadtest.bench``: measure a running wsloop stack through nginx.

Runs against a stack that is already up (``python -m devstack run``), never starts or stops one.
Everything is on 127.0.0.1, bounded in sockets (``--sockets``, at most ``MAX_SOCKETS``) and in
time (every wait has a timeout, ``--max-seconds`` bounds the whole run); all sockets are closed at
the end, also after an error or Ctrl-C.

Steps and what each one measures:

1. Server identity: ``GET /healthz/wsloop`` gives the worker pid; the nginx workers are the
   processes holding the HTTP port's listening socket; Redis's pid from ``INFO``.
   Redis connections of the worker (``CLIENT LIST`` names ``wsloop:<pid>...``) at 0 sockets.
2. Warm-up: a few sockets on a separate facility receive a short burst and close, so imports,
   first allocations and the hub's code paths are behind us. Then the baseline ``VmRSS``.
3. Ramp: ``--sockets`` websockets to ``/ws/<facility>?subscribe-broadcast`` from ``--clients``
   processes at ``--ramp`` connections/s in total. Counted: sockets opened, failures by kind,
   connect-to-101 time. Redis connections of the worker are sampled every 0.5 s meanwhile.
4. Idle: after ``--idle-seconds`` with all sockets open and silent, ``VmRSS`` again:
   KiB per socket = (RSS at N - baseline RSS) / N, for the wsloop worker and the nginx workers.
   The server's own socket count (health JSON) and Redis connections at N are recorded.
5. Fan-out, for each subscriber count S (``--subscribers``, largest first; the idle sockets are
   reused, closing some to go from 10,000 down to 1,000), all S on one facility:
   a) burst: K messages PUBLISHed in one Redis pipeline (K = ``--burst-deliveries`` / S, at least
      ``BURST_MIN_MESSAGES``); deliveries/s = deliveries / (last delivery - first publish);
      lost, duplicate and out-of-order messages counted per socket;
   b) latency: R = ``--latency-rate`` / S messages/s for ``--latency-seconds``, one PUBLISH each
      at its scheduled time, so about ``--latency-rate`` deliveries/s; publish-to-receive latency
      percentiles over every delivery (clock: ``time.time_ns()`` on both sides, same machine).
   CPU used by the wsloop worker, nginx, Redis and the client processes during each phase is
   recorded (``/proc/<pid>/stat``), as a share of one core: 100 % = one core busy.
6. Close everything, RSS once more (is memory given back?), write the JSON and the table.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import ipaddress
import json
import math
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
import urllib.parse
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for_pipes
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, TypeVar

import redis

from . import payload, probes, worker
from .stats import summarize_ms, summarize_ns_as_ms, timeline

RESULTS_DIR = Path(__file__).resolve().parent / "results"

MAX_SOCKETS = 20_000  # ephemeral ports (about 28k) are shared with nginx's upstream connections
DEFAULT_SOCKETS = 10_000
DEFAULT_RAMP_PER_S = 2000.0
# Two client processes measured best on the 2-core reference machine (4 cost about 30 % more CPU
# per delivery); on bigger machines raise --clients so that the clients are not the limit.
DEFAULT_CLIENTS = 2
DEFAULT_SUBSCRIBERS = (1000, 10_000)
DEFAULT_BURST_DELIVERIES = 200_000
BURST_MIN_MESSAGES = 20
BURST_MAX_MESSAGES = 1000
DEFAULT_LATENCY_DELIVERIES_PER_S = 10_000.0
DEFAULT_LATENCY_SECONDS = 10.0
DEFAULT_IDLE_SECONDS = 3.0
DEFAULT_MAX_SECONDS = 600.0
# Reconnect storm: every held socket closes and comes back at once. The clients bound it to
# MAX_INFLIGHT_HANDSHAKES handshakes in flight each, so this rate means "as fast as they can".
DEFAULT_STORM_RAMP_PER_S = 20_000.0
WARMUP_SOCKETS = 20
HEALTH_PROBE_INTERVAL_S = 0.025  # a health check every 25 ms during bursts
WARMUP_MESSAGES = 5
SETTLE_S = 1.0
CONNECT_TIMEOUT_S = 15.0
MAX_INFLIGHT_HANDSHAKES = 200  # per client process
PHASE_TIMEOUT_S = 30.0  # a phase gives up this long after it is armed (+ latency phase length)
CLOSE_TIMEOUT_S = 10.0
WORKER_START_TIMEOUT_S = 30.0
SAMPLE_INTERVAL_S = 0.5
# Time series resolution: a burst lasts a few hundred ms, a latency phase several seconds.
BURST_BUCKET_S = 0.02
STEADY_BUCKET_S = 0.5
SERVER_COUNT_TIMEOUT_S = 20.0

TARGET_SOCKETS = 10_000
TARGET_KIB_PER_SOCKET = 16.0
TARGET_REDIS_CONNECTIONS = 2

QUICK = {
    "sockets": 1000,
    "burst_deliveries": 50_000,
    "latency_seconds": 3.0,
    "idle_seconds": 1.0,
    "max_seconds": 60.0,
}

Reply = TypeVar("Reply")


class BenchError(Exception):
    """The run cannot go on (stack unreachable, a client process died, a wait timed out)."""


# Options


@dataclass(frozen=True)
class Options:
    base_url: str
    redis_url: str
    prefix: str
    ws_path: str
    facility: str
    sockets: int
    ramp_per_s: float
    clients: int
    subscribers: tuple[int, ...]
    burst_deliveries: int
    latency_deliveries_per_s: float
    latency_seconds: float
    idle_seconds: float
    payload_bytes: int
    max_seconds: float
    storm_ramp_per_s: float
    quick: bool
    out: Path

    @property
    def http_host(self) -> str:
        return urllib.parse.urlsplit(self.base_url).hostname or "127.0.0.1"

    @property
    def http_port(self) -> int:
        return urllib.parse.urlsplit(self.base_url).port or 80

    @property
    def channel(self) -> str:
        name = f"broadcast:{self.facility}"
        return f"{self.prefix}:{name}" if self.prefix else name

    def path(self, facility: str) -> str:
        return f"{self.ws_path}{facility}?subscribe-broadcast"


def _loopback_only(url: str, what: str) -> None:
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError as exc:
        raise SystemExit(f"{what}: cannot resolve {host!r}: {exc}") from exc
    if not addresses or not all(ipaddress.ip_address(a).is_loopback for a in addresses):
        raise SystemExit(f"{what} must be on this machine (127.0.0.1), not {host!r}")


def parse_options(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.bench",
        description="Measure a running wsloop stack: idle sockets, memory per socket, Redis "
        "connections per worker, broadcast fan-out throughput and latency.",
    )
    parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="nginx (HTTP)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6380/0", help="the bus")
    parser.add_argument("--prefix", default="", help="WSLOOP_PREFIX of the stack (default none)")
    parser.add_argument("--ws-path", default="/ws/", help="WSLOOP_URL of the stack")
    parser.add_argument("--facility", default=None, help="default: loadtest-<time>-<pid>")
    parser.add_argument("--sockets", type=int, default=None, help="default 10000 (quick: 1000)")
    parser.add_argument(
        "--ramp", type=float, default=DEFAULT_RAMP_PER_S, help="new connections/s, all clients"
    )
    parser.add_argument(
        "--clients",
        type=int,
        default=None,
        help=f"client processes (default {DEFAULT_CLIENTS}, or 1 per "
        f"{worker.MAX_SOCKETS_PER_PROCESS} sockets if more)",
    )
    parser.add_argument(
        "--subscribers",
        default=None,
        help="comma-separated subscriber counts for fan-out (default 1000,10000; quick: 1000)",
    )
    parser.add_argument(
        "--burst-deliveries",
        type=int,
        default=None,
        help=f"deliveries per burst (default {DEFAULT_BURST_DELIVERIES}; quick 50000)",
    )
    parser.add_argument(
        "--latency-rate",
        type=float,
        default=DEFAULT_LATENCY_DELIVERIES_PER_S,
        help="deliveries/s during the latency phase (publish rate = this / subscribers)",
    )
    parser.add_argument("--latency-seconds", type=float, default=None, help="default 10 (quick 3)")
    parser.add_argument("--idle-seconds", type=float, default=None, help="default 3 (quick 1)")
    parser.add_argument("--payload-bytes", type=int, default=payload.DEFAULT_PAYLOAD_BYTES)
    parser.add_argument("--max-seconds", type=float, default=None, help="bound on the whole run")
    parser.add_argument(
        "--storm-ramp",
        type=float,
        default=DEFAULT_STORM_RAMP_PER_S,
        help="reconnects/s in the reconnect storm at the end (0: no storm)",
    )
    parser.add_argument("--quick", action="store_true", help="1000 sockets, short phases, < 30 s")
    parser.add_argument("--out", type=Path, default=None, help="JSON result file")
    args = parser.parse_args(argv)

    def pick(name: str, full: Any) -> Any:
        given = getattr(args, name)
        if given is not None:
            return given
        return QUICK[name] if args.quick and name in QUICK else full

    sockets = int(pick("sockets", DEFAULT_SOCKETS))
    if not 1 <= sockets <= MAX_SOCKETS:
        parser.error(f"--sockets must be between 1 and {MAX_SOCKETS}")
    min_clients = math.ceil(sockets / worker.MAX_SOCKETS_PER_PROCESS)
    clients = args.clients if args.clients is not None else max(DEFAULT_CLIENTS, min_clients)
    if clients < min_clients:
        parser.error(f"--clients must be at least {min_clients} for {sockets} sockets")
    wanted: tuple[int, ...] = (1000,) if args.quick else DEFAULT_SUBSCRIBERS
    if args.subscribers is not None:
        wanted = tuple(int(s) for s in args.subscribers.split(",") if s.strip())
    subscribers = tuple(sorted({min(s, sockets) for s in wanted if s > 0}, reverse=True))
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    facility = args.facility or f"loadtest-{stamp}-{os.getpid()}"
    out = args.out or RESULTS_DIR / f"{stamp}{'-quick' if args.quick else ''}.json"
    _loopback_only(args.base_url, "--base-url")
    _loopback_only(args.redis_url, "--redis-url")
    if args.ramp <= 0:
        parser.error("--ramp must be positive")
    return Options(
        base_url=args.base_url.rstrip("/"),
        redis_url=args.redis_url,
        prefix=args.prefix,
        ws_path=args.ws_path if args.ws_path.endswith("/") else args.ws_path + "/",
        facility=facility,
        sockets=sockets,
        ramp_per_s=args.ramp,
        clients=clients,
        subscribers=subscribers,
        burst_deliveries=int(pick("burst_deliveries", DEFAULT_BURST_DELIVERIES)),
        latency_deliveries_per_s=args.latency_rate,
        latency_seconds=float(pick("latency_seconds", DEFAULT_LATENCY_SECONDS)),
        idle_seconds=float(pick("idle_seconds", DEFAULT_IDLE_SECONDS)),
        payload_bytes=args.payload_bytes,
        max_seconds=float(pick("max_seconds", DEFAULT_MAX_SECONDS)),
        storm_ramp_per_s=args.storm_ramp,
        quick=args.quick,
        out=out,
    )


def split(total: int, parts: int) -> list[int]:
    """``total`` as ``parts`` integers that differ by at most one."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


# Client processes


@dataclass
class Client:
    index: int
    process: BaseProcess
    pipe: Connection
    pid: int = 0


class ClientPool:
    """The client processes and the request/reply exchange with them."""

    def __init__(self, count: int, host: str, port: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.clients: list[Client] = []
        for index in range(count):
            ours, theirs = context.Pipe()
            process = context.Process(
                target=worker.main,
                args=(theirs, index, host, port),
                name=f"loadtest-client-{index}",
                daemon=True,
            )
            self.clients.append(Client(index, process, ours))
        for client in self.clients:
            client.process.start()
        for client, ready in zip(
            self.clients,
            self.collect(range(count), worker.Ready, WORKER_START_TIMEOUT_S),
            strict=True,
        ):
            client.pid = ready.pid

    @property
    def pids(self) -> list[int]:
        return [client.pid for client in self.clients]

    def send(self, index: int, command: object) -> None:
        self.clients[index].pipe.send(command)

    def ask(
        self,
        commands: Sequence[object | None],
        expect: type[Reply],
        timeout_s: float,
        on_tick: Callable[[], None] | None = None,
    ) -> list[Reply]:
        """Send one command to each client (None: skip that one); their replies, in order."""
        asked = []
        for index, command in enumerate(commands):
            if command is not None:
                self.send(index, command)
                asked.append(index)
        return self.collect(asked, expect, timeout_s, on_tick)

    def collect(
        self,
        indices: Sequence[int] | range,
        expect: type[Reply],
        timeout_s: float,
        on_tick: Callable[[], None] | None = None,
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
            for pipe in wait_for_pipes(list(waiting), timeout=min(remaining, SAMPLE_INTERVAL_S)):
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
            if on_tick is not None:
                on_tick()
        return [replies[i] for i in sorted(replies)]

    def status(self) -> list[worker.Status]:
        return self.ask([worker.StatusCmd()] * len(self.clients), worker.Status, 10.0)

    def open(
        self,
        path: str,
        total: int,
        ramp_per_s: float,
        on_tick: Callable[[], None] | None = None,
        *,
        rooms: int = 1,
        cookies: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """Open ``total`` sockets on ``path``, spread evenly over the clients, at ``ramp_per_s``
        in total; what happened (opened, failures by kind, connect-to-101 times). A ``{room}``
        in ``path`` spreads each client's sockets evenly over ``rooms`` paths; ``cookies``, one
        per room, log each room's sockets in as that room's user."""
        counts = split(total, len(self.clients))
        rate = ramp_per_s / len(self.clients)
        commands = [
            worker.OpenCmd(
                path=path,
                count=count,
                rate_per_s=rate,
                max_inflight=MAX_INFLIGHT_HANDSHAKES,
                timeout_s=CONNECT_TIMEOUT_S,
                rooms=rooms,
                cookies=cookies,
            )
            if count
            else None
            for count in counts
        ]
        timeout_s = total / ramp_per_s + CONNECT_TIMEOUT_S + 30.0
        replies = self.ask(commands, worker.OpenResult, timeout_s, on_tick)
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
            [worker.CloseCmd(count=n, timeout_s=CLOSE_TIMEOUT_S) if n else None for n in to_close],
            worker.CloseResult,
            CLOSE_TIMEOUT_S + 10.0,
        )

    def arm(self, phase: int, expected: int, timeout_s: float) -> int:
        """Start counting ``phase`` on every open socket; the number of sockets armed."""
        command = worker.ArmCmd(phase=phase, expected=expected, timeout_s=timeout_s)
        armed = self.ask([command] * len(self.clients), worker.Armed, 10.0)
        return sum(a.sockets for a in armed)

    def gather(self, timeout_s: float, bucket_s: float) -> dict[str, Any]:
        """Wait for every client's ``PhaseResult``; the phase's totals, latency summary and
        time series (``bucket_s`` buckets)."""
        results = self.collect(range(len(self.clients)), worker.PhaseResult, timeout_s + 15.0)
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

    def shutdown(self) -> list[worker.CloseResult]:
        """Close every socket (closing handshake), stop the processes; never raises."""
        results: list[worker.CloseResult] = []
        alive = [c for c in self.clients if c.process.is_alive()]
        for client in alive:
            with contextlib.suppress(OSError, ValueError):
                client.pipe.send(worker.QuitCmd(timeout_s=CLOSE_TIMEOUT_S))
        with contextlib.suppress(BenchError, OSError):
            results = self.collect(
                [c.index for c in alive],
                worker.CloseResult,
                CLOSE_TIMEOUT_S + 10.0,
                skip_others=True,
            )
        for client in self.clients:
            client.process.join(5.0)
            if client.process.is_alive():
                client.process.terminate()
                client.process.join(5.0)
        return results


# Server-side observation


class Server:
    """The stack under test as seen from outside: health JSON, /proc, Redis."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.redis = redis.Redis.from_url(options.redis_url, socket_timeout=10)
        health = self.health()
        self.pid = int(health["pid"])
        if not Path(f"/proc/{self.pid}").exists():
            raise BenchError(f"wsloop worker pid {self.pid} is not a process on this machine")
        self.nginx_pids = probes.nginx_worker_pids(options.http_port)
        info = probes.redis_info(self.redis)
        self.redis_pid = int(info["pid"])
        self.redis_version = info["version"]
        self.other_pids_seen: set[int] = set()

    def health(self) -> dict[str, Any]:
        try:
            data = probes.http_json(self.options.base_url, "/healthz/wsloop")
        except OSError as exc:
            raise BenchError(f"{self.options.base_url}/healthz/wsloop: {exc}") from exc
        pid = int(data["pid"])
        if hasattr(self, "pid") and pid != self.pid:
            self.other_pids_seen.add(pid)
        return data

    def sockets(self) -> int:
        return int(self.health()["sockets"])

    def metrics(self) -> dict[str, float]:
        """The pool's Prometheus figures (``/metrics/wsloop``, all its workers)."""
        try:
            return probes.prometheus_samples(self.options.base_url, "/metrics/wsloop")
        except OSError as exc:
            raise BenchError(f"{self.options.base_url}/metrics/wsloop: {exc}") from exc

    def wait_sockets(self, count: int, timeout_s: float = SERVER_COUNT_TIMEOUT_S) -> int:
        """Poll the health endpoint until the worker holds ``count`` sockets; the last count."""
        deadline = time.monotonic() + timeout_s
        while True:
            held = self.sockets()
            if held == count or time.monotonic() > deadline:
                return held
            time.sleep(0.1)

    def rss_kib(self) -> int:
        return probes.rss_kib(self.pid)

    def nginx_rss_kib(self) -> int:
        return sum(max(0, probes.rss_kib(pid)) for pid in self.nginx_pids)

    def redis_connections(self) -> list[str]:
        return probes.wsloop_redis_connections(self.redis, self.pid)

    def numsub(self, channel: str) -> int:
        counts = dict(self.redis.pubsub_numsub(channel))
        return int(counts.get(channel.encode(), counts.get(channel, 0)))


class HealthProbe:
    """Times ``GET /healthz/wsloop`` every ``HEALTH_PROBE_INTERVAL_S`` while a phase runs: how
    long the worker keeps other requests (handshakes, health checks) waiting while it fans out."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.samples_ms: list[float] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                probes.http_json(self.options.base_url, "/healthz/wsloop")
            except OSError:
                self.failures += 1
            else:
                self.samples_ms.append((time.perf_counter() - started) * 1000)
            self._stop.wait(HEALTH_PROBE_INTERVAL_S)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def result(self) -> dict[str, Any]:
        return {**summarize_ms(self.samples_ms), "failures": self.failures}


class CpuMeter:
    """CPU seconds used by each part of the system between ``start`` and ``stop``."""

    def __init__(self, server: Server, client_pids: list[int]) -> None:
        self.groups = {
            "wsloop": [server.pid],
            "nginx": server.nginx_pids,
            "redis": [server.redis_pid],
            "clients": client_pids,
        }
        self._start: dict[str, float] = {}
        self._wall = 0.0

    def _sample(self) -> dict[str, float]:
        sample = {name: sum(probes.cpu_s(p) for p in pids) for name, pids in self.groups.items()}
        sample["coordinator"] = time.process_time()
        return sample

    def start(self) -> None:
        self._start = self._sample()
        self._wall = time.monotonic()

    def stop(self) -> dict[str, Any]:
        end = self._sample()
        wall = time.monotonic() - self._wall
        return {
            "wall_s": round(wall, 3),
            "cpu_s": {k: round(end[k] - self._start[k], 3) for k in end},
            "cpu_pct_of_one_core": {
                k: round(100.0 * (end[k] - self._start[k]) / wall, 1) if wall > 0 else 0.0
                for k in end
            },
        }


def metrics_change(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Counters as the difference over a phase, gauges as they are at its end."""
    return {
        name: round(value - before.get(name, 0.0), 3) if name.endswith("_total") else value
        for name, value in after.items()
        if name.startswith("wsloop_")
    }


def with_cost_per_delivery(cpu: dict[str, Any], deliveries: int) -> dict[str, Any]:
    """Add CPU microseconds per delivery for each part (what a delivery costs, wherever the
    time went): on a machine where the parts share a few cores, this is the figure to compare."""
    if deliveries:
        cpu["cpu_us_per_delivery"] = {
            name: round(seconds * 1e6 / deliveries, 2) for name, seconds in cpu["cpu_s"].items()
        }
    return cpu


# The run


class Bench:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.started = time.monotonic()
        self.warnings: list[str] = []
        self.result: dict[str, Any] = {}
        self.phase_counter = 0
        self.redis_samples: list[tuple[float, int]] = []
        self.ramp_samples: list[dict[str, float]] = []

    def check_time(self, step: str) -> None:
        if time.monotonic() - self.started > self.options.max_seconds:
            raise BenchError(f"--max-seconds ({self.options.max_seconds:g} s) passed at {step}")

    def warn(self, text: str) -> None:
        self.warnings.append(text)
        print(f"warning: {text}", file=sys.stderr, flush=True)

    def log(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[{elapsed:6.1f}s] {text}", file=sys.stderr, flush=True)

    def run(self) -> dict[str, Any]:
        options = self.options
        self.result = {
            "tool": "loadtest.bench",
            "started_at": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "machine": probes.machine_info(),
            "parameters": {
                k: (str(v) if isinstance(v, Path) else v) for k, v in vars(options).items()
            },
            "warnings": self.warnings,
        }
        pool: ClientPool | None = None
        try:
            server = Server(options)
            self.result["server"] = {
                "wsloop_pid": server.pid,
                "wsloop_cmdline": probes.cmdline(server.pid),
                "nginx_worker_pids": server.nginx_pids,
                "redis_pid": server.redis_pid,
                "redis_version": server.redis_version,
                "channel": options.channel,
            }
            health = server.health()
            self.result["server"]["health_at_start"] = health
            if health["sockets"]:
                self.warn(f"the worker already holds {health['sockets']} sockets at the start")
            if health.get("sockets_opened", 0):
                self.warn(
                    f"the worker is not fresh ({health['sockets_opened']} sockets served before): "
                    "memory freed by earlier sockets is reused, so KiB per socket reads low; "
                    "restart the wsloop pool for a clean figure"
                )
            redis_at_0 = server.redis_connections()
            self.log(
                f"wsloop worker pid {server.pid}, redis connections at 0 sockets: {redis_at_0}"
            )
            pool = ClientPool(options.clients, options.http_host, options.http_port)
            cpu = CpuMeter(server, pool.pids)
            self.warm_up(server, pool)
            self.measure_idle(server, pool, cpu, redis_at_0)
            if options.storm_ramp_per_s > 0:
                self.measure_storm(server, pool, cpu)
            self.measure_fanout(server, pool, cpu)
            self.result["client_status"] = [asdict(s) for s in pool.status()]
            closes = Counter[str]()
            for status in self.result["client_status"]:
                closes.update(status["server_closes"])
            self.result["server_closed_sockets"] = dict(closes)
            if closes:
                self.warn(f"the server closed sockets during the run: {dict(closes)}")
        except BenchError as exc:
            self.result["error"] = str(exc)
            self.warn(f"run aborted: {exc}")
        except KeyboardInterrupt:
            self.result["error"] = "interrupted"
            self.warn("interrupted: closing sockets")
        finally:
            if pool is not None:
                closed = pool.shutdown()
                self.result["final_close"] = {
                    "closed": sum(r.closed for r in closed),
                    "aborted": sum(r.aborted for r in closed),
                }
        with contextlib.suppress(BenchError, OSError, KeyError):
            self.after_close(Server(options))
        self.result["elapsed_s"] = round(time.monotonic() - self.started, 1)
        return self.result

    # steps

    def open_sockets(
        self, pool: ClientPool, facility: str, total: int, on_tick: Callable[[], None] | None
    ) -> dict[str, Any]:
        return pool.open(self.options.path(facility), total, self.options.ramp_per_s, on_tick)

    def warm_up(self, server: Server, pool: ClientPool) -> None:
        options = self.options
        facility = f"{options.facility}-warmup"
        count = max(WARMUP_SOCKETS, len(pool.clients))
        self.log(f"warm-up: {count} sockets on {facility}")
        opened = self.open_sockets(pool, facility, count, None)
        if opened["opened"] == 0:
            raise BenchError(f"no websocket could be opened: {opened['failures_by_kind']}")
        channel = (
            f"{options.prefix}:broadcast:{facility}"
            if options.prefix
            else (f"broadcast:{facility}")
        )
        self.wait_subscribed(server, channel)
        burst = self.burst(
            server, pool, channel, subscribers=opened["opened"], messages=WARMUP_MESSAGES, cpu=None
        )
        closed = pool.ask(
            [worker.CloseCmd(count=worker.MAX_SOCKETS_PER_PROCESS, timeout_s=CLOSE_TIMEOUT_S)]
            * len(pool.clients),
            worker.CloseResult,
            CLOSE_TIMEOUT_S + 10.0,
        )
        left = server.wait_sockets(0)
        self.result["warmup"] = {
            "facility": facility,
            "open": opened,
            "burst": {k: burst[k] for k in ("deliveries", "lost", "duplicates", "out_of_order")},
            "closed": sum(r.closed for r in closed),
            "server_sockets_after": left,
        }
        if burst["lost"] or burst["deliveries"] == 0:
            raise BenchError(
                f"warm-up burst on {channel} lost {burst['lost']} of "
                f"{burst['expected_deliveries']} deliveries (wrong --prefix?)"
            )
        if left:
            self.warn(f"the worker still counts {left} sockets after the warm-up closed")
        time.sleep(SETTLE_S)

    def sample_ramp(self, server: Server) -> None:
        """While sockets open (every ``SAMPLE_INTERVAL_S``): what the server holds and costs."""
        self.sample_redis(server)
        self.ramp_samples.append(
            {
                "t_s": round(time.monotonic() - self.started, 2),
                "sockets": server.sockets(),
                "wsloop_rss_kib": server.rss_kib(),
                "nginx_rss_kib": server.nginx_rss_kib(),
                "redis_used_memory_kib": int(server.redis.info("memory")["used_memory"]) // 1024,
                "redis_connections": self.redis_samples[-1][1],
            }
        )

    def sample_redis(self, server: Server) -> None:
        count = len(server.redis_connections())
        self.redis_samples.append((round(time.monotonic() - self.started, 2), count))

    def measure_idle(
        self, server: Server, pool: ClientPool, cpu: CpuMeter, redis_at_0: list[str]
    ) -> None:
        options = self.options
        rss_0 = server.rss_kib()
        nginx_0 = server.nginx_rss_kib()
        fds_0 = probes.open_fds(server.pid)
        self.log(
            f"baseline RSS {rss_0} KiB; ramp: {options.sockets} sockets at {options.ramp_per_s:g}/s"
        )
        self.check_time("ramp")
        self.sample_ramp(server)  # the baseline of the series: no sockets yet
        cpu.start()
        ramp = self.open_sockets(
            pool, options.facility, options.sockets, lambda: self.sample_ramp(server)
        )
        ramp["cpu"] = cpu.stop()
        self.log(f"opened {ramp['opened']}, failures {ramp['failures_by_kind'] or 0}")
        held = server.wait_sockets(ramp["opened"])
        time.sleep(options.idle_seconds)
        held = server.sockets()
        rss_n = server.rss_kib()
        nginx_n = server.nginx_rss_kib()
        redis_at_n = server.redis_connections()
        self.sample_redis(server)
        statuses = pool.status()
        client_open = sum(s.open for s in statuses)
        per_socket = (rss_n - rss_0) / held if held else math.nan
        nginx_per_socket = (nginx_n - nginx_0) / held if held and server.nginx_pids else math.nan
        self.result["idle"] = {
            "ramp": ramp,
            "client_sockets_open": client_open,
            "server_sockets": held,
            "wsloop_open_fds": {"before": fds_0, "at_n": probes.open_fds(server.pid)},
            "nginx_worker_open_fds": {str(pid): probes.open_fds(pid) for pid in server.nginx_pids},
            "wsloop_rss_kib": {"before": rss_0, "at_n": rss_n, "delta": rss_n - rss_0},
            "wsloop_kib_per_socket": round(per_socket, 2),
            "over_time": self.ramp_samples,
            "nginx_rss_kib": {"before": nginx_0, "at_n": nginx_n, "delta": nginx_n - nginx_0},
            "nginx_kib_per_socket": round(nginx_per_socket, 2),
            "redis_connections": {
                "at_0": len(redis_at_0),
                "at_n": len(redis_at_n),
                "max_sampled": max(
                    [len(redis_at_0), len(redis_at_n)] + [c for _, c in self.redis_samples]
                ),
                "names_at_0": redis_at_0,
                "names_at_n": redis_at_n,
                "samples": self.redis_samples,
            },
        }
        if held != ramp["opened"]:
            self.warn(f"clients opened {ramp['opened']} sockets, the worker counts {held}")
        self.log(
            f"held {held}; RSS {rss_0} -> {rss_n} KiB = {per_socket:.2f} KiB/socket; "
            f"redis connections {len(redis_at_0)} -> {len(redis_at_n)}"
        )

    def wait_subscribed(self, server: Server, channel: str) -> None:
        deadline = time.monotonic() + 5.0
        while server.numsub(channel) < 1:
            if time.monotonic() > deadline:
                raise BenchError(f"nobody subscribes to {channel} on Redis: wrong --prefix?")
            time.sleep(0.05)

    def reduce_to(self, server: Server, pool: ClientPool, subscribers: int) -> int:
        """Close sockets until ``subscribers`` are left; the worker's count afterwards."""
        opened = sum(s.open for s in pool.status())
        if opened > subscribers:
            self.log(f"closing {opened - subscribers} sockets to keep {subscribers}")
            pool.close_down_to(subscribers)
        held = server.wait_sockets(min(subscribers, opened))
        time.sleep(SETTLE_S)
        return held

    def next_phase(self) -> int:
        self.phase_counter += 1
        return self.phase_counter

    def burst(
        self,
        server: Server,
        pool: ClientPool,
        channel: str,
        *,
        subscribers: int,
        messages: int,
        cpu: CpuMeter | None,
    ) -> dict[str, Any]:
        """K messages in one pipeline; deliveries/s = deliveries / (last delivery - first
        publish)."""
        phase = self.next_phase()
        armed = pool.arm(phase, messages, PHASE_TIMEOUT_S)
        if cpu is not None:
            cpu.start()
        pipe = server.redis.pipeline(transaction=False)
        with HealthProbe(self.options) as health_probe:
            first_publish_ns = time.time_ns()
            for seq in range(messages):
                pipe.publish(
                    channel, payload.encode(phase, seq, time.time_ns(), self.options.payload_bytes)
                )
            receivers = pipe.execute()
            published_ns = time.time_ns()
            gathered = pool.gather(PHASE_TIMEOUT_S, BURST_BUCKET_S)
        span_ns = gathered["last_ns"] - first_publish_ns
        result = {
            "kind": "burst",
            "subscribers": subscribers,
            "armed_sockets": armed,
            "messages": messages,
            "expected_deliveries": messages * armed,
            "redis_receivers_per_publish": sorted(set(receivers)),
            "publish_ms": round((published_ns - first_publish_ns) / 1e6, 2),
            "first_publish_to_last_delivery_ms": round(span_ns / 1e6, 2),
            "deliveries_per_s": round(gathered["deliveries"] / (span_ns / 1e9))
            if span_ns > 0
            else None,
            **{k: v for k, v in gathered.items() if k not in ("first_ns", "last_ns")},
            "health_probe_during": health_probe.result(),
        }
        if cpu is not None:
            result["cpu"] = with_cost_per_delivery(cpu.stop(), gathered["deliveries"])
        return result

    def latency(
        self,
        server: Server,
        pool: ClientPool,
        channel: str,
        subscribers: int,
        cpu: CpuMeter,
    ) -> dict[str, Any]:
        """R = rate / S messages/s for the phase's duration, each PUBLISHed at its scheduled
        time; latency = receive time - publish time, over every delivery."""
        options = self.options
        rate_per_s = options.latency_deliveries_per_s / subscribers
        messages = max(2, round(rate_per_s * options.latency_seconds))
        phase = self.next_phase()
        armed = pool.arm(phase, messages, options.latency_seconds + PHASE_TIMEOUT_S)
        cpu.start()
        first_publish_ns = time.time_ns()
        start = time.monotonic()
        late_ms = 0.0
        for seq in range(messages):
            due = start + seq / rate_per_s
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                late_ms = max(late_ms, -delay * 1000.0)
            server.redis.publish(
                channel, payload.encode(phase, seq, time.time_ns(), options.payload_bytes)
            )
        gathered = pool.gather(options.latency_seconds + PHASE_TIMEOUT_S, STEADY_BUCKET_S)
        usage = with_cost_per_delivery(cpu.stop(), gathered["deliveries"])
        span_ns = gathered["last_ns"] - first_publish_ns
        return {
            "kind": "latency",
            "subscribers": subscribers,
            "armed_sockets": armed,
            "publish_rate_per_s": round(rate_per_s, 3),
            "messages": messages,
            "expected_deliveries": messages * armed,
            "publisher_max_late_ms": round(late_ms, 2),
            "deliveries_per_s": round(gathered["deliveries"] / (span_ns / 1e9))
            if span_ns > 0
            else None,
            **{k: v for k, v in gathered.items() if k not in ("first_ns", "last_ns")},
            "cpu": usage,
        }

    def measure_fanout(self, server: Server, pool: ClientPool, cpu: CpuMeter) -> None:
        options = self.options
        self.wait_subscribed(server, options.channel)
        fanout: list[dict[str, Any]] = []
        self.result["fanout"] = fanout
        for subscribers in options.subscribers:
            self.check_time(f"fan-out to {subscribers}")
            held = self.reduce_to(server, pool, subscribers)
            if held != subscribers:
                self.warn(f"fan-out to {subscribers}: the worker holds {held} sockets")
            messages = min(
                BURST_MAX_MESSAGES, max(BURST_MIN_MESSAGES, options.burst_deliveries // subscribers)
            )
            self.log(f"burst: {messages} messages to {subscribers} subscribers")
            before = server.metrics()
            burst = self.burst(
                server, pool, options.channel, subscribers=subscribers, messages=messages, cpu=cpu
            )
            burst["server_metrics"] = metrics_change(before, server.metrics())
            burst["server_sockets"] = held
            self.log(
                f"  {burst['deliveries']} deliveries in "
                f"{burst['first_publish_to_last_delivery_ms']} ms = "
                f"{burst['deliveries_per_s']}/s; lost {burst['lost']}, dup "
                f"{burst['duplicates']}, out of order {burst['out_of_order']}"
            )
            time.sleep(SETTLE_S)
            self.check_time(f"latency at {subscribers}")
            self.log(
                f"latency: {options.latency_deliveries_per_s / subscribers:g} msg/s to "
                f"{subscribers} subscribers for {options.latency_seconds:g} s"
            )
            before = server.metrics()
            steady = self.latency(server, pool, options.channel, subscribers, cpu)
            steady["server_metrics"] = metrics_change(before, server.metrics())
            steady["server_sockets"] = held
            lat = steady["latency"]
            self.log(
                f"  p50 {lat.get('p50_ms')} ms, p99 {lat.get('p99_ms')} ms, max "
                f"{lat.get('max_ms')} ms; lost {steady['lost']}"
            )
            self.sample_redis(server)
            fanout.append({"subscribers": subscribers, "burst": burst, "latency": steady})
            for phase in (burst, steady):
                if phase["timed_out_clients"]:
                    self.warn(
                        f"{phase['kind']} to {subscribers}: clients {phase['timed_out_clients']} "
                        "timed out waiting for messages"
                    )
        self.result["after_fanout"] = {
            "wsloop_rss_kib": server.rss_kib(),
            "redis_connections": server.redis_connections(),
            "health": server.health(),
        }

    def measure_storm(self, server: Server, pool: ClientPool, cpu: CpuMeter) -> None:
        """Every held socket closes and reconnects at once (a deploy, a network blip): how long
        until all are back, connect times, failures, and what the worker spent on it."""
        self.check_time("reconnect storm")
        held = sum(s.open for s in pool.status())
        self.log(f"reconnect storm: {held} sockets close and come back")
        pool.close_down_to(0)
        server.wait_sockets(0)
        before = server.metrics()
        cpu.start()
        reopened = pool.open(
            self.options.path(self.options.facility), held, self.options.storm_ramp_per_s
        )
        storm = {
            "sockets": held,
            "open": reopened,
            "cpu": cpu.stop(),
            "server_sockets_after": server.wait_sockets(reopened["opened"]),
            "server_metrics": metrics_change(before, server.metrics()),
        }
        handshakes = reopened["opened"] or 1
        storm["wsloop_cpu_us_per_handshake"] = round(
            storm["cpu"]["cpu_s"]["wsloop"] * 1e6 / handshakes, 1
        )
        self.result["storm"] = storm
        connect = reopened["connect_ms"]
        self.log(
            f"  {reopened['opened']} of {held} back in {reopened['elapsed_s']} s, connect p50 "
            f"{connect.get('p50_ms')} ms, p99 {connect.get('p99_ms')} ms, "
            f"failures {reopened['failures_by_kind'] or 0}"
        )

    def after_close(self, server: Server) -> None:
        left = server.wait_sockets(0, timeout_s=10.0)
        self.result["after_close"] = {
            "server_sockets": left,
            "wsloop_rss_kib": server.rss_kib(),
            "redis_connections": server.redis_connections(),
            "health": server.health(),
        }
        if server.other_pids_seen:
            self.warn(
                f"/healthz/wsloop answered from other pids {sorted(server.other_pids_seen)}: "
                "more than one wsloop worker; figures are for pid {server.pid} only"
            )


# Output


def _fmt(value: Any, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}{unit}"
    if isinstance(value, int):
        return f"{value:,}{unit}"
    return f"{value}{unit}"


def _meets(ok: bool) -> str:
    return "meets target" if ok else "MISSES target"


def render(result: dict[str, Any]) -> str:
    lines: list[str] = []
    machine = result.get("machine", {})
    params = result.get("parameters", {})
    lines.append(
        f"wsloop load test {result.get('started_at', '')}"
        f"{' (quick)' if params.get('quick') else ''}, {result.get('elapsed_s', '?')} s"
    )
    lines.append(
        f"machine: {machine.get('nproc')} x {machine.get('cpu_model')}, "
        f"Python {machine.get('python')}, load {machine.get('load_avg_1_5_15')}"
    )
    server = result.get("server", {})
    if server:
        lines.append(
            f"server: wsloop pid {server.get('wsloop_pid')}, nginx workers "
            f"{server.get('nginx_worker_pids')}, redis {server.get('redis_version')}, "
            f"channel {server.get('channel')}"
        )
    idle = result.get("idle")
    if idle:
        ramp = idle["ramp"]
        redis_conns = idle["redis_connections"]
        per_socket = idle["wsloop_kib_per_socket"]
        connect = ramp["connect_ms"]
        held_note = (
            f"({_meets(idle['server_sockets'] >= TARGET_SOCKETS)}: {TARGET_SOCKETS:,})"
            if ramp["requested"] >= TARGET_SOCKETS
            else f"(target {TARGET_SOCKETS:,} not tried in this run)"
        )
        lines += [
            "",
            "idle sockets (one wsloop worker, through nginx)",
            f"  sockets requested             {_fmt(ramp['requested'])}",
            f"  sockets held (server count)   {_fmt(idle['server_sockets'])}   {held_note}",
            f"  connect failures              {_fmt(ramp['failures'])}  "
            f"{ramp['failures_by_kind'] or ''}",
            f"  ramp                          {_fmt(ramp['ramp_requested_per_s'])}/s requested, "
            f"{_fmt(ramp['ramp_achieved_per_s'])}/s achieved",
            f"  connect to 101 p50/p99/max    {_fmt(connect.get('p50_ms'))} / "
            f"{_fmt(connect.get('p99_ms'))} / {_fmt(connect.get('max_ms'))} ms",
            f"  wsloop RSS before / at N      {_fmt(idle['wsloop_rss_kib']['before'])} / "
            f"{_fmt(idle['wsloop_rss_kib']['at_n'])} KiB",
            f"  wsloop RSS per socket         {_fmt(per_socket)} KiB   "
            f"({_meets(per_socket <= TARGET_KIB_PER_SOCKET)}: <= {TARGET_KIB_PER_SOCKET:g})",
            f"  nginx workers RSS per socket  {_fmt(idle['nginx_kib_per_socket'])} KiB",
            f"  redis connections 0 / N / max {redis_conns['at_0']} / {redis_conns['at_n']} / "
            f"{redis_conns['max_sampled']}   "
            f"({_meets(redis_conns['max_sampled'] <= TARGET_REDIS_CONNECTIONS)}: <= "
            f"{TARGET_REDIS_CONNECTIONS})",
        ]
    fanout = result.get("fanout") or []
    if fanout:
        lines += [
            "",
            "broadcast fan-out (one facility, one worker)",
            "  subs    | burst msgs  deliveries/s  lost  dup  ooo | steady msg/s  deliveries/s"
            "  p50 ms  p99 ms  max ms  lost",
        ]
        for entry in sorted(fanout, key=lambda e: e["subscribers"]):
            b, s = entry["burst"], entry["latency"]
            lat = s["latency"]
            lines.append(
                f"  {entry['subscribers']:>7,} | {b['messages']:>10,}  "
                f"{_fmt(b['deliveries_per_s']):>12}  {b['lost']:>4}  {b['duplicates']:>3}  "
                f"{b['out_of_order']:>3} | {s['publish_rate_per_s']:>12g}  "
                f"{_fmt(s['deliveries_per_s']):>12}  {_fmt(lat.get('p50_ms')):>6}  "
                f"{_fmt(lat.get('p99_ms')):>6}  {_fmt(lat.get('max_ms')):>6}  {s['lost']:>4}"
            )
        for entry in sorted(fanout, key=lambda e: e["subscribers"]):
            probe = entry["burst"].get("health_probe_during", {})
            lines.append(
                f"  health check during the {entry['subscribers']:,} burst: p50/max "
                f"{_fmt(probe.get('p50_ms'))} / {_fmt(probe.get('max_ms'))} ms "
                f"({probe.get('count', 0)} probes, {probe.get('failures', 0)} failed)"
            )
        lines.append(
            "  CPU per phase (wsloop / nginx / redis / clients): % of one core | us per delivery"
        )
        parts = ("wsloop", "nginx", "redis", "clients")
        for entry in sorted(fanout, key=lambda e: e["subscribers"]):
            for kind in ("burst", "latency"):
                usage = entry[kind].get("cpu", {})
                pct = usage.get("cpu_pct_of_one_core", {})
                cost = usage.get("cpu_us_per_delivery", {})
                lines.append(
                    f"    {entry['subscribers']:>7,} {kind:<8} "
                    + " / ".join(_fmt(pct.get(p)) for p in parts)
                    + " | "
                    + " / ".join(_fmt(cost.get(p)) for p in parts)
                )
    lines += _render_server_counts(fanout) + _render_storm(result.get("storm"))
    after = result.get("after_close")
    if after and idle:
        lines += [
            "",
            f"after closing all: worker holds {after['server_sockets']} sockets, RSS "
            f"{_fmt(after['wsloop_rss_kib'])} KiB "
            f"(baseline {_fmt(idle['wsloop_rss_kib']['before'])}), "
            f"redis connections {len(after['redis_connections'])}",
        ]
    for warning in result.get("warnings", []):
        lines.append(f"warning: {warning}")
    if result.get("error"):
        lines.append(f"ERROR: {result['error']}")
    return "\n".join(lines)


def _render_server_counts(fanout: list[dict[str, Any]]) -> list[str]:
    if not fanout:
        return []
    lines = ["  server's own count (/metrics/wsloop): messages sent per phase"]
    for entry in sorted(fanout, key=lambda e: e["subscribers"]):
        counted = [
            entry[kind].get("server_metrics", {}).get("wsloop_messages_sent_total")
            for kind in ("burst", "latency")
        ]
        delivered = [entry[kind]["deliveries"] for kind in ("burst", "latency")]
        lines.append(
            f"    {entry['subscribers']:>7,} burst {_fmt(counted[0])} sent / "
            f"{_fmt(delivered[0])} received, steady {_fmt(counted[1])} / {_fmt(delivered[1])}"
        )
    return lines


def _render_storm(storm: dict[str, Any] | None) -> list[str]:
    if not storm:
        return []
    opened, connect = storm["open"], storm["open"]["connect_ms"]
    return [
        "",
        f"reconnect storm: {storm['sockets']:,} sockets close and come back at once",
        f"  back / failures               {_fmt(opened['opened'])} / "
        f"{_fmt(opened['failures'])} {opened['failures_by_kind'] or ''}",
        f"  all back after                {_fmt(opened['elapsed_s'])} s "
        f"({_fmt(opened['ramp_achieved_per_s'])}/s)",
        f"  connect to 101 p50/p99/max    {_fmt(connect.get('p50_ms'))} / "
        f"{_fmt(connect.get('p99_ms'))} / {_fmt(connect.get('max_ms'))} ms",
        f"  wsloop CPU per handshake      {_fmt(storm['wsloop_cpu_us_per_handshake'])} us",
    ]


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # like Ctrl-C: close the sockets, write results
    bench = Bench(options)
    result = bench.run()
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    from .html_report import report_page  # noqa: PLC0415 (matplotlib: not in the client processes)

    report = options.out.with_suffix(".html")
    report.write_text(report_page(result))
    print(render(result))
    print(f"\nresults: {options.out}\nreport:  {report}")
    return 1 if result.get("error") else 0


if __name__ == "__main__":
    sys.exit(main())
