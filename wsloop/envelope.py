"""The opt-in JSON envelope (flag ``envelope``): message ids and control messages for clients.

Without the flag a socket receives bare payloads (the ws4redis contract). With it, every frame is
a JSON text message:

    {"type": "message", "id": "<position>", "audience": "broadcast", "data": "<text>"}
    {"type": "message", "id": "<position>", "audience": "group:blue", "data_base64": "..."}
    {"type": "position", "id": "<position>"}
    {"type": "recovered", "count": 12, "id": "<position>"}
    {"type": "resync", "reason": "reset" | "expired" | "unavailable", "id": "<position>"}

``id`` is absent for messages PUBLISHed raw (they have no place in history). ``audience`` is
``broadcast``, ``user``, ``session`` or ``group:<name>``. Binary payloads (not UTF-8) travel as
``data_base64``. A client keeps the last ``id`` it saw and reconnects with ``?since=<id>``.

Exactly one of ``position`` (connected without ``since``), ``recovered`` or ``resync`` ends a
socket's start, before any live message; its ``id`` is where the socket stands, every message
after it follows (no ``id``: no position is known, the facility keeps no history or it could not
be read). A worker that could not replay what its lost subscription missed sends ``resync``
again later, without ``id``. Clients ignore types they do not know.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from .history import Position, Resync
from .protocol import encode_text
from .recovery import Verdict, VerdictKind


def audience_of(channel: str, prefix: str) -> str:
    """``broadcast``, ``user``, ``session`` or ``group:<name>`` for a channel name.

    Facilities contain no colon, so the facility is the last segment and a group name (which
    may contain colons) is everything between ``group:`` and it.
    """
    kind, _, rest = channel[len(prefix) :].partition(":")
    if kind == "group":
        return f"group:{rest.rpartition(':')[0]}"
    return kind


def message_frame(payload: bytes, position: Position | None, audience: str) -> bytes:
    """``{"type":"message","id":...,"audience":...,"data":...}`` (``data_base64`` for bytes
    that are not UTF-8), written field by field: a replay encodes one per message and socket,
    and a dict through ``json.dumps`` costs three times as much. Positions need no escaping
    (their epochs are ``[0-9a-z]``, their ids digits)."""
    try:
        data = '"data":' + json.dumps(payload.decode("utf-8"), ensure_ascii=False)
    except UnicodeDecodeError:
        data = '"data_base64":"' + base64.b64encode(payload).decode("ascii") + '"'
    where = "" if position is None else f'"id":"{position}",'
    audience_field = '"audience":' + json.dumps(audience, ensure_ascii=False)
    return encode_text('{"type":"message",' + where + audience_field + "," + data + "}")


def verdict_frame(verdict: Verdict) -> bytes:
    """The control message that ends a socket's start."""
    body: dict[str, Any] = {"type": verdict.kind.value}
    if verdict.kind is VerdictKind.RECOVERED:
        body["count"] = verdict.count
    elif verdict.kind is VerdictKind.RESYNC and verdict.reason is not None:
        body["reason"] = verdict.reason.value
    if verdict.position is not None:
        body["id"] = str(verdict.position)
    return _control(body)


def resync_frame(reason: Resync) -> bytes:
    """A live socket's resync: the worker could not replay what its subscription missed."""
    return _control({"type": "resync", "reason": reason.value})


def _control(body: dict[str, Any]) -> bytes:
    return encode_text(json.dumps(body, separators=(",", ":")))
