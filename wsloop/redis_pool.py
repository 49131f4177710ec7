"""One bounded Redis connection pool per process and URL.

``SharedConnectionPool`` is meant for Django's built-in Redis cache (``OPTIONS["pool_class"]``):
the cache, the sessions stored in it and wsloop then share the same connections, which keeps a
websocket worker at two Redis connections (this pool with its default size 1, plus the pub/sub
connection) however many sockets it holds. The pool blocks for at most ``POOL_TIMEOUT_S`` when
all its connections are busy, then raises redis.ConnectionError.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import redis

POOL_TIMEOUT_S = 10.0  # longest wait for a free connection before failing the caller
SOCKET_TIMEOUT_S = 5.0  # a Redis that stops answering fails the call instead of hanging it
CONNECT_TIMEOUT_S = 5.0
DEFAULT_MAX_CONNECTIONS = 1

_pools: dict[str, redis.BlockingConnectionPool] = {}
_lock = threading.Lock()


def get_pool(url: str, max_connections: int | None = None) -> redis.BlockingConnectionPool:
    """The process-wide pool for ``url``; ``max_connections`` only counts on first use.

    Connections are named ``wsloop:<pid>`` (``wsloop:<pid>:sub`` for a worker's subscription).
    """
    with _lock:
        pool = _pools.get(url)
        if pool is None:
            pool = redis.BlockingConnectionPool.from_url(
                url,
                max_connections=max_connections or DEFAULT_MAX_CONNECTIONS,
                timeout=POOL_TIMEOUT_S,
                socket_timeout=SOCKET_TIMEOUT_S,
                socket_connect_timeout=CONNECT_TIMEOUT_S,
                socket_keepalive=True,
                health_check_interval=30,
                client_name=f"wsloop:{os.getpid()}",  # CLIENT LIST shows who holds what
            )
            _pools[url] = pool
        return pool


class SharedConnectionPool:
    """A ``pool_class`` for ``django.core.cache.backends.redis.RedisCache``."""

    @classmethod
    def from_url(cls, url: str, **options: Any) -> redis.BlockingConnectionPool:
        return get_pool(url, options.get("max_connections"))
