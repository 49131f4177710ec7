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

from django.core.exceptions import PermissionDenied
from django.core.handlers.wsgi import WSGIRequest

from .channels import ChannelPlan, is_valid_facility, parse_flag_names, parse_flags, plan_channels
from .conf import Settings
from .handshake import Accept, Reject, headers_from_environ, negotiate
from .identity import identity_of, process_request
from .permissions import Forbidden, check_flags

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Upgrade:
    """Accept the websocket: send ``accept.headers`` with status 101, then serve ``plan``."""

    accept: Accept
    plan: ChannelPlan


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
    request = WSGIRequest(dict(environ))
    try:
        (settings.process_request or process_request)(request)
        flags = parse_flags(str(environ.get("QUERY_STRING", "")))
        if settings.allowed_channels is not None:
            allowed = settings.allowed_channels(request, sorted(f.value for f in flags))
            flags = parse_flag_names(allowed) & flags
        identity = identity_of(request)
        check_flags(flags, identity)
    except (PermissionDenied, Forbidden) as exc:
        return Reject(HTTPStatus.FORBIDDEN, str(exc) or "permission denied")
    return Upgrade(handshake, plan_channels(settings.channel_prefix, facility, flags, identity))
