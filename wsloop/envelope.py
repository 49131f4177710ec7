"""The opt-in JSON envelope (flag ``envelope``): message ids and control messages for clients.

Without the flag a socket receives bare payloads (the ws4redis contract). With it, every frame is
a JSON text message:

    {"type": "message", "id": "<position>", "audience": "broadcast", "data": "<text>"}
    {"type": "message", "id": "<position>", "audience": "group:blue", "data_base64": "..."}
    {"type": "recovered", "count": 12, "id": "<position of the last replayed message>"}
    {"type": "resync", "reason": "reset" | "expired" | "unavailable"}

``id`` is absent for messages PUBLISHed raw (they have no place in history). ``audience`` is
``broadcast``, ``user``, ``session`` or ``group:<name>``. Binary payloads (not UTF-8) travel as
``data_base64``. A client keeps the last ``id`` it saw and reconnects with ``?since=<id>``.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from .history import Position, Resync
from .protocol import encode_text


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
    body: dict[str, Any] = {"type": "message"}
    if position is not None:
        body["id"] = str(position)
    body["audience"] = audience
    try:
        body["data"] = payload.decode("utf-8")
    except UnicodeDecodeError:
        body["data_base64"] = base64.b64encode(payload).decode("ascii")
    return encode_text(json.dumps(body, ensure_ascii=False, separators=(",", ":")))


def recovered_frame(count: int, last: Position | None) -> bytes:
    body: dict[str, Any] = {"type": "recovered", "count": count}
    if last is not None:
        body["id"] = str(last)
    return encode_text(json.dumps(body, separators=(",", ":")))


def resync_frame(reason: Resync) -> bytes:
    return encode_text(
        json.dumps({"type": "resync", "reason": reason.value}, separators=(",", ":"))
    )
