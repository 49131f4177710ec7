"""wsloop inside ``manage.py runserver``: one process, Django's own development server.

The ``runserver`` command that wsloop ships is Django's (staticfiles' when that app is installed)
with one attribute changed, ``server_cls``: nothing of Django is patched, so autoreload, the
debug page and breakpoints in views work as they always do. The server hands every request to
Django's request handler except two, answered here before Django sees them:

- a request under ``WSLOOP_URL`` (default ``/ws/``) runs the same ``server.decide`` as
  production. A refusal is written as a plain HTTP response; on acceptance the 101 is written,
  the connection's file descriptor is detached from the request thread and the socket is served
  by the ``LoopThread`` with the same protocol core and runtime as under uWSGI. The request
  thread ends at once: a websocket does not keep a thread.
- ``/healthz/wsloop`` reports the loop's health as JSON, like the websocket pool does.
- ``/metrics/wsloop`` answers Prometheus, from the loop thread (exact figures: one process).

When the process ends (Ctrl-C, or the autoreloader restarting it after a code change), every
socket is sent 1001 GOING_AWAY first, so clients reconnect to the new process. On Ctrl-C the
close frames go out from the signal handler (``going_away``, installed by wsloop's ``runserver``
command), since the autoreloader kills its child 0.25 s later; peers may see the TCP connection
end before they answer.
"""

from __future__ import annotations

import atexit
import io
import json
import socketserver
import weakref
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from django.core.servers.basehttp import WSGIServer
from gevent import socket as gsocket

from . import conf
from .channels import ChannelPlan
from .connection import WebSocket
from .handshake import Reject
from .history import Position
from .loop_thread import LoopThread
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .server import HEALTH_PATH, METRICS_PATH, decide

HEALTH_TIMEOUT_S = 5.0  # the loop answers in milliseconds; a stuck loop is reported as such
STOP_GRACE_S = 1.0  # on exit, how long peers get to answer the GOING_AWAY close
# Django's development server queues 10 connections; a page reconnecting many sockets at once
# (or the test suite) would see SYN retries, a second each.
LISTEN_BACKLOG = 128


class WebSocketRequests:
    """Mixed into Django's request handler: answers wsloop's requests, passes on the rest."""

    server: DevServer
    path: str
    connection: Any
    close_connection: bool

    def parse_request(self) -> bool:
        if not super().parse_request():  # type: ignore[misc]
            return False
        path = urlsplit(self.path).path
        if path == HEALTH_PATH:
            self._answer_health()
        elif path == METRICS_PATH:
            self._answer_metrics()
        elif path.startswith(self.server.settings.url):
            self._answer_websocket()
        else:
            return True
        self.close_connection = True
        return False  # answered: Django's handler does not see this request

    def _answer_health(self) -> None:
        try:
            report = self.server.loop.call(self.server.loop.runtime.health, HEALTH_TIMEOUT_S)
        except TimeoutError:
            self._respond(HTTPStatus.SERVICE_UNAVAILABLE, "the wsloop thread does not answer\n")
            return
        status = HTTPStatus.OK if report["redis"] else HTTPStatus.SERVICE_UNAVAILABLE
        self._respond(status, json.dumps(report), "application/json")

    def _answer_metrics(self) -> None:
        try:
            body = self.server.loop.call(self.server.loop.runtime.exporter.render, HEALTH_TIMEOUT_S)
        except TimeoutError:
            self._respond(HTTPStatus.SERVICE_UNAVAILABLE, "the wsloop thread does not answer\n")
            return
        self._respond(HTTPStatus.OK, body.decode(), METRICS_CONTENT_TYPE)

    def _answer_websocket(self) -> None:
        environ = self.get_environ()  # type: ignore[attr-defined]
        environ["wsgi.input"] = io.BytesIO()  # a handshake has no body
        environ["wsgi.url_scheme"] = "http"
        decision = decide(environ, self.server.settings)
        if isinstance(decision, Reject):
            self._respond(decision.status, decision.reason + "\n", headers=decision.headers)
            return
        self.send_response(HTTPStatus.SWITCHING_PROTOCOLS)  # type: ignore[attr-defined]
        for name, value in decision.accept.headers:
            self.send_header(name, value)  # type: ignore[attr-defined]
        self.end_headers()  # type: ignore[attr-defined]
        # From here the loop owns the connection; shutting down or closing the detached socket
        # object in this thread is a no-op (Django and socketserver expect OSError there).
        fd = self.connection.detach()
        self.server.loop.submit(serve, self.server.loop, fd, decision.plan, decision.since)

    def _respond(
        self,
        status: HTTPStatus,
        body: str,
        content_type: str = "text/plain; charset=utf-8",
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        data = body.encode("utf-8")
        self.send_response(status)  # type: ignore[attr-defined]
        for name, value in (
            ("Content-Type", content_type),
            ("Content-Length", str(len(data))),
            ("Cache-Control", "no-store"),
            ("Connection", "close"),
            *headers,
        ):
            self.send_header(name, value)  # type: ignore[attr-defined]
        self.end_headers()  # type: ignore[attr-defined]
        self.wfile.write(data)  # type: ignore[attr-defined]


def serve(loop: LoopThread, fd: int, plan: ChannelPlan, since: Position | None) -> None:
    """In the loop: serve an accepted socket until it closes."""
    sock = gsocket.socket(fileno=fd)
    WebSocket(sock, loop.runtime, plan, since).run()


_LOOPS: weakref.WeakSet[LoopThread] = weakref.WeakSet()  # this process's, for going_away()


def going_away() -> None:
    """Send GOING_AWAY to every socket of this process now, from any thread (a signal handler's
    first step on Ctrl-C: Django's autoreloader kills its child 0.25 s after the interrupt, too
    soon for the close frames to wait for the interpreter's exit on a busy machine)."""
    for loop in list(_LOOPS):
        if loop.running:
            loop.submit(_shut_down, loop)


def _shut_down(loop: LoopThread) -> None:
    loop.runtime.shutdown()


class DevServer(WSGIServer):
    """Django's development server, with wsloop's loop thread beside it (``server_cls``)."""

    request_queue_size = LISTEN_BACKLOG

    def __init__(
        self,
        server_address: tuple[str, int],
        handler_class: type[socketserver.BaseRequestHandler],
        **kwargs: Any,
    ) -> None:
        # The loop first: if it cannot start, no port is left bound to a server that never runs.
        self.settings = conf.load()
        self.loop = LoopThread(self.settings)
        self.loop.start()
        _LOOPS.add(self.loop)
        atexit.register(self.loop.stop, STOP_GRACE_S)
        handler = type(handler_class.__name__, (WebSocketRequests, handler_class), {})
        super().__init__(server_address, handler, **kwargs)
