"""Redis connection pools: one bounded pool per process and URL, and cooperative pools for a gevent
hub running in a thread of a process that gevent did not monkey-patch.

``SharedConnectionPool`` is meant for Django's built-in Redis cache (``OPTIONS["pool_class"]``):
the cache, the sessions stored in it and wsloop then share the same connections, which keeps a
websocket worker at two Redis connections (this pool with its default size 1, plus the pub/sub
connection) however many sockets it holds. The pool blocks for at most ``POOL_TIMEOUT_S`` when
all its connections are busy, then raises redis.ConnectionError.

Under uWSGI the process is monkey-patched, so these pools already yield to other greenlets while
they wait. The development server is not: its wsloop thread uses ``cooperative_pool`` and
``cooperative_connection_class`` instead, whose sockets and waits are gevent's, so one greenlet
reading from Redis never stalls the others (see ``wsloop.loop_thread``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from typing import Any
from urllib.parse import urlsplit

import gevent.queue
import redis
from gevent import socket as gsocket

POOL_TIMEOUT_S = 10.0  # longest wait for a free connection before failing the caller
SOCKET_TIMEOUT_S = 5.0  # a Redis that stops answering fails the call instead of hanging it
CONNECT_TIMEOUT_S = 5.0
HEALTH_CHECK_INTERVAL_S = 30  # PING a connection idle this long before using it again
DEFAULT_MAX_CONNECTIONS = 1


class NotConnected(redis.ConnectionError):
    """No connection to Redis could be had (refused, timed out, none free in the pool): the
    command was never sent."""


class BoundedPool(redis.BlockingConnectionPool):
    """redis-py's blocking pool, telling a failure to get a connection (``NotConnected``: the
    command was not sent) from one after the command went out (it may have been applied)."""

    def get_connection(self, *args: Any, **kwargs: Any) -> redis.Connection:
        try:
            connection: redis.Connection = super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise NotConnected(str(exc)) from exc
        return connection


_pools: dict[str, BoundedPool] = {}
_lock = threading.Lock()


def _pool_options(max_connections: int | None) -> dict[str, Any]:
    return {
        "max_connections": max_connections or DEFAULT_MAX_CONNECTIONS,
        "timeout": POOL_TIMEOUT_S,
        "socket_timeout": SOCKET_TIMEOUT_S,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_keepalive": True,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        "client_name": f"wsloop:{os.getpid()}",  # CLIENT LIST shows who holds what
    }


def get_pool(url: str, max_connections: int | None = None) -> BoundedPool:
    """The process-wide pool for ``url``; ``max_connections`` only counts on first use.

    Connections are named ``wsloop:<pid>`` (``wsloop:<pid>:sub`` for a worker's subscription).
    """
    with _lock:
        pool = _pools.get(url)
        if pool is None:
            pool = BoundedPool.from_url(url, **_pool_options(max_connections))
            _pools[url] = pool
        return pool


class SharedConnectionPool:
    """A ``pool_class`` for ``django.core.cache.backends.redis.RedisCache``."""

    @classmethod
    def from_url(cls, url: str, **options: Any) -> BoundedPool:
        return get_pool(url, options.get("max_connections"))


class _CooperativeSocket:
    """Connects like redis-py, then serves the connection on a gevent socket.

    redis-py's connect (name lookup, TCP or unix connect, socket options) is blocking: it runs
    in gevent's pool of native threads while the hub goes on. Every read, write and wait
    afterwards yields to the hub.
    """

    def _connect(self) -> socket.socket:
        plain: socket.socket = gevent.get_hub().threadpool.apply(super()._connect)  # type: ignore[misc]
        timeout = plain.gettimeout()
        cooperative = gsocket.socket(fileno=plain.detach())
        cooperative.settimeout(timeout)
        return cooperative  # type: ignore[no-any-return]

    def can_read(self, timeout: float | None = 0) -> bool:
        """Wait on the hub: redis-py's parsers wait in a blocking ``select.poll``."""
        ready: bool = super().can_read(0)  # type: ignore[misc]
        sock: socket.socket | None = getattr(self, "_sock", None)  # redis-py's, once connected
        if ready or timeout == 0 or sock is None:
            return ready
        with contextlib.suppress(TimeoutError):
            gsocket.wait_read(sock.fileno(), timeout)
        return bool(super().can_read(0))  # type: ignore[misc]


class CooperativeConnection(_CooperativeSocket, redis.Connection):
    """``redis://`` on a gevent socket."""


class CooperativeUnixConnection(_CooperativeSocket, redis.UnixDomainSocketConnection):
    """``unix://`` on a gevent socket."""


def cooperative_connection_class(url: str) -> type[redis.Connection]:
    """The cooperative connection class for ``url``; ValueError for a scheme it cannot serve."""
    scheme = urlsplit(url).scheme
    if scheme == "redis":
        return CooperativeConnection
    if scheme == "unix":
        return CooperativeUnixConnection  # type: ignore[return-value]
    raise ValueError(
        f"the development server's wsloop thread supports redis:// and unix://, not {scheme}://"
    )


def cooperative_pool(url: str, max_connections: int | None = None) -> BoundedPool:
    """A pool of gevent sockets whose waiters queue on a gevent queue; for one hub's use only.

    Like ``get_pool``'s, its connections never retry a failed command (redis-py's default for
    pool connections): a retry could apply a publish twice, and a backoff would sleep in
    ``time.sleep``, which stops the hub."""
    return BoundedPool.from_url(
        url,
        connection_class=cooperative_connection_class(url),
        queue_class=gevent.queue.LifoQueue,
        **_pool_options(max_connections),
    )
