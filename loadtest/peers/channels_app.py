"""Django Channels 4 doing what wsloop's broadcast does, as an ASGI app for uvicorn or daphne.

``/ws/<facility>`` joins the socket to the channel-layer group ``<facility>``; whatever is
group-sent there with ``{"type": "push", "text": ...}`` goes to every member. The layer is
``channels_redis`` on ``REDIS_URL`` (default devstack's Redis, database 1 so nothing mixes with
wsloop's). Serve it with::

    REDIS_URL=redis://127.0.0.1:6380/1 uvicorn loadtest.peers.channels_app:application --port 8100

and publish with ``python -m loadtest.peers.channels_publish`` (the same ``REDIS_URL``).
"""

from __future__ import annotations

import os
from typing import Any

import django
from django.conf import settings

DEFAULT_REDIS_URL = "redis://127.0.0.1:6380/1"


def configure() -> None:
    """Settings for a Channels project of one consumer (no database, no sessions)."""
    if settings.configured:
        return
    settings.configure(
        INSTALLED_APPS=["channels"],
        CHANNEL_LAYERS={
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {"hosts": [os.environ.get("REDIS_URL", DEFAULT_REDIS_URL)]},
            }
        },
        SECRET_KEY="loadtest-peer-not-secret",
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    )
    django.setup()


configure()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import URLRouter  # noqa: E402
from django.urls import path  # noqa: E402


class Broadcast(AsyncWebsocketConsumer):
    """One socket of a facility: a member of its group for as long as it is open."""

    async def connect(self) -> None:
        self.group = self.scope["url_route"]["kwargs"]["facility"]
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def push(self, event: dict[str, Any]) -> None:
        await self.send(text_data=event["text"])


application = URLRouter([path("ws/<str:facility>", Broadcast.as_asgi())])
