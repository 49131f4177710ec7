"""The opening handshake (RFC 6455 section 4.2), decided without sockets.

Input is a request's method, HTTP version and headers (as a WSGI environ has them); output is
either an Accept carrying the 101 response headers or a Reject carrying the HTTP status and a
plain-text body. Checks, in order: method GET (405), ``Upgrade: websocket`` and a ``Connection``
header naming ``upgrade`` (426, with ``Upgrade: websocket``), ``Sec-WebSocket-Version: 13`` (426,
with ``Sec-WebSocket-Version: 13``), a well-formed ``Sec-WebSocket-Key`` (400), and the
``Origin`` against an allow-list (403). No Origin header (non-browser clients) is accepted:
cross-site websocket hijacking needs a browser, and browsers always send it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import urlsplit

from wsproto.utilities import generate_accept_token

WEBSOCKET_VERSION = "13"
KEY_BYTES = 16  # RFC 6455 4.1: a base64-encoded 16-byte nonce.
ANY_ORIGIN = "*"


@dataclass(frozen=True)
class Accept:
    subprotocol: str | None
    headers: list[tuple[str, str]]


@dataclass(frozen=True)
class Reject:
    status: HTTPStatus
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)


def _tokens(value: str) -> list[str]:
    return [token.strip().lower() for token in value.split(",") if token.strip()]


def _valid_key(key: str) -> bool:
    try:
        return len(base64.b64decode(key.encode("ascii"), validate=True)) == KEY_BYTES
    except (binascii.Error, UnicodeEncodeError):
        return False


def origin_allowed(origin: str | None, host: str, allowed: Sequence[str] | None) -> bool:
    """Whether a browser page from ``origin`` may open a socket on ``host``.

    ``allowed=None`` means the site's own host only (scheme ignored: TLS may end at a proxy).
    Otherwise ``allowed`` lists origins (``"https://example.com"``) or host[:port] entries;
    ``"*"`` allows every origin.
    """
    if origin is None:
        return True
    if allowed is not None and ANY_ORIGIN in allowed:
        return True
    origin_host = urlsplit(origin).netloc.lower()
    if not origin_host:
        return False
    if allowed is None:
        return origin_host == host.lower()
    normalized = origin.lower().rstrip("/")
    return any(entry.lower().rstrip("/") in (normalized, origin_host) for entry in allowed)


def choose_subprotocol(offered: str | None, supported: Sequence[str]) -> str | None:
    """The first of the server's supported subprotocols that the client offered, or None."""
    if not offered:
        return None
    client = {token.strip() for token in offered.split(",")}
    for protocol in supported:
        if protocol in client:
            return protocol
    return None


def negotiate(
    method: str,
    headers: Mapping[str, str],
    *,
    allowed_origins: Sequence[str] | None,
    subprotocols: Sequence[str],
) -> Accept | Reject:
    """Decide the handshake. ``headers`` maps lower-case header names to values."""
    if method != "GET":
        return Reject(
            HTTPStatus.METHOD_NOT_ALLOWED, "websocket handshake must use GET", [("Allow", "GET")]
        )
    if "websocket" not in _tokens(headers.get("upgrade", "")) or "upgrade" not in _tokens(
        headers.get("connection", "")
    ):
        return Reject(
            HTTPStatus.UPGRADE_REQUIRED,
            "this URL serves websockets only",
            [("Upgrade", "websocket"), ("Connection", "Upgrade")],
        )
    if headers.get("sec-websocket-version", "").strip() != WEBSOCKET_VERSION:
        return Reject(
            HTTPStatus.UPGRADE_REQUIRED,
            "unsupported Sec-WebSocket-Version, use 13",
            [("Sec-WebSocket-Version", WEBSOCKET_VERSION)],
        )
    key = headers.get("sec-websocket-key", "").strip()
    if not _valid_key(key):
        return Reject(HTTPStatus.BAD_REQUEST, "missing or malformed Sec-WebSocket-Key")
    if not origin_allowed(headers.get("origin"), headers.get("host", ""), allowed_origins):
        return Reject(HTTPStatus.FORBIDDEN, "origin not allowed")
    subprotocol = choose_subprotocol(headers.get("sec-websocket-protocol"), subprotocols)
    response = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", generate_accept_token(key.encode("ascii")).decode("ascii")),
    ]
    if subprotocol is not None:
        response.append(("Sec-WebSocket-Protocol", subprotocol))
    return Accept(subprotocol, response)


def headers_from_environ(environ: Mapping[str, object]) -> dict[str, str]:
    """Lower-case header names and values from a WSGI environ."""
    headers = {
        name[5:].replace("_", "-").lower(): str(value)
        for name, value in environ.items()
        if name.startswith("HTTP_")
    }
    return headers
