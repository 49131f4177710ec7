"""wsloop.presence_writer: joins and leaves queued by sockets, written in order, in batches of
what arrived while the previous one was in flight (a scripted store, real greenlets)."""

from __future__ import annotations

import logging

import gevent
import gevent.event
import redis

from wsloop.presence_store import Change, Entry
from wsloop.presence_writer import MAX_BATCH_CHANGES, PresenceWriter


def entry(name: str) -> Entry:
    return Entry("room", name, f"client-{name}")


class ScriptedStore:
    """Records each batch; ``hold`` keeps a batch in flight until set; ``fail`` the next one."""

    ttl_s = 60

    def __init__(self) -> None:
        self.batches: list[list[tuple[Change, str]]] = []
        self.hold = gevent.event.Event()
        self.hold.set()
        self.fail = 0

    def apply(self, changes):
        self.hold.wait()
        if self.fail:
            self.fail -= 1
            raise redis.ConnectionError("Redis went away")
        self.batches.append([(change, e.user) for change, e in changes])

    def refresh(self, entries): ...


def test_what_queues_while_a_batch_is_in_flight_goes_in_the_next_one_in_order():
    store = ScriptedStore()
    writer = PresenceWriter(store)
    runner = gevent.spawn(writer.run_forever)
    store.hold.clear()
    writer.add(Change.JOIN, entry("a"))
    gevent.sleep(0.01)  # the first batch is in flight, held
    writer.add(Change.LEAVE, entry("a"))
    writer.add(Change.JOIN, entry("b"))
    writer.add(Change.JOIN, entry("c"))
    store.hold.set()
    gevent.sleep(0.01)
    runner.kill()
    assert store.batches == [
        [(Change.JOIN, "a")],
        [(Change.LEAVE, "a"), (Change.JOIN, "b"), (Change.JOIN, "c")],
    ]


def test_a_storm_is_written_in_bounded_pipelines_in_queue_order():
    store = ScriptedStore()
    writer = PresenceWriter(store)
    names = [str(number) for number in range(MAX_BATCH_CHANGES * 2 + 500)]
    for name in names:
        writer.add(Change.JOIN, entry(name))
    writer.flush()
    assert [len(batch) for batch in store.batches] == [MAX_BATCH_CHANGES] * 2 + [500]
    assert [user for batch in store.batches for _, user in batch] == names


def test_a_failed_batch_is_logged_and_the_writer_goes_on(caplog):
    store = ScriptedStore()
    store.fail = 1
    writer = PresenceWriter(store)
    runner = gevent.spawn(writer.run_forever)
    with caplog.at_level(logging.WARNING, logger="wsloop.presence_writer"):
        writer.add(Change.JOIN, entry("lost"))
        gevent.sleep(0.01)
        writer.add(Change.JOIN, entry("kept"))
        gevent.sleep(0.01)
    runner.kill()
    assert store.batches == [[(Change.JOIN, "kept")]]
    assert "1 presence changes not recorded: Redis went away" in caplog.text


def test_a_flush_at_shutdown_waits_for_the_batch_in_flight():
    store = ScriptedStore()
    writer = PresenceWriter(store)
    runner = gevent.spawn(writer.run_forever)
    store.hold.clear()
    writer.add(Change.JOIN, entry("first"))
    gevent.sleep(0.01)
    writer.add(Change.LEAVE, entry("first"))
    flushing = gevent.spawn(writer.flush)
    gevent.sleep(0.01)
    assert store.batches == []  # the shutdown's flush did not overtake the batch in flight
    store.hold.set()
    flushing.join(1)
    runner.kill()
    assert store.batches == [[(Change.JOIN, "first")], [(Change.LEAVE, "first")]]
