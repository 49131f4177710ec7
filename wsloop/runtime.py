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
from typing import TypeVar

import gevent
import gevent.event
import redis

from . import conf
from .broker import Broker, BrokerUnavailable
from .broker_redis import RedisBroker
from .connection import WebSocket
from .envelope import resync_frame
from .history import UNKNOWN, Incoming, Position, Resync, untag
from .history_redis import HistoryGap
from .hub import DISPATCH_BATCH, Hub
from .metrics import Exporter
from .presence_store import REFRESHES_PER_TTL, Change, Entry
from .presence_writer import PresenceWriter
from .protocol import CloseCode, encode_ping, encode_text
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


def yield_to_others() -> None:
    gevent.sleep(YIELD_PAUSE_S)


@dataclass
class Metrics:
    """Counters of one worker (in the health report; ``metrics.Exporter`` exports them)."""

    sockets_opened: int = 0
    recoveries: int = 0
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
        # The last position seen per facility with local sockets (None: anything in history is
        # newer): live duplicates of a replay are dropped by it, and after a lost subscription
        # the worker replays from it.
        self._positions: dict[str, Position | None] = {}
        self._facility_sockets: Counter[str] = Counter()
        # While the worker replays after a lost subscription, live messages wait here; ``live``
        # is clear meanwhile, and sockets recovering with since= wait for it.
        self._buffered: list[tuple[str, list[bytes]]] | None = None
        self._recovery_generation = 0
        self._recovery: gevent.Greenlet | None = None
        self.live = gevent.event.Event()
        self.live.set()
        self.metrics = Metrics()
        self.exporter = Exporter.from_environment(self.figures)
        self.sockets: set[WebSocket] = set()
        self._presence = PresenceWriter(broker.presence)
        self.heartbeat_bytes = settings.heartbeat.encode() if settings.heartbeat else None
        self._started = False
        # Socket ids in presence: unique across workers and restarts of this one.
        self._client_prefix = f"{os.getpid():x}{secrets.token_hex(3)}"

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

    def attach(self, websocket: WebSocket) -> None:
        self.sockets.add(websocket)
        self.metrics.sockets_opened += 1
        facility = websocket.plan.facility
        if self._facility_sockets[facility] == 0 and facility not in self._positions:
            self._positions[facility] = self._newest_position(facility)
        self._facility_sockets[facility] += 1
        self.hub.join(websocket, websocket.plan.subscribe)
        entry = self._presence_entry(websocket)
        if entry is not None:
            self._presence.add(Change.JOIN, entry)

    def detach(self, websocket: WebSocket) -> None:
        self.hub.leave(websocket, websocket.plan.subscribe)
        self.sockets.discard(websocket)
        entry = self._presence_entry(websocket)
        if entry is not None:
            self._presence.add(Change.LEAVE, entry)
        facility = websocket.plan.facility
        self._facility_sockets[facility] -= 1
        if self._facility_sockets[facility] <= 0:
            del self._facility_sockets[facility]
            self._positions.pop(facility, None)

    def _presence_entry(self, websocket: WebSocket) -> Entry | None:
        plan = websocket.plan
        if plan.user is None:
            return None
        return Entry(plan.facility, plan.user, f"{self._client_prefix}-{id(websocket):x}")

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
        if self._buffered is not None:
            self._buffered.append((channel, payloads))
            return
        self._deliver_live(channel, payloads)

    def _deliver_live(self, channel: str, payloads: list[bytes]) -> None:
        facility = facility_of(channel)
        fresh = [m for m in map(untag, payloads) if self._is_new(facility, m)]
        self.metrics.messages_out += self.hub.dispatch(channel, fresh, pause=yield_to_others)

    def _is_new(self, facility: str, message: Incoming) -> bool:
        """Record the message's position; False for one at or before the last seen (a message
        both replayed after a reconnect and still buffered on the new subscription)."""
        position = message.position
        if position is None:
            return True
        last = self._positions.get(facility)
        if last is not None and position.not_after(last):
            return False
        if facility in self._positions:
            self._positions[facility] = position
        return True

    def _recover_after_reconnect(self) -> None:
        """The subscription was lost and is back: hold live messages, replay what history kept
        since the last message this worker saw (once the bus confirmed every subscription, so
        nothing falls between replay and live), then release the held ones. A reconnect during
        a recovery makes the running one replay again; only one runs at a time."""
        self.hub.forget_own_publishes()
        self._recovery_generation += 1
        self.live.clear()
        if self._buffered is None:
            self._buffered = []
        if self._recovery is None or self._recovery.dead:
            self._recovery = gevent.spawn(self._replay_then_release)

    def _replay_then_release(self) -> None:
        replayed = -1
        while True:
            if replayed != self._recovery_generation:
                replayed = self._recovery_generation
                self._replay_once()
            elif self._buffered:
                batch, self._buffered = self._buffered, []
                for channel, payloads in batch:
                    try:
                        self._deliver_live(channel, payloads)
                    except Exception:  # one bad run must not keep the worker buffering
                        logger.exception("releasing messages on %s failed", channel)
            else:  # nothing yields between these checks and going live
                self._buffered = None
                self.live.set()
                return

    def _replay_once(self) -> None:
        try:
            if not self.broker.wait_subscribed(self.hub.channels, self.settings.recovery_timeout_s):
                logger.warning("subscriptions not confirmed in time, replaying anyway")
            self._replay_missed()
        except Exception:
            logger.exception("worker recovery failed")

    def _replay_missed(self) -> None:
        """Per facility, what history kept since the last message this worker saw; sockets
        that cannot be replayed to are told to resync."""
        by_facility: dict[str, set[str]] = {}
        for channel in self.hub.channels:
            by_facility.setdefault(facility_of(channel), set()).add(channel)
        for facility, last in list(self._positions.items()):
            channels = by_facility.get(facility)
            if not channels:
                continue
            reason = self._replay_facility(facility, last, frozenset(channels))
            if reason is not None:
                self._tell_resync(channels, reason)
                # Only a replay that delivered nothing leaves the worker not knowing where it
                # is; otherwise the position reached still filters what was held meanwhile.
                if facility in self._positions and self._positions[facility] == last:
                    self._positions[facility] = UNKNOWN

    def _replay_facility(
        self, facility: str, last: Position | None, channels: frozenset[str]
    ) -> Resync | None:
        """Dispatch what the facility's history holds after ``last``, up to its newest entry at
        the start (anything later arrived on the confirmed subscription and waits in the buffer,
        so the replay does not chase a busy stream); why not, if it cannot."""
        try:
            end = self.broker.last_position(facility)
            replay = self.broker.replay(facility, last, channels)
            if replay.resync is not None:
                return replay.resync
            for page in replay.pages:
                upto_end = [
                    (c, m) for c, m in page if end and m.position and m.position.not_after(end)
                ]
                for channel, run in itertools.groupby(upto_end, key=operator.itemgetter(0)):
                    fresh = [m for _, m in run if self._is_new(facility, m)]
                    self.metrics.messages_out += self.hub.dispatch(
                        channel, fresh, pause=yield_to_others
                    )
                if len(upto_end) < len(page):
                    break
        except BrokerUnavailable as exc:
            logger.warning("no worker recovery on %s: %s", facility, exc)
            return Resync.UNAVAILABLE
        except HistoryGap:
            return Resync.EXPIRED
        return None

    def _tell_resync(self, channels: set[str], reason: Resync) -> None:
        frame = resync_frame(reason)
        told: set[int] = set()
        for channel in channels:
            for member in self.hub.members_of(channel):
                # a recovering socket checks its own replay; its verdict is the one it needs
                if member.envelope and not member.recovering and id(member) not in told:
                    told.add(id(member))
                    member.deliver(frame)

    def _ping_forever(self) -> None:
        """RFC 6455 pings keep proxies from timing out idle sockets and find dead peers: a
        socket that sent nothing (not even a pong) for ``idle_timeout_s`` is dropped."""
        frame = encode_ping()

        def ping(websocket: WebSocket) -> None:
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

    def _sweep_forever(self, interval_s: float, visit: Callable[[WebSocket], None]) -> None:
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


def facility_of(channel: str) -> str:
    """Facilities contain no colon: the last segment of a channel name."""
    return channel.rpartition(":")[2]


def shutdown() -> None:
    """Close this process's sockets with GOING_AWAY, if it has a runtime."""
    runtime = _runtimes.get(os.getpid())
    if runtime is not None:
        runtime.shutdown()
