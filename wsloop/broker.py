"""The broker interface: how a worker reaches the message bus.

Delivery guarantee of this interface: at most once. A message published while a worker's
subscription is down (Redis restarting, network cut) is not delivered to that worker's sockets;
what ``expire`` persisted is sent to sockets that subscribe later. Per channel, a subscriber sees
messages in the order the bus accepted them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Protocol

MessageHandler = Callable[[str, bytes], None]
"""Called with (channel, payload) for every message on a subscribed channel."""

ReconnectHandler = Callable[[], None]
"""Called after the subscription was lost and re-established."""


class BrokerUnavailable(Exception):
    """The bus cannot be reached right now; nothing was published or fetched."""


class Broker(Protocol):
    def start(self, on_message: MessageHandler, on_reconnect: ReconnectHandler) -> None:
        """Begin receiving; called once per worker process, after fork."""

    def subscribe(self, channels: Collection[str]) -> None:
        """Add channels to the subscription. Never raises: while the bus is down the channels
        are remembered and subscribed on reconnect."""

    def unsubscribe(self, channels: Collection[str]) -> None:
        """Remove channels from the subscription. Never raises."""

    def publish(self, channels: Collection[str], payload: bytes, expire_s: int) -> None:
        """Publish one payload to each channel, persisting it for ``expire_s`` seconds (0: not
        kept). Raises BrokerUnavailable."""

    def fetch_persisted(self, channels: Collection[str]) -> list[bytes]:
        """The persisted message of each channel that has one, in the given order. Raises
        BrokerUnavailable."""

    def ping(self) -> bool:
        """Whether the bus answers now."""
