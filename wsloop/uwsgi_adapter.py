"""The websocket pool's WSGI application under uWSGI with ``--gevent``.

uWSGI's own websocket API is not used (a lone continuation frame crashes it and it mixes
fragments between clients). Instead: ``server.decide`` settles the request; refusals are plain
WSGI responses; on acceptance uWSGI writes the 101 headers, the connection's file descriptor is
duplicated, and the request returns at once. The socket then lives in its own greenlet on the
duplicate, so it does not hold one of uWSGI's async cores: ``--gevent`` only bounds concurrent
handshakes, the open-files limit bounds sockets.

Run as ``module = wsloop.uwsgi_adapter:application`` with ``DJANGO_SETTINGS_MODULE`` set and
``gevent-early-monkey-patch``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

import django
import gevent
from gevent import socket as gsocket

import uwsgi  # exists only inside a uWSGI worker: this module is its entry point

django.setup()

from .connection import WebSocket  # noqa: E402
from .handshake import Reject  # noqa: E402
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE  # noqa: E402
from .runtime import get_runtime, shutdown  # noqa: E402
from .server import HEALTH_PATH, METRICS_PATH, decide  # noqa: E402

HEALTH_PATHS = frozenset({"/healthz", HEALTH_PATH})  # the pool's own /healthz is the loop's

# On stop or reload, every socket hears close code 1001 before the worker exits.
uwsgi.atexit = shutdown  # type: ignore[attr-defined]

StartResponse = Callable[..., Any]


def _respond(
    start_response: StartResponse,
    status: HTTPStatus,
    body: str,
    content_type: str = "text/plain; charset=utf-8",
    headers: Iterable[tuple[str, str]] = (),
) -> list[bytes]:
    data = body.encode("utf-8")
    start_response(
        f"{status.value} {status.phrase}",
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(data))),
            ("Cache-Control", "no-store"),
            *headers,
        ],
    )
    return [data]


def health(start_response: StartResponse) -> list[bytes]:
    report = get_runtime().health()
    status = HTTPStatus.OK if report["redis"] else HTTPStatus.SERVICE_UNAVAILABLE
    return _respond(start_response, status, json.dumps(report), "application/json")


def metrics(start_response: StartResponse) -> list[bytes]:
    body = get_runtime().exporter.render().decode()
    return _respond(start_response, HTTPStatus.OK, body, METRICS_CONTENT_TYPE)


def application(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    if environ.get("PATH_INFO") in HEALTH_PATHS:
        return health(start_response)
    if environ.get("PATH_INFO") == METRICS_PATH:
        return metrics(start_response)
    runtime = get_runtime()
    decision = decide(environ, runtime.settings)
    if isinstance(decision, Reject):
        return _respond(
            start_response, decision.status, decision.reason + "\n", headers=decision.headers
        )
    sock = gsocket.socket(fileno=os.dup(uwsgi.connection_fd()))  # type: ignore[attr-defined]
    websocket = WebSocket(sock, runtime, decision.plan, decision.since)
    start_response("101 Switching Protocols", decision.accept.headers)
    # Starts after this request returns and uWSGI has written the 101 headers.
    gevent.spawn(websocket.run)
    return []
