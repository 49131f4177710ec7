"""Prometheus metrics of the websocket loop, served at ``/metrics/wsloop`` beside the health report.

Hot paths only bump the plain integers of ``runtime.Metrics``; the exposition is built from them
(prometheus_client's text format):

- One process (runserver, a one-worker standalone uWSGI): a collector reads the runtime when
  Prometheus scrapes. Figures are exact.
- A uWSGI pool with several workers: set ``PROMETHEUS_MULTIPROC_DIR`` to a directory of the
  pool's own, emptied before the pool starts (the Ansible unit's RuntimeDirectory, a container's
  tmpfs). Each worker copies its figures into prometheus_client's multiprocess files every
  ``SYNC_INTERVAL_S``; a scrape, answered by whichever worker nginx picks, sums every worker's
  files: the pool's totals, at most that stale. Counters of a worker that exited stay in the
  sums (they never go backwards across a reload); gauges count live workers only.
"""

from __future__ import annotations

import enum
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import gevent
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge
from prometheus_client import generate_latest as render_registry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own variable
SYNC_INTERVAL_S = 1.0  # how stale a pool-wide scrape may be; Prometheus scrapes every 15 s+
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Kind(enum.Enum):
    COUNTER = "counter"
    GAUGE = "gauge"


Figures = Mapping[str, float]  # what a runtime reports: Runtime.figures()


@dataclass(frozen=True)
class Family:
    """One exported metric: its name (counters get ``_total``), help, kind, and the key of
    the runtime's figures it exports."""

    name: str
    help: str
    kind: Kind
    key: str


FAMILIES = (
    Family("wsloop_sockets_open", "Websockets open now.", Kind.GAUGE, "sockets_open"),
    Family(
        "wsloop_channels",
        "Redis channels subscribed (one subscription per channel and worker).",
        Kind.GAUGE,
        "channels",
    ),
    Family(
        "wsloop_sockets_opened",
        "Websockets accepted.",
        Kind.COUNTER,
        "sockets_opened",
    ),
    Family(
        "wsloop_messages_received",
        "Messages received from websockets.",
        Kind.COUNTER,
        "messages_in",
    ),
    Family(
        "wsloop_messages_sent",
        "Messages queued to websockets (one per recipient).",
        Kind.COUNTER,
        "messages_out",
    ),
    Family(
        "wsloop_queue_dropped_frames",
        "Frames discarded with the send queue of a slow consumer.",
        Kind.COUNTER,
        "dropped_frames",
    ),
    Family(
        "wsloop_slow_consumer_closes",
        "Websockets closed with 4008 because their send queue passed its limit.",
        Kind.COUNTER,
        "slow_consumers",
    ),
    Family(
        "wsloop_idle_timeouts",
        "Websockets closed after sending nothing, not even a pong, for the idle timeout.",
        Kind.COUNTER,
        "idle_timeouts",
    ),
    Family(
        "wsloop_recoveries",
        "Reconnects served from the message history (since=).",
        Kind.COUNTER,
        "recoveries",
    ),
    Family(
        "wsloop_resyncs",
        "Resyncs sent: history could not fill a socket's gap (expired, reset, unavailable).",
        Kind.COUNTER,
        "resyncs",
    ),
    Family(
        "wsloop_start_retries",
        "Envelope sockets closed with 1013 because history could not be read at their start.",
        Kind.COUNTER,
        "retries",
    ),
    Family(
        "wsloop_worker_replayed_messages",
        "Messages a worker replayed from history after its Redis subscription came back.",
        Kind.COUNTER,
        "worker_replayed",
    ),
    Family(
        "wsloop_redis_reconnects",
        "Times the Redis subscription connection was lost and made again.",
        Kind.COUNTER,
        "redis_reconnects",
    ),
)


class FiguresCollector(Collector):
    """Reads one process's figures at scrape time."""

    def __init__(self, read: Callable[[], Figures]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        figures = self._read()
        for family in FAMILIES:
            value = figures[family.key]
            if family.kind is Kind.COUNTER:
                yield CounterMetricFamily(family.name, family.help, value=value)
            else:
                yield GaugeMetricFamily(family.name, family.help, value=value)


class MultiprocessSync:
    """Copies one worker's figures into prometheus_client's multiprocess files."""

    def __init__(self, read: Callable[[], Figures], directory: Path) -> None:
        self._read = read
        self._directory = directory
        self._counters = {
            f.name: Counter(f.name, f.help, registry=None)
            for f in FAMILIES
            if f.kind is Kind.COUNTER
        }
        self._gauges = {
            f.name: Gauge(f.name, f.help, registry=None, multiprocess_mode="livesum")
            for f in FAMILIES
            if f.kind is Kind.GAUGE
        }
        self._copied: dict[str, float] = dict.fromkeys(self._counters, 0)

    def sync(self) -> None:
        figures = self._read()
        for family in FAMILIES:
            value = figures[family.key]
            if family.kind is Kind.GAUGE:
                self._gauges[family.name].set(value)
                continue
            delta = value - self._copied[family.name]
            if delta > 0:
                self._counters[family.name].inc(delta)
                self._copied[family.name] = value
        self.forget_dead_workers()

    def forget_dead_workers(self) -> None:
        """Drop the gauges of workers that died without saying so (SIGKILL, a crash)."""
        for path in self._directory.glob("gauge_live*_*.db"):
            pid = int(path.stem.rsplit("_", 1)[1])
            if not _alive(pid):
                mark_process_dead(pid, str(self._directory))  # type: ignore[no-untyped-call]

    def render(self) -> bytes:
        self.sync()  # the answering worker's own figures are current
        registry = CollectorRegistry()
        MultiProcessCollector(registry, str(self._directory))  # type: ignore[no-untyped-call]
        return render_registry(registry)

    def forget_self(self) -> None:
        mark_process_dead(os.getpid(), str(self._directory))  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Exporter:
    """What ``/metrics/wsloop`` answers for a runtime's figures, in either mode (module doc)."""

    def __init__(self, read: Callable[[], Figures], multiprocess_dir: str | None = None) -> None:
        self._read = read
        self._sync = MultiprocessSync(read, Path(multiprocess_dir)) if multiprocess_dir else None

    @classmethod
    def from_environment(cls, read: Callable[[], Figures]) -> Exporter:
        return cls(read, os.environ.get(MULTIPROCESS_DIR_ENV) or None)

    def start(self) -> None:
        if self._sync is not None:
            gevent.spawn(self._sync_forever, self._sync)

    def render(self) -> bytes:
        if self._sync is not None:
            return self._sync.render()
        registry = CollectorRegistry()
        registry.register(FiguresCollector(self._read))
        return render_registry(registry)

    def stop(self) -> None:
        if self._sync is not None:
            self._sync.forget_self()

    @staticmethod
    def _sync_forever(sync: MultiprocessSync) -> None:
        while True:
            gevent.sleep(SYNC_INTERVAL_S)
            try:
                sync.sync()
            except OSError as exc:  # the directory went away or filled up: keep serving
                logger.warning("metrics not synced: %s", exc)
