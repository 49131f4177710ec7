"""A worker's presence joins and leaves, written in batches as they come.

Sockets that open or close only queue their change; one greenlet writes the queue, in order, one
round trip per batch (``PresenceStore.apply``). What queues while a batch is in flight goes in
the next one (group commit): a lone join is written at the loop's next turn, and a reconnect
storm of 10,000 logged-in sockets costs tens of round trips instead of 10,000 (each a pipeline
of three commands, about 140 us of worker CPU apiece, measured by ``loadtest.bench --users``).

Guarantees: changes are applied in the order they were queued, so a socket's leave never
overtakes its join; a batch that fails (Redis unreachable) is logged and dropped, as a lone
write was before: the entries it would have added are missing until the next refresh, the
ones it would have removed expire one TTL later, and its events are not sent.
"""

from __future__ import annotations

import logging

import gevent.event
import gevent.lock
import redis

from .broker import BrokerUnavailable, PresenceStore
from .presence_store import Change, Entry

logger = logging.getLogger(__name__)

# Changes per pipeline: a storm's queue is written in pipelines of this many (about 300 KB of
# commands), so one round trip never holds Redis or the worker for long.
MAX_BATCH_CHANGES = 1000


class PresenceWriter:
    def __init__(self, store: PresenceStore) -> None:
        self._store = store
        self._pending: list[tuple[Change, Entry]] = []
        self._wake = gevent.event.Event()
        self._writing = gevent.lock.BoundedSemaphore()  # one batch in flight, in queue order

    def add(self, change: Change, entry: Entry) -> None:
        """Queue a change; never blocks."""
        self._pending.append((change, entry))
        self._wake.set()

    def run_forever(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        """Write everything queued so far, in order (at shutdown: what is left, after the
        batch in flight)."""
        with self._writing:
            while self._pending:
                batch = self._pending[:MAX_BATCH_CHANGES]
                del self._pending[:MAX_BATCH_CHANGES]
                try:
                    self._store.apply(batch)
                except (BrokerUnavailable, redis.RedisError, OSError) as exc:
                    logger.warning("%d presence changes not recorded: %s", len(batch), exc)
