"""Faults the recovery checker injects into a running devstack (``devstack.stack.Stack``).

* ``redis-restart``: Redis stopped (SIGTERM: it saves its data) and started again;
* ``redis-pause``: Redis frozen with SIGSTOP for ``pause_s``, then SIGCONT: connections stay open
  and nothing answers, the way a Redis host under a swap storm or a network partition behaves;
* ``worker-kill``: the websocket worker serving the health check killed with SIGKILL (its
  sockets get no close frame; uWSGI starts another, runserver is started again);
* ``pool-reload``: the websocket server reloaded gracefully (uWSGI SIGHUP, runserver's
  autoreload): every socket hears 1001.

Each returns once the stack answers its health checks again.
"""

from __future__ import annotations

import enum
import http.client
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from devstack.stack import Stack, http_get

RECOVERY_TIMEOUT_S = 60.0


class Fault(enum.StrEnum):
    REDIS_RESTART = "redis-restart"
    REDIS_PAUSE = "redis-pause"
    WORKER_KILL = "worker-kill"
    POOL_RELOAD = "pool-reload"


@dataclass(frozen=True)
class Injected:
    fault: Fault
    started: float  # time.monotonic()
    ended: float  # when the stack was healthy again


def inject(stack: Stack, fault: Fault, pause_s: float = 10.0) -> Injected:
    started = time.monotonic()
    if fault is Fault.REDIS_RESTART:
        stack.stop_service("redis")
        stack.start_service("redis")
        stack.wait_for("redis", stack.redis_ready)
    elif fault is Fault.REDIS_PAUSE:
        pid = int(redis.Redis.from_url(stack.config.redis_url).info("server")["process_id"])
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(pause_s)
        finally:
            os.kill(pid, signal.SIGCONT)
    elif fault is Fault.WORKER_KILL:
        stack.kill_websockets(worker_pid(stack))
    else:
        before = worker_pid(stack)
        stack.reload_websockets()
        _wait(lambda: worker_pid(stack, default=before) != before)
    _wait(lambda: stack.healthy("/healthz/wsloop") and stack.healthy("/healthz"))
    return Injected(fault, started, time.monotonic())


def worker_pid(stack: Stack, default: int = 0) -> int:
    """The pid of the worker answering ``/healthz/wsloop`` now (``default`` if none answers)."""
    try:
        status, body = http_get(stack.config.http_port, "/healthz/wsloop")
        return int(json.loads(body)["pid"]) if status == 200 else default
    except (OSError, http.client.HTTPException, ValueError, KeyError):
        return default


def _wait(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + RECOVERY_TIMEOUT_S
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("the stack did not recover from the fault")
        time.sleep(0.05)
