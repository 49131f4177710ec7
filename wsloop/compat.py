"""django-websocket-redis compatibility: ``RedisPublisher``, ``RedisMessage`` and ``SELF``.

Replace ``from ws4redis.publisher import RedisPublisher`` and ``from ws4redis.redis_store import
RedisMessage, SELF`` with imports from this module; the signatures are those of ws4redis 0.5.
"""

from __future__ import annotations

from typing import Any

import redis
from django.http import HttpRequest

from . import conf
from .channels import Audience, audience_channels
from .publisher import SELF, publish_to_channels, request_identity, target_channels
from .redis_pool import get_pool

__all__ = ["SELF", "RedisMessage", "RedisPublisher"]


class RedisMessage(bytes):
    """A message as bytes; a heartbeat (``WSLOOP_HEARTBEAT``) becomes None, as in ws4redis."""

    def __new__(cls, value: Any) -> RedisMessage | None:  # type: ignore[misc]
        heartbeat = conf.load().heartbeat
        if isinstance(value, list):
            if len(value) >= 2 and value[0] in (b"message", "message"):
                value = value[1]
            else:
                return None
        if isinstance(value, str):
            value = value.encode("utf-8")
        if not isinstance(value, bytes | bytearray):
            return None
        if heartbeat is not None and bytes(value) == heartbeat.encode("utf-8"):
            return None
        return super().__new__(cls, value)


def _as_list(value: Any) -> list[Any]:
    """ws4redis took True for [SELF] and a bare name for [name]; lists pass through."""
    if value is True:
        return [SELF]
    if value is False or value is None:
        return []
    if isinstance(value, str):
        return [value]
    return list(value)


class RedisPublisher:
    def __init__(
        self,
        connection: redis.Redis | None = None,
        *,
        facility: str,
        broadcast: bool = False,
        users: Any = (),
        groups: Any = (),
        sessions: Any = (),
        request: HttpRequest | None = None,
    ) -> None:
        self._connection = connection
        self._facility = facility
        self._channels = target_channels(
            conf.load().channel_prefix,
            facility,
            broadcast=broadcast,
            users=_as_list(users),
            groups=_as_list(groups),
            sessions=_as_list(sessions),
            identity=request_identity(request),
        )

    def publish_message(self, message: bytes | str, expire: int | None = None) -> None:
        if not isinstance(message, RedisMessage):
            raise ValueError("message object is not of type RedisMessage")
        publish_to_channels(self._facility, self._channels, message, expire, self._connection)

    def fetch_message(
        self, request: HttpRequest | None, facility: str, audience: str = "any"
    ) -> bytes | None:
        """The first persisted message for this request's session, user, groups or broadcast."""
        settings = conf.load()
        identity = request_identity(request)
        order = [Audience.SESSION, Audience.USER, Audience.GROUP, Audience.BROADCAST]
        channels = [
            name
            for candidate in order
            if audience in ("any", candidate.value)
            for name in audience_channels(settings.channel_prefix, candidate, facility, identity)
        ]
        client = self._connection or redis.Redis(
            connection_pool=get_pool(settings.redis_url, settings.redis_pool_size)
        )
        for channel in channels:
            message = client.get(channel)
            if isinstance(message, bytes) and message:
                return message
        return None
