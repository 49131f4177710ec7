"""The broker interface: how a worker reaches the message bus and the history.

Live delivery is at most once: a message published while a worker's subscription is down (Redis
restarting, network cut) does not arrive live. What went through history is recovered instead:
by the worker when its subscription comes back, by a client that reconnects with its last
position. Per facility, messages arrive in the order the bus accepted them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import Protocol

from .history import Position
from .history_redis import Published, Replay
from .presence_store import Change, Entry

MessageHandler = Callable[[str, list[bytes]], None]
"""Called with (channel, payloads): consecutive messages of one channel, in bus order."""

MAX_RUN_MESSAGES = 64  # a burst is handed over in runs of at most this many messages
MAX_RUN_BYTES = 256 * 1024  # ... and about this many bytes, well under a send queue's limit

ReconnectHandler = Callable[[], None]
"""Called after the subscription was lost and re-established."""


def consecutive_runs(messages: Iterable[tuple[str, bytes]]) -> Iterator[tuple[str, list[bytes]]]:
    """Group messages into runs of the same channel without reordering anything.

    A burst on one channel becomes a few runs, so the hub writes a few joined frames per socket
    instead of one per message; the order across channels is kept as the bus gave it.
    """
    run_channel = ""  # never yielded: a run is only yielded once it holds a message
    run: list[bytes] = []
    run_bytes = 0
    for channel, payload in messages:
        if run and (
            channel != run_channel
            or len(run) >= MAX_RUN_MESSAGES
            or run_bytes + len(payload) > MAX_RUN_BYTES
        ):
            yield run_channel, run
            run, run_bytes = [], 0
        run_channel = channel
        run.append(payload)
        run_bytes += len(payload)
    if run:
        yield run_channel, run


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

    def publish(
        self,
        facility: str,
        channels: Sequence[str],
        payload: bytes,
        expire_s: int,
        origin: str | None = None,
    ) -> Published:
        """Append one payload to the facility's history and publish it to each channel; keep it
        as the channel's persisted message for ``expire_s`` seconds (0: not kept). ``origin``
        (the publishing socket's id) comes back with every copy, live or replayed. Raises
        BrokerUnavailable."""

    def replay(self, facility: str, since: Position | None, channels: frozenset[str]) -> Replay:
        """The channels' messages after ``since`` (None: all history holds), or why they cannot
        be had. Raises BrokerUnavailable, and so may iterating the pages, or HistoryGap."""

    def last_position(self, facility: str) -> Position | None:
        """The facility's newest position, None without history. Raises BrokerUnavailable."""

    def current_position(self, facility: str) -> Position | None:
        """The facility's newest position, made if history has none yet, so that a client can
        recover from it later; None when the facility keeps no history. Raises
        BrokerUnavailable."""

    def wait_subscribed(self, channels: Collection[str], timeout_s: float) -> bool:
        """Wait until the bus confirmed the subscription of every channel (False on timeout):
        from then on, nothing published to them can miss this worker."""

    def wait_delivered(self, timeout_s: float) -> bool:
        """Wait until every message published to a confirmed channel before this call has been
        handed to the message handler (False on timeout, or if the subscription was lost
        meanwhile: what was on its way then may never come)."""

    def fetch_persisted(self, channels: Collection[str]) -> list[tuple[str, bytes]]:
        """The persisted message of each channel that has one, as (channel, payload), in the
        given order. Raises BrokerUnavailable."""

    def ping(self) -> bool:
        """Whether the bus answers now."""

    @property
    def presence(self) -> PresenceStore:
        """Where the worker records which users have sockets open."""


class PresenceStore(Protocol):
    ttl_s: float

    def apply(self, changes: Sequence[tuple[Change, Entry]]) -> None: ...

    def refresh(self, entries: Sequence[Entry]) -> None: ...
