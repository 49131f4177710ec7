"""Redis implementation of the broker, for gevent workers.

Connections per worker process: one pub/sub connection for every channel of every socket, plus the
command pool (``WSLOOP_REDIS_POOL_SIZE``, default 1) for publishing and persisted messages. With
``wsloop.redis_pool.SharedConnectionPool`` as Django's cache ``pool_class``, sessions share that
pool too: two connections per worker at any socket count.

Persistence follows django-websocket-redis: a published message is also SET under the channel's
own name with an expiry, and sent to sockets that subscribe while it lives.

When Redis goes away the listener logs it, retries with exponential backoff and jitter (capped at
``RECONNECT_BACKOFF_CAP_S``), and on success subscribes again to every channel that still has
local sockets and calls the reconnect handler, which replays from history what went through it
meanwhile (``Runtime``). Sockets stay open throughout; raw PUBLISHes of that time are lost.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any

import gevent
import gevent.event
import gevent.lock
import redis
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.client import PubSub
from redis.retry import Retry

from .broker import BrokerUnavailable, MessageHandler, ReconnectHandler, consecutive_runs
from .history import HistoryPolicy, Position
from .history_redis import Page, Published, RedisHistory, Replay
from .presence_store import DEFAULT_TTL_S, RedisPresence

logger = logging.getLogger(__name__)

LISTEN_TIMEOUT_S = 5.0  # how long one read on the subscription waits before looping
HEALTH_CHECK_INTERVAL_S = 15  # PING an idle subscription this often to find dead TCP peers
CONNECT_TIMEOUT_S = 5.0
RECONNECT_BACKOFF_BASE_S = 0.1
RECONNECT_BACKOFF_CAP_S = 5.0  # a worker finds a restarted Redis within this many seconds
SUBSCRIBE_POLL_S = 0.002  # how often the listener looks again while a subscribe is on the wire
# Replay pages read at once by one worker, however many sockets replay: a recovery storm then
# queues at most this many page reads (about a millisecond each) on the command connection,
# ahead of what else needs it (positions, persisted messages, health checks).
REPLAY_READS_AT_ONCE = 4

REDIS_ERRORS = (redis.RedisError, OSError)
DELIVERED_PING = "wsloop-delivered"  # wait_delivered()'s PING, told apart from redis-py's own
DELIVERED_PING_REPLY = DELIVERED_PING.encode()


def _paced(pages: Iterator[Page], slots: gevent.lock.BoundedSemaphore) -> Iterator[Page]:
    """Each page read while holding one of the worker's replay slots (not while it is
    written); Redis errors as BrokerUnavailable."""
    while True:
        with slots:
            try:
                page = next(pages)
            except StopIteration:
                return
            except REDIS_ERRORS as exc:
                raise BrokerUnavailable(f"cannot read history: {exc}") from exc
        yield page


class RedisBroker:
    def __init__(
        self,
        url: str,
        command_pool: redis.ConnectionPool,
        prefix: str,
        history_policies: Mapping[str, HistoryPolicy],
        presence_ttl_s: float = DEFAULT_TTL_S,
        *,
        connection_class: type[redis.Connection] | None = None,
    ) -> None:
        self._url = url
        self._connection_class = connection_class
        self._commands = redis.Redis(connection_pool=command_pool)
        self._history = RedisHistory(self._commands, prefix, history_policies)
        self._presence = RedisPresence(self._commands, prefix, presence_ttl_s)
        self._channels: set[str] = set()
        self._confirmed: set[str] = set()
        self._confirmation = gevent.event.Event()  # set, and replaced, at each confirmation
        self._pubsub: PubSub | None = None
        self._commands_lock = gevent.lock.RLock()
        self._replay_reads = gevent.lock.BoundedSemaphore(REPLAY_READS_AT_ONCE)
        self._wanted = gevent.event.Event()
        self._backoff = ExponentialWithJitterBackoff(
            base=RECONNECT_BACKOFF_BASE_S, cap=RECONNECT_BACKOFF_CAP_S
        )
        self._listener: gevent.Greenlet | None = None
        # wait_delivered(): the callers for the next PING, and those of the one on the wire.
        self._delivery_waiters: list[gevent.event.AsyncResult[bool]] = []
        self._delivery_ping: list[gevent.event.AsyncResult[bool]] | None = None
        self._reset_requested = False
        self.reconnects = 0

    def start(self, on_message: MessageHandler, on_reconnect: ReconnectHandler) -> None:
        if self._listener is None:
            self._listener = gevent.spawn(self._listen, on_message, on_reconnect)

    def subscribe(self, channels: Collection[str]) -> None:
        self._channels.update(channels)
        self._wanted.set()
        self._send(lambda pubsub: pubsub.subscribe(*channels))

    def unsubscribe(self, channels: Collection[str]) -> None:
        self._channels.difference_update(channels)
        self._send(lambda pubsub: pubsub.unsubscribe(*channels))  # type: ignore[no-untyped-call]

    def publish(
        self,
        facility: str,
        channels: Sequence[str],
        payload: bytes,
        expire_s: int,
        origin: str | None = None,
    ) -> Published:
        try:
            return self._history.publish(facility, channels, payload, expire_s, origin)
        except REDIS_ERRORS as exc:
            raise BrokerUnavailable(f"cannot publish: {exc}") from exc

    def replay(self, facility: str, since: Position | None, channels: frozenset[str]) -> Replay:
        try:
            replay = self._history.replay(facility, since, channels)
        except REDIS_ERRORS as exc:
            raise BrokerUnavailable(f"cannot read history: {exc}") from exc
        return Replay(replay.resync, _paced(replay.pages, self._replay_reads))

    def last_position(self, facility: str) -> Position | None:
        try:
            return self._history.last_position(facility)
        except REDIS_ERRORS as exc:
            raise BrokerUnavailable(f"cannot read history: {exc}") from exc

    def current_position(self, facility: str) -> Position | None:
        try:
            return self._history.current_position(facility)
        except REDIS_ERRORS as exc:
            raise BrokerUnavailable(f"cannot read history: {exc}") from exc

    def wait_subscribed(self, channels: Collection[str], timeout_s: float) -> bool:
        """Waiters sleep until the next confirmation, whatever its channel: a start storm costs
        one wake-up per socket and confirmation, not a poll per socket every few ms."""
        deadline = time.monotonic() + timeout_s
        while not self._confirmed.issuperset(channels):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._confirmation.wait(remaining):
                return False
        return True

    def _confirm(self, channel: str) -> None:
        self._confirmed.add(channel)
        confirmation, self._confirmation = self._confirmation, gevent.event.Event()
        confirmation.set()

    def wait_delivered(self, timeout_s: float) -> bool:
        """A PING on the subscription connection: Redis answers it after every message it
        published before, on the same connection. One PING is on the wire at a time; whoever
        asks meanwhile waits for the next one (a start storm costs a PING per round trip, not
        per socket)."""
        if self._pubsub is None:
            return False  # not subscribed: what was published meanwhile will never come
        waiter: gevent.event.AsyncResult[bool] = gevent.event.AsyncResult()
        self._delivery_waiters.append(waiter)
        if self._delivery_ping is None:
            self._ping_for_delivery()
        answer = waiter.wait(timeout_s)
        with contextlib.suppress(ValueError):
            self._delivery_waiters.remove(waiter)
        return answer is True

    def _ping_for_delivery(self) -> None:
        waiters, self._delivery_waiters = self._delivery_waiters, []
        self._delivery_ping = waiters
        if not self._send(lambda pubsub: pubsub.ping(DELIVERED_PING)):
            self._delivered(False)

    def _delivered(self, answered: bool) -> None:
        """The PING on the wire was answered: tell its waiters, and PING for those who came
        meanwhile. Not answered (the subscription is lost): every waiter is told so."""
        waiters, self._delivery_ping = self._delivery_ping or [], None
        if not answered:
            waiters, self._delivery_waiters = waiters + self._delivery_waiters, []
        for waiter in waiters:
            waiter.set(answered)
        if self._delivery_waiters:
            self._ping_for_delivery()

    def fetch_persisted(self, channels: Collection[str]) -> list[tuple[str, bytes]]:
        if not channels:
            return []
        names = list(channels)
        try:
            values = self._commands.mget(names)
        except REDIS_ERRORS as exc:
            raise BrokerUnavailable(f"cannot fetch persisted messages: {exc}") from exc
        return [
            (name, value)
            for name, value in zip(names, values, strict=True)
            if isinstance(value, bytes)
        ]

    @property
    def presence(self) -> RedisPresence:
        return self._presence

    def ping(self) -> bool:
        try:
            return bool(self._commands.ping())
        except REDIS_ERRORS:
            return False

    def _send(self, command: Callable[[PubSub], object]) -> bool:
        """One command on the subscription at a time: a command may wait for a health-check
        reply, and redis-py's own lock does not exclude greenlets of an unpatched thread. False
        if it was not sent (the listener subscribes to self._channels once connected)."""
        with self._commands_lock:
            pubsub = self._pubsub
            if pubsub is None or pubsub.connection is None:
                return False
            try:
                command(pubsub)
            except REDIS_ERRORS as exc:
                logger.debug("subscription command failed, the listener will reconnect: %s", exc)
                self._reset_requested = True
                return False
            return True

    def _connect(self) -> PubSub:
        options = {"connection_class": self._connection_class} if self._connection_class else {}
        client = redis.Redis.from_url(
            self._url,
            **options,
            retry=Retry(NoBackoff(), 0),  # this module owns reconnection and backoff
            health_check_interval=HEALTH_CHECK_INTERVAL_S,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            socket_keepalive=True,
            client_name=f"wsloop:{os.getpid()}:sub",
        )
        pubsub: PubSub = client.pubsub()  # type: ignore[no-untyped-call]
        self._confirmed.clear()
        pubsub.ping()  # connects; fails fast while Redis is away
        subscribed: set[str] = set()
        # Channels added or dropped while a command was on the wire are caught up with until a
        # pass needs no command; the caller then publishes the pubsub without yielding, so no
        # subscribe() can fall between the snapshot and the handover.
        while True:
            wanted = set(self._channels)
            added, dropped = wanted - subscribed, subscribed - wanted
            if not added and not dropped:
                return pubsub
            if added:
                pubsub.subscribe(*added)
            if dropped:
                pubsub.unsubscribe(*dropped)  # type: ignore[no-untyped-call]
            subscribed = wanted

    def _listen(self, on_message: MessageHandler, on_reconnect: ReconnectHandler) -> None:
        failures = 0
        while True:
            self._wanted.wait()
            try:
                self._reset_requested = False
                self._pubsub = self._connect()
                if failures:
                    self.reconnects += 1
                    logger.warning(
                        "redis subscription restored after %d attempts, %d channels",
                        failures,
                        len(self._channels),
                    )
                    on_reconnect()
                failures = 0
                self._drain_forever(self._pubsub, on_message)
            except Exception as exc:  # anything but Redis errors is a bug: log it, carry on
                failures += 1
                delay = self._backoff.compute(failures)
                if not isinstance(exc, REDIS_ERRORS):
                    logger.exception("redis subscription failed, retrying in %.2fs", delay)
                elif failures == 1:
                    logger.warning("redis subscription lost (%s), retrying in %.2fs", exc, delay)
                else:
                    logger.debug("redis subscription lost (%s), retrying in %.2fs", exc, delay)
                self._close()
                gevent.sleep(delay)

    def _drain_forever(self, pubsub: PubSub, on_message: MessageHandler) -> None:
        """Read until an error; every wake-up drains all buffered messages (no burst loss)."""
        while not self._reset_requested:
            if not pubsub.subscribed:
                self._wait_for_subscriptions()
                continue
            batch: list[tuple[str, bytes]] = []
            delivered = False
            message = pubsub.get_message(timeout=LISTEN_TIMEOUT_S)
            while message is not None:
                kind, channel = message["type"], message["channel"]
                channel = channel.decode() if isinstance(channel, bytes) else channel
                if kind == "message":
                    batch.append((channel, message["data"]))
                elif kind == "subscribe":
                    self._confirm(channel)
                elif kind == "unsubscribe":
                    self._confirmed.discard(channel)
                elif kind == "pong" and message["data"] == DELIVERED_PING_REPLY:
                    delivered = True
                message = self._next_received(pubsub)
            for channel, payloads in consecutive_runs(batch):
                self._handle(on_message, channel, payloads)
            if delivered:  # after the messages before it were handed on
                self._delivered(True)
        raise redis.ConnectionError("a subscription command failed")

    def _wait_for_subscriptions(self) -> None:
        """Nothing to read while nothing is subscribed. (redis-py's get_message would wait on a
        threading.Event, in which a hub running in a thread of its own cannot yield.)"""
        if self._channels:
            gevent.sleep(SUBSCRIBE_POLL_S)  # a subscribe() is on the wire
        else:
            self._wanted.clear()  # set again by the next subscribe()
            self._wanted.wait(LISTEN_TIMEOUT_S)

    @staticmethod
    def _next_received(pubsub: PubSub) -> dict[str, Any] | None:
        """The next message if its bytes have (at least partly) arrived, else None. One only
        partly arrived is waited for: at timeout 0, redis-py would take it for a timeout and
        drop the connection, and with it whatever followed."""
        connection = pubsub.connection
        if connection is None or not connection.can_read(timeout=0):
            return None
        message: dict[str, Any] | None = pubsub.get_message(timeout=LISTEN_TIMEOUT_S)
        return message

    @staticmethod
    def _handle(on_message: MessageHandler, channel: str, payloads: list[bytes]) -> None:
        try:
            on_message(channel, payloads)
        except Exception:
            logger.exception("dispatching messages on %r failed", channel)

    def _close(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        self._confirmed.clear()
        self._delivered(False)
        if pubsub is not None:
            try:
                pubsub.close()
            except REDIS_ERRORS:
                logger.debug("closing a broken subscription failed", exc_info=True)
