"""The server under test seen from outside, and the meters that run beside the bench.

Two kinds of server. ``WsloopServer``: a wsloop stack, which says who it is and what it holds
(``/healthz/wsloop``: the worker's pid and socket count; ``/metrics/wsloop``: its own counts).
``PeerServer``: any other websocket server (``--peer``): its processes are given (or found
listening on the port), the sockets it holds are what the clients hold, and it has no counts of
its own. Both read memory and CPU from ``/proc`` and Redis from ``INFO``; in a result, ``server``
is the websocket server under test whichever it is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from . import probes
from .clients import BenchError, Progress
from .stats import summarize_ms

SERVER_COUNT_TIMEOUT_S = 20.0
PEER_SETTLE_S = 1.0  # a peer cannot say when it has taken every socket: give it this long
HEALTH_PROBE_INTERVAL_S = 0.025  # a health check every 25 ms during bursts
SAMPLE_INTERVAL_S = 0.5
PROGRESS_EVERY_SAMPLES = 2  # a progress line per second


class Server:
    """What both kinds share: processes, nginx workers in front, Redis."""

    name = "server"
    counts_sockets = False  # True when ``sockets()`` is the server's own count

    def __init__(self, base_url: str, http_port: int, redis_url: str, pids: list[int]) -> None:
        self.base_url = base_url
        self.pids = pids
        for pid in pids:
            if not Path(f"/proc/{pid}").exists():
                raise BenchError(f"server pid {pid} is not a process on this machine")
        self.nginx_pids = probes.nginx_worker_pids(http_port)
        self.redis = redis.Redis.from_url(redis_url, socket_timeout=10) if redis_url else None
        self.redis_pid = 0
        self.redis_version = ""
        if self.redis is not None:
            info = probes.redis_info(self.redis)
            self.redis_pid = int(info["pid"])
            self.redis_version = info["version"]

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pids": self.pids,
            "cmdlines": [probes.cmdline(pid) for pid in self.pids],
            "nginx_worker_pids": self.nginx_pids,
            "redis_pid": self.redis_pid,
            "redis_version": self.redis_version,
        }

    def process_groups(self) -> dict[str, list[int]]:
        groups = {"server": self.pids, "nginx": self.nginx_pids}
        if self.redis_pid:
            groups["redis"] = [self.redis_pid]
        return groups

    def rss_kib(self) -> int:
        return sum(max(0, probes.rss_kib(pid)) for pid in self.pids)

    def nginx_rss_kib(self) -> int:
        return sum(max(0, probes.rss_kib(pid)) for pid in self.nginx_pids)

    def open_fds(self) -> int:
        return sum(max(0, probes.open_fds(pid)) for pid in self.pids)

    def redis_memory_kib(self) -> int:
        if self.redis is None:
            return 0
        return int(self.redis.info("memory")["used_memory"]) // 1024

    def redis_clients(self) -> int:
        """Every client connected to Redis (the server's, Django's, this bench's)."""
        if self.redis is None:
            return 0
        return int(self.redis.info("clients")["connected_clients"])

    def redis_connections(self) -> list[str]:
        """The server's own Redis connections, where it names them (wsloop does)."""
        return []

    def sockets(self) -> int | None:
        return None

    def wait_sockets(self, count: int, timeout_s: float = SERVER_COUNT_TIMEOUT_S) -> int:
        """The sockets held once the server has caught up with the clients' ``count``."""
        time.sleep(PEER_SETTLE_S)
        return count

    def metrics(self) -> dict[str, float]:
        return {}

    def numsub(self, channel: str) -> int:
        if self.redis is None:
            return 0
        counts = dict(self.redis.pubsub_numsub(channel))
        return int(counts.get(channel.encode(), counts.get(channel, 0)))


class PeerServer(Server):
    """Another websocket server; ``pids`` given, or whatever listens on the port (its children
    included) when nothing but the server itself is there."""

    def __init__(
        self, base_url: str, http_port: int, redis_url: str, pids: list[int], label: str
    ) -> None:
        if not pids:
            listening = [
                pid
                for pid in probes.listening_pids(http_port)
                if not probes.cmdline(pid).startswith("nginx")
            ]
            if not listening:
                raise BenchError(f"nothing but nginx listens on port {http_port}: --server-pid")
            pids = sorted({p for pid in listening for p in probes.process_tree(pid)})
        super().__init__(base_url, http_port, redis_url, pids)
        self.name = label


class WsloopServer(Server):
    """A wsloop stack: one websocket worker, found through its health endpoint."""

    name = "wsloop"
    counts_sockets = True

    def __init__(self, base_url: str, http_port: int, redis_url: str) -> None:
        self.base_url = base_url
        self.other_pids_seen: set[int] = set()
        self.pid = int(self.health()["pid"])
        super().__init__(base_url, http_port, redis_url, [self.pid])

    def health(self) -> dict[str, Any]:
        try:
            data = probes.http_json(self.base_url, "/healthz/wsloop")
        except OSError as exc:
            raise BenchError(f"{self.base_url}/healthz/wsloop: {exc}") from exc
        pid = int(data["pid"])
        if hasattr(self, "pid") and pid != self.pid:
            self.other_pids_seen.add(pid)
        return data

    def sockets(self) -> int:
        return int(self.health()["sockets"])

    def wait_sockets(self, count: int, timeout_s: float = SERVER_COUNT_TIMEOUT_S) -> int:
        """Poll the health endpoint until the worker holds ``count`` sockets; the last count."""
        deadline = time.monotonic() + timeout_s
        while True:
            held = self.sockets()
            if held == count or time.monotonic() > deadline:
                return held
            time.sleep(0.1)

    def metrics(self) -> dict[str, float]:
        """The pool's Prometheus figures (``/metrics/wsloop``, all its workers)."""
        try:
            return probes.prometheus_samples(self.base_url, "/metrics/wsloop")
        except OSError as exc:
            raise BenchError(f"{self.base_url}/metrics/wsloop: {exc}") from exc

    def redis_connections(self) -> list[str]:
        assert self.redis is not None
        return probes.wsloop_redis_connections(self.redis, self.pid)


class HealthProbe:
    """Times ``GET /healthz/wsloop`` every ``HEALTH_PROBE_INTERVAL_S`` while a phase runs: how
    long the worker keeps other requests (handshakes, health checks) waiting while it fans out.
    Does nothing against a peer (no such endpoint)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.samples_ms: list[float] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                probes.http_json(self.server.base_url, "/healthz/wsloop")
            except OSError:
                self.failures += 1
            else:
                self.samples_ms.append((time.perf_counter() - started) * 1000)
            self._stop.wait(HEALTH_PROBE_INTERVAL_S)

    def __enter__(self) -> HealthProbe:
        if isinstance(self.server, WsloopServer):
            self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def result(self) -> dict[str, Any]:
        return {**summarize_ms(self.samples_ms), "failures": self.failures}


def cpu_seconds(groups: dict[str, list[int]]) -> dict[str, float]:
    return {name: sum(probes.cpu_s(p) for p in pids) for name, pids in groups.items()}


class CpuMeter:
    """CPU seconds used by each part of the system between ``start`` and ``stop``."""

    def __init__(self, server: Server, client_pids: list[int]) -> None:
        self.groups = {**server.process_groups(), "clients": client_pids}
        self._start: dict[str, float] = {}
        self._wall = 0.0

    def _sample(self) -> dict[str, float]:
        return {**cpu_seconds(self.groups), "coordinator": time.process_time()}

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


class Sampler:
    """The whole run over time, every ``SAMPLE_INTERVAL_S`` in a thread: sockets the clients
    hold, deliveries/s, RSS of the server and nginx, Redis memory and clients (and the server's
    own Redis connections), CPU of each part (% of one core over the interval), and the phase
    the bench is in. Prints a progress line
    each second. Reading /proc and ``INFO`` costs the parts under test nothing measurable."""

    def __init__(
        self,
        server: Server,
        progress: Callable[[], Progress],
        client_pids: list[int],
        log: Callable[[str], None],
    ) -> None:
        self.server = server
        self.progress = progress
        self.groups = {**server.process_groups(), "clients": client_pids}
        self.log = log
        self.phase = "start"
        self.samples: list[dict[str, Any]] = []
        self.phases: list[dict[str, Any]] = []  # when the run entered each phase
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="sampler")

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def series(self, phase: str) -> list[dict[str, Any]]:
        """The samples taken in ``phase``, after the last one taken before it began (its
        baseline); empty if none fell in it."""
        inside = [index for index, s in enumerate(self.samples) if s["phase"] == phase]
        if not inside:
            return []
        return self.samples[max(inside[0] - 1, 0) : inside[-1] + 1]

    def enter(self, phase: str) -> None:
        """The run is in ``phase`` from now on (samples are tagged with it)."""
        self.phase = phase
        self.phases.append({"t_s": round(time.monotonic() - self._started, 3), "phase": phase})

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        last_cpu = cpu_seconds(self.groups)
        last_deliveries, last_t = 0, 0.0
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            t = time.monotonic() - self._started
            progress = self.progress()
            cpu = cpu_seconds(self.groups)
            interval = t - last_t
            try:
                redis_kib = self.server.redis_memory_kib()
                redis_clients = self.server.redis_clients()
                server_connections = len(self.server.redis_connections())
            except (redis.RedisError, OSError):
                redis_kib = redis_clients = server_connections = -1
            sample = {
                "t_s": round(t, 2),
                "phase": self.phase,
                "sockets": progress.open,
                "deliveries_per_s": round((progress.deliveries - last_deliveries) / interval),
                "connect_failures": progress.failures,
                "server_rss_kib": self.server.rss_kib(),
                "nginx_rss_kib": self.server.nginx_rss_kib(),
                "redis_used_memory_kib": redis_kib,
                "redis_connected_clients": redis_clients,
                "redis_connections": server_connections,  # the server's own (wsloop names them)
                "cpu_pct_of_one_core": {
                    name: round(100.0 * (cpu[name] - last_cpu[name]) / interval, 1) for name in cpu
                },
            }
            self.samples.append(sample)
            last_cpu, last_deliveries, last_t = cpu, progress.deliveries, t
            if len(self.samples) % PROGRESS_EVERY_SAMPLES == 0:
                self.log(self._line(self.samples[-PROGRESS_EVERY_SAMPLES:]))

    def _line(self, recent: list[dict[str, Any]]) -> str:
        """The last second: averages over its samples (one message a second to 10,000 sockets
        lands in every other sample), the latest socket count and RSS."""
        last = recent[-1]

        def mean(values: list[float]) -> float:
            return sum(values) / len(values)

        deliveries = mean([s["deliveries_per_s"] for s in recent])
        cpu = {
            part: mean([s["cpu_pct_of_one_core"].get(part, 0.0) for s in recent])
            for part in ("server", "nginx", "clients")
        }
        return (
            f"  .. {last['phase']}: {last['sockets']:,} open, {deliveries:,.0f} deliveries/s, "
            f"{self.server.name} {cpu['server']:.0f} % CPU {last['server_rss_kib'] / 1024:,.0f} "
            f"MiB, nginx {cpu['nginx']:.0f} %, clients {cpu['clients']:.0f} %"
        )


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
