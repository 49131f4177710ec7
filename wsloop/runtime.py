"""Everything one websocket worker process shares: settings, broker, hub, keepalive timers,
presence refreshes, and the worker's own recovery after its Redis subscription was lost.

Created lazily on the first request of each process (never in a pre-fork master), so the Redis
connections and greenlets belong to the worker that uses them.
"""

from __future__ import annotations

import itertools
import logging
import math
import operator
import os
import secrets
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import gevent
import gevent.event
import redis

from . import conf
from .broker import Broker, BrokerUnavailable
from .broker_redis import RedisBroker
from .channels import ChannelPlan, facility_of_channel
from .envelope import resync_frame
from .history import UNKNOWN, Position, Resync
from .history_redis import HistoryGap
from .hub import DISPATCH_BATCH, Hub, Member
from .metrics import Exporter
from .presence_store import REFRESHES_PER_TTL, Change, Entry
from .presence_writer import PresenceWriter
from .protocol import CloseCode, encode_ping, encode_text
from .recovery import WorkerRecovery, WorkerStep
from .redis_pool import cooperative_connection_class, cooperative_pool, get_pool

logger = logging.getLogger(__name__)

T = TypeVar("T")


# A zero sleep would only run ready callbacks; a short timer also lets the loop poll sockets,
# so handshakes, health checks and client frames get their turn during a long broadcast.
YIELD_PAUSE_S = 0.0001
# Pings and heartbeats go out in small waves, one every 50 ms, not all at once: the pongs of
# 10,000 sockets pinged together arrive together, and reading them held a worker's deliveries
# for 0.25-0.65 s every interval; in 20 waves of 500 (one a second) they still cost other
# deliveries 10-15 ms at p99; in waves of 25 they cost nothing measurable (loadtest.rooms).
SWEEP_WAVE_PAUSE_S = 0.05
# A worker that cannot read history after resubscribing (Redis flapping) tries again this often,
# this many times, before telling its sockets to resync.
REPLAY_ATTEMPTS = 5
REPLAY_RETRY_S = 1.0


def yield_to_others() -> None:
    gevent.sleep(YIELD_PAUSE_S)


class Socket(Member, Protocol):
    """A websocket as its worker sees it (``wsloop.connection.WebSocket``)."""

    @property
    def plan(self) -> ChannelPlan:
        """What it subscribes and publishes to."""

    @property
    def client_id(self) -> str:
        """Unique across workers and their restarts (presence, origin of its publishes)."""

    @property
    def is_open(self) -> bool:
        """Not closing nor closed."""

    @property
    def last_seen(self) -> float:
        """``time.monotonic()`` when it last sent anything."""

    def close(self, code: CloseCode, reason: str = "") -> None:
        """Start the closing handshake."""


@dataclass
class Metrics:
    """Counters of one worker (in the health report; ``metrics.Exporter`` exports them)."""

    sockets_opened: int = 0
    recoveries: int = 0
    resyncs: int = 0
    retries: int = 0
    worker_replayed: int = 0
    messages_in: int = 0
    messages_out: int = 0
    dropped_frames: int = 0
    slow_consumers: int = 0
    idle_timeouts: int = 0


class Runtime:
    def __init__(self, settings: conf.Settings, broker: Broker) -> None:
        self.settings = settings
        self.broker = broker
        self.hub = Hub(broker, settings.channel_prefix)
        self.recovery = WorkerRecovery()
        self._live = gevent.event.Event()  # set while self.recovery.phase is LIVE
        self._live.set()
        self._facility_sockets: Counter[str] = Counter()
        self.metrics = Metrics()
        self.exporter = Exporter.from_environment(self.figures)
        self.sockets: set[Socket] = set()
        self._presence = PresenceWriter(broker.presence)
        self.heartbeat_bytes = settings.heartbeat.encode() if settings.heartbeat else None
        self._started = False
        # Socket ids: unique across workers and restarts of this one.
        self._client_prefix = f"{os.getpid():x}{secrets.token_hex(3)}"
        self._client_numbers = itertools.count(1)

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        self.broker.start(self._dispatch, self._recover_after_reconnect)
        gevent.spawn(self._ping_forever)
        gevent.spawn(self._presence.run_forever)
        gevent.spawn(self._refresh_presence_forever)
        self.exporter.start()
        if self.settings.heartbeat:
            gevent.spawn(self._heartbeat_forever, self.settings.heartbeat)

    def new_client_id(self) -> str:
        return f"{self._client_prefix}-{next(self._client_numbers):x}"

    def wait_live(self, timeout_s: float) -> bool:
        """Wait while the worker replays what its lost subscription missed (False: timed out)."""
        return bool(self._live.wait(timeout_s))

    def attach(self, websocket: Socket) -> None:
        self.sockets.add(websocket)
        self.metrics.sockets_opened += 1
        facility = websocket.plan.facility
        first = self._facility_sockets[facility] == 0
        self._facility_sockets[facility] += 1
        if first:
            self.recovery.follow(facility)
        self.hub.join(websocket, websocket.plan.subscribe)
        entry = self._presence_entry(websocket)
        if entry is not None:
            self._presence.add(Change.JOIN, entry)
        if first:
            self.recovery.position_read(facility, self._newest_position(facility))

    def detach(self, websocket: Socket) -> None:
        self.hub.leave(websocket, websocket.plan.subscribe)
        self.sockets.discard(websocket)
        entry = self._presence_entry(websocket)
        if entry is not None:
            self._presence.add(Change.LEAVE, entry)
        facility = websocket.plan.facility
        self._facility_sockets[facility] -= 1
        if self._facility_sockets[facility] <= 0:
            del self._facility_sockets[facility]
            self.recovery.unfollow(facility)

    @staticmethod
    def _presence_entry(websocket: Socket) -> Entry | None:
        plan = websocket.plan
        if plan.user is None:
            return None
        return Entry(plan.facility, plan.user, websocket.client_id)

    def _refresh_presence_forever(self) -> None:
        """Keep this worker's presence entries alive; a dead worker's expire on their own."""
        while True:
            gevent.sleep(self.broker.presence.ttl_s / REFRESHES_PER_TTL)
            entries = [e for e in map(self._presence_entry, tuple(self.sockets)) if e]
            if entries:
                try:
                    self.broker.presence.refresh(entries)
                except (redis.RedisError, OSError) as exc:
                    logger.warning("presence refresh failed: %s", exc)

    def _newest_position(self, facility: str) -> Position | None:
        """Where this worker starts following a facility (one read per facility and worker)."""
        try:
            return self.broker.last_position(facility)
        except BrokerUnavailable as exc:
            logger.warning("no history position for %s: %s", facility, exc)
            return UNKNOWN

    def health(self) -> dict[str, object]:
        """What ``/healthz/wsloop`` reports: status "ok" while Redis answers, else "degraded"."""
        redis_ok = self.broker.ping()
        return {
            "status": "ok" if redis_ok else "degraded",
            "redis": redis_ok,
            "pid": os.getpid(),
            "sockets": len(self.sockets),
            "channels": len(self.hub.channels),
            "recovery": self.recovery.phase.value,
            "redis_reconnects": getattr(self.broker, "reconnects", 0),
            **vars(self.metrics),
        }

    def figures(self) -> dict[str, int]:
        """The worker's gauges and counters, for ``metrics.Exporter``."""
        return {
            "sockets_open": len(self.sockets),
            "channels": len(self.hub.channels),
            "redis_reconnects": getattr(self.broker, "reconnects", 0),
            **vars(self.metrics),
        }

    def shutdown(self) -> None:
        """Close every socket with GOING_AWAY (worker reload or stop)."""
        for websocket in tuple(self.sockets):
            websocket.close(CloseCode.GOING_AWAY, "server restarting")
        self._presence.flush()
        self.exporter.stop()

    def _dispatch(self, channel: str, payloads: list[bytes]) -> None:
        fresh = self.recovery.live(channel, payloads)
        if fresh:
            self.metrics.messages_out += self.hub.dispatch(channel, fresh, pause=yield_to_others)

    def _recover_after_reconnect(self) -> None:
        """The subscription was lost and is back: live messages wait while the worker replays
        what history kept since the last message it saw per facility (``WorkerRecovery``)."""
        self._live.clear()
        if self.recovery.resubscribed():
            gevent.spawn(self._recover)

    def _recover(self) -> None:
        attempts = 0
        while True:
            step = self.recovery.next_step()
            if step is WorkerStep.REPLAY:
                attempts += 1
                if not self._replay_missed(last_attempt=attempts >= REPLAY_ATTEMPTS):
                    gevent.sleep(REPLAY_RETRY_S)
                    self.recovery.replay_again()
            elif step is WorkerStep.RELEASE:
                self._release_waiting()
            else:  # nothing yields between the last release and going live
                self._live.set()
                return

    def _release_waiting(self) -> None:
        for channel, messages in self.recovery.take_waiting():
            try:
                fresh = self.recovery.admit(facility_of_channel(channel), messages)
                self.metrics.messages_out += self.hub.dispatch(
                    channel, fresh, pause=yield_to_others
                )
            except Exception:  # one bad run must not keep the worker recovering
                logger.exception("releasing messages on %s failed", channel)

    def _replay_missed(self, *, last_attempt: bool) -> bool:
        """Per facility, what history kept since the last message this worker saw (once the bus
        confirmed every subscription, so nothing falls between replay and live); the sockets
        that relied on it are told to resync where it cannot be done. False if history could
        not be read and this was not the last attempt (the positions reached are kept)."""
        complete = True
        try:
            if not self.broker.wait_subscribed(self.hub.channels, self.settings.recovery_timeout_s):
                logger.warning("subscriptions not confirmed in time, replaying anyway")
            by_facility: dict[str, set[str]] = {}
            for channel in self.hub.channels:
                by_facility.setdefault(facility_of_channel(channel), set()).add(channel)
            for facility, last in self.recovery.replay_plan():
                channels = by_facility.get(facility)
                if not channels:
                    continue
                try:
                    reason = self._replay_facility(facility, last, frozenset(channels))
                except BrokerUnavailable as exc:
                    logger.warning("no worker recovery on %s yet: %s", facility, exc)
                    if not last_attempt:
                        complete = False
                        continue
                    reason = Resync.UNAVAILABLE
                if reason is not None:
                    self._tell_lost(channels, reason)
                    self.recovery.replay_failed(facility, last)
        except Exception:
            logger.exception("worker recovery failed")
        return complete

    def _replay_facility(
        self, facility: str, last: Position | None, channels: frozenset[str]
    ) -> Resync | None:
        """Dispatch what the facility's history holds after ``last``, up to its newest entry at
        the start (anything later came on the confirmed subscription and waits, so the replay
        does not chase a busy stream); why not, if it cannot. Raises BrokerUnavailable."""
        try:
            end = self.broker.last_position(facility)
            replay = self.broker.replay(facility, last, channels)
            if replay.resync is not None:
                return replay.resync
            for page in replay.pages:
                fresh, over = self.recovery.replayed(facility, page, end)
                self.metrics.worker_replayed += len(fresh)
                for channel, run in itertools.groupby(fresh, key=operator.itemgetter(0)):
                    self.metrics.messages_out += self.hub.dispatch(
                        channel, [message for _, message in run], pause=yield_to_others
                    )
                if over:
                    break
        except HistoryGap:
            return Resync.EXPIRED
        return None

    def _tell_lost(self, channels: set[str], reason: Resync) -> None:
        frame = resync_frame(reason)
        told: set[int] = set()
        for channel in channels:
            for member in self.hub.members_of(channel):
                if id(member) not in told:
                    told.add(id(member))
                    if member.recovery.worker_lost(reason):
                        self.metrics.resyncs += 1
                        member.deliver(frame)

    def _ping_forever(self) -> None:
        """RFC 6455 pings keep proxies from timing out idle sockets and find dead peers: a
        socket that sent nothing (not even a pong) for ``idle_timeout_s`` is dropped."""
        frame = encode_ping()

        def ping(websocket: Socket) -> None:
            if not websocket.is_open:  # closing already: its close timeout ends it
                return
            if websocket.last_seen < time.monotonic() - self.settings.idle_timeout_s:
                self.metrics.idle_timeouts += 1
                websocket.close(CloseCode.GOING_AWAY, "idle timeout")
            else:
                websocket.deliver(frame)

        self._sweep_forever(self.settings.ping_interval_s, ping)

    def _heartbeat_forever(self, heartbeat: str) -> None:
        frame = encode_text(heartbeat)
        self._sweep_forever(self.settings.heartbeat_interval_s, lambda ws: ws.deliver(frame))

    def _sweep_forever(self, interval_s: float, visit: Callable[[Socket], None]) -> None:
        """Visit every socket once per ``interval_s``, in waves ``SWEEP_WAVE_PAUSE_S`` apart.
        A socket opened during a sweep waits for the next one (its first visit comes within two
        intervals); one closed since is skipped."""
        count = max(1, round(interval_s / SWEEP_WAVE_PAUSE_S))
        pause_s = interval_s / count
        while True:
            waves = sweep_waves(tuple(self.sockets), count)
            for number in range(count):
                gevent.sleep(pause_s)
                for index, websocket in enumerate(waves[number] if number < len(waves) else (), 1):
                    if websocket in self.sockets:
                        visit(websocket)
                    if index % DISPATCH_BATCH == 0:
                        yield_to_others()


def sweep_waves(sockets: Sequence[T], waves: int) -> list[Sequence[T]]:
    """``sockets`` cut into at most ``waves`` consecutive slices of equal size (the last may be
    shorter); each socket is in exactly one."""
    size = max(1, math.ceil(len(sockets) / waves))
    return [sockets[start : start + size] for start in range(0, len(sockets), size)]


def create_runtime(settings: conf.Settings, *, cooperative_redis: bool = False) -> Runtime:
    """A started runtime on Redis. ``cooperative_redis``: for a gevent hub in a thread of a
    process that is not monkey-patched (its own pool of gevent sockets, not Django's)."""
    url = settings.redis_url
    if cooperative_redis:
        pool = cooperative_pool(url, settings.redis_pool_size)
        connection_class = cooperative_connection_class(url)
    else:
        pool, connection_class = get_pool(url, settings.redis_pool_size), None
    broker = RedisBroker(
        url,
        pool,
        settings.channel_prefix,
        settings.history,
        settings.presence_ttl_s,
        connection_class=connection_class,
    )
    runtime = Runtime(settings, broker)
    runtime.start()
    return runtime


_runtimes: dict[int, Runtime] = {}  # by pid: a runtime is never shared across a fork


def get_runtime() -> Runtime:
    """This (monkey-patched) process's runtime, created and started on first use."""
    runtime = _runtimes.get(os.getpid())
    if runtime is None:
        runtime = _runtimes[os.getpid()] = create_runtime(conf.load())
    return runtime


def shutdown() -> None:
    """Close this process's sockets with GOING_AWAY, if it has a runtime."""
    runtime = _runtimes.get(os.getpid())
    if runtime is not None:
        runtime.shutdown()
