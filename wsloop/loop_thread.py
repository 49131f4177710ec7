"""The websocket loop in a thread of its own, for servers that are not gevent.

The development server runs Django in ordinary threads and gevent never patches that process.
wsloop still runs the same way as under uWSGI: one gevent hub, one ``Runtime`` and one greenlet
per socket, here inside a daemon thread. Its Redis sockets are gevent's (``cooperative_redis``),
so nothing in the loop blocks the others, and nothing in Django's threads (a breakpoint, a slow
view) blocks the loop.

Other threads never touch the loop's objects: they hand it work with ``submit`` (fire and
forget) or ``call`` (wait for the result), which run the function in a new greenlet there.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import TypeVar

import gevent
import gevent.event

from . import conf
from .runtime import Runtime, create_runtime

logger = logging.getLogger(__name__)

T = TypeVar("T")

START_TIMEOUT_S = 10.0  # the hub and runtime are up in milliseconds; this bounds a broken start
STOP_POLL_S = 0.01  # how often stop() looks whether every socket has closed


class LoopThread:
    """A daemon thread running a gevent hub with one started ``Runtime``."""

    def __init__(self, settings: conf.Settings) -> None:
        self._settings = settings
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._hub: gevent.hub.Hub | None = None
        self._stopped: gevent.event.Event | None = None
        self._runtime: Runtime | None = None
        self._thread = threading.Thread(target=self._run, name="wsloop", daemon=True)

    def start(self) -> None:
        """Start the thread; returns once its runtime is ready, or raises why it is not."""
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise RuntimeError("the wsloop thread did not start in time")
        if self._failure is not None:
            raise RuntimeError("the wsloop thread failed to start") from self._failure

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def runtime(self) -> Runtime:
        """For use inside the loop only (in functions given to ``submit`` or ``call``)."""
        assert self._runtime is not None, "LoopThread.start() first"
        return self._runtime

    def submit(self, function: Callable[..., object], *args: object) -> None:
        """Run ``function(*args)`` in a new greenlet of the loop; safe from any thread."""
        assert self._hub is not None, "LoopThread.start() first"
        self._hub.loop.run_callback_threadsafe(gevent.spawn, self._logged, function, *args)

    def call(self, function: Callable[[], T], timeout_s: float) -> T:
        """Run ``function()`` in the loop and wait for its result (or exception) in this thread;
        TimeoutError after ``timeout_s``."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(function())
            except BaseException as exc:
                future.set_exception(exc)

        self.submit(run)
        return future.result(timeout_s)

    def stop(self, timeout_s: float) -> None:
        """Close every socket with GOING_AWAY and give the peers up to ``timeout_s`` to answer,
        then end the loop."""
        if self._stopped is None or not self.running:
            return
        stopped = self._stopped

        def close_all() -> None:
            runtime = self.runtime
            runtime.shutdown()
            with gevent.Timeout(timeout_s, False):
                while runtime.sockets:
                    gevent.sleep(STOP_POLL_S)
            stopped.set()

        self.submit(close_all)
        self._thread.join(timeout_s + STOP_POLL_S * 10)

    def _run(self) -> None:
        try:
            self._hub = gevent.get_hub()
            self._stopped = gevent.event.Event()
            self._runtime = create_runtime(self._settings, cooperative_redis=True)
        except BaseException as exc:  # start() raises it in the starting thread
            self._failure = exc
            self._ready.set()
            return
        self._ready.set()
        self._stopped.wait()  # the hub serves every greenlet until stop()

    @staticmethod
    def _logged(function: Callable[..., object], *args: object) -> None:
        try:
            function(*args)
        except Exception:
            logger.exception("wsloop thread: %r failed", function)
