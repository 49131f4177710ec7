"""From an HTTP request to an upgrade decision, independent of the server that runs it.

``decide`` runs every check a websocket request passes before the 101: path and facility (404),
the handshake itself (405/426/400/403 origin), the process-request hook (session and user), flag
parsing, the allowed-channels hook (may narrow flags or raise PermissionDenied: 403) and the
identity each remaining flag needs (403). Adapters (uWSGI, the development server) only turn the
result into bytes on their socket.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

from django.core.exceptions import PermissionDenied
from django.core.handlers.wsgi import WSGIRequest

from .channels import ChannelPlan, is_valid_facility, parse_flag_names, parse_flags, plan_channels
from .conf import Settings
from .handshake import Accept, Reject, headers_from_environ, negotiate
from .history import Position
from .identity import identity_of, process_request
from .permissions import Forbidden, check_flags

logger = logging.getLogger(__name__)

HEALTH_PATH = "/healthz/wsloop"  # the loop's own health report (JSON), beside the websockets
METRICS_PATH = "/metrics/wsloop"  # Prometheus text format (wsloop.metrics)


@dataclass(frozen=True)
class Upgrade:
    """Accept the websocket: send ``accept.headers`` with status 101, then serve ``plan``,
    replaying history after ``since`` first when it is set."""

    accept: Accept
    plan: ChannelPlan
    since: Position | None = None


def since_of(query_string: str) -> Position | Reject | None:
    """The ``since=<position>`` parameter, if any; a Reject (400) when it is malformed."""
    values = [v for k, v in parse_qsl(query_string, keep_blank_values=True) if k == "since"]
    if not values:
        return None
    try:
        return Position.parse(values[-1])
    except ValueError:
        return Reject(HTTPStatus.BAD_REQUEST, "malformed since: use the id of the last message")


def is_wsloop_path(path: str, settings: Settings) -> bool:
    """Whether a server that runs Django and wsloop together hands this path to wsloop."""
    return path in {HEALTH_PATH, METRICS_PATH} or path.startswith(settings.url)


def facility_of(path: str, settings: Settings) -> str | None:
    """The facility named by a websocket path, or None if the path is not a valid one."""
    if not path.startswith(settings.url):
        return None
    facility = path[len(settings.url) :]
    if not is_valid_facility(facility):
        return None
    if settings.facilities is not None and facility not in settings.facilities:
        return None
    return facility


def decide(environ: Mapping[str, Any], settings: Settings) -> Upgrade | Reject:
    """Everything that happens between a request's arrival and the 101, without I/O."""
    facility = facility_of(str(environ.get("PATH_INFO", "")), settings)
    if facility is None:
        return Reject(HTTPStatus.NOT_FOUND, "unknown websocket facility")
    handshake = negotiate(
        str(environ.get("REQUEST_METHOD", "")),
        headers_from_environ(environ),
        allowed_origins=settings.allowed_origins,
        subprotocols=settings.subprotocols,
    )
    if isinstance(handshake, Reject):
        return handshake
    query_string = str(environ.get("QUERY_STRING", ""))
    since = since_of(query_string)
    if isinstance(since, Reject):
        return since
    request = WSGIRequest(dict(environ))
    try:
        (settings.process_request or process_request)(request)
        flags = parse_flags(query_string)
        if settings.allowed_channels is not None:
            # Like ws4redis, the hook sees (and may narrow) the subscribe/publish flags only.
            channel_flags = sorted(f.value for f in flags if f.audience is not None)
            allowed = parse_flag_names(settings.allowed_channels(request, channel_flags))
            flags = frozenset(f for f in flags if f.audience is None or f in allowed)
        identity = identity_of(request)
        check_flags(flags, identity)
    except (PermissionDenied, Forbidden) as exc:
        return Reject(HTTPStatus.FORBIDDEN, str(exc) or "permission denied")
    plan = plan_channels(settings.channel_prefix, facility, flags, identity)
    if since is not None and not plan.envelope:
        return Reject(HTTPStatus.BAD_REQUEST, "since needs the envelope flag (message ids)")
    if plan.presence and not plan.envelope:
        return Reject(HTTPStatus.BAD_REQUEST, "presence needs the envelope flag (JSON events)")
    return Upgrade(handshake, plan, since)
