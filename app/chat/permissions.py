"""The demo's allowed-channels hook (``WSLOOP_ALLOWED_CHANNELS``).

Runs in the websocket process for every handshake, before the upgrade: no database queries.
Chat rooms (facilities ``chat-*``) are written through Django views, which validate and
attribute messages, so browsers only subscribe there; other facilities keep every flag.
"""

from django.http import HttpRequest

ROOM_PREFIX = "chat-"


def allowed_channels(request: HttpRequest, flags: list[str]) -> list[str]:
    facility = request.path_info.rsplit("/", 1)[-1]
    if facility.startswith(ROOM_PREFIX):
        return [flag for flag in flags if not flag.startswith("publish-")]
    return flags
