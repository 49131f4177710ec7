"""RedisHistory against a real Redis (the stack's): append, trim, epochs, replay."""

from __future__ import annotations

import pytest

from devstack.stack import Deployment
from helpers import redis_client, unique_facility
from wsloop.history import HistoryPolicy, Position, Resync, StreamId, untag
from wsloop.history_redis import REPLAY_PAGE_ENTRIES, HistoryGap, RedisHistory

# Only Redis matters here: one deployment is enough.
pytestmark = [pytest.mark.stack, pytest.mark.deployments(Deployment.TWO_POOLS)]


@pytest.fixture
def history(stack):
    client = redis_client(stack)
    return RedisHistory(
        client,
        "hist:",
        {"tiny-*": HistoryPolicy(length=5, age_s=60), "off-*": HistoryPolicy(length=0, age_s=60)},
    )


def test_positions_increase_within_one_epoch(history, stack):
    facility = unique_facility()
    first = history.publish(facility, ["hist:broadcast:" + facility], b"a", 0)
    second = history.publish(
        facility, ["hist:broadcast:" + facility, "hist:user:u:" + facility], b"b", 0
    )
    (p1,), (p2, p3) = first.positions, second.positions
    epoch = redis_client(stack).get(history.stream_key(facility) + ":epoch").decode()
    assert p1.epoch == p2.epoch == p3.epoch == epoch
    assert p1.id < p2.id < p3.id
    assert history.last_position(facility) == p3


def test_replay_returns_what_followed_for_the_given_channels_only(history):
    facility = unique_facility()
    mine, other = "hist:broadcast:" + facility, "hist:user:someone:" + facility
    start = history.publish(facility, [mine], b"0", 0).positions[0]
    history.publish(facility, [other], b"private", 0)
    history.publish(facility, [mine], b"1", 0)
    replay = history.replay(facility, start, frozenset({mine}))
    assert replay.resync is None
    assert [(c, m.payload) for page in replay.pages for c, m in page] == [(mine, b"1")]
    everything = history.replay(facility, None, frozenset({mine, other}))
    assert [m.payload for page in everything.pages for _, m in page] == [b"0", b"private", b"1"]


def test_a_replay_trimmed_under_its_feet_raises_a_gap(stack):
    history = RedisHistory(redis_client(stack), "hist:", {"*": HistoryPolicy(5000, 60)})
    facility = unique_facility()
    channel = "hist:broadcast:" + facility
    start = history.publish(facility, [channel], b"start", 0).positions[0]
    for number in range(REPLAY_PAGE_ENTRIES + 10):
        history.publish(facility, [channel], str(number).encode(), 0)
    pages = history.replay(facility, start, frozenset({channel})).pages
    assert len(next(pages)) == REPLAY_PAGE_ENTRIES
    redis_client(stack).xtrim(history.stream_key(facility), maxlen=3, approximate=False)
    with pytest.raises(HistoryGap):
        next(pages)


def test_trimmed_position_is_expired_and_a_lost_stream_is_a_reset(history, stack):
    facility = unique_facility("tiny")
    channel = "hist:broadcast:" + facility
    first = history.publish(facility, [channel], b"first", 0).positions[0]
    for number in range(300):  # MAXLEN ~ 5 trims whole macro nodes: push well past one
        history.publish(facility, [channel], str(number).encode(), 0)
    assert redis_client(stack).xlen(history.stream_key(facility)) < 300
    assert history.replay(facility, first, frozenset({channel})).resync is Resync.EXPIRED
    redis_client(stack).delete(history.stream_key(facility))
    history.publish(facility, [channel], b"new life", 0)
    assert redis_client(stack).get(history.stream_key(facility) + ":epoch").decode() != first.epoch
    assert history.replay(facility, first, frozenset({channel})).resync is Resync.RESET


def test_live_message_carries_its_position(history, stack):
    facility = unique_facility()
    channel = "hist:broadcast:" + facility
    pubsub = redis_client(stack).pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel)
    pubsub.get_message(timeout=1)
    published = history.publish(facility, [channel], b"payload", 0)
    message = pubsub.get_message(timeout=5)
    assert untag(message["data"]).position == published.positions[0]
    assert untag(message["data"]).payload == b"payload"


def test_disabled_history_publishes_raw(history, stack):
    facility = unique_facility("off")
    published = history.publish(facility, ["hist:broadcast:" + facility], b"raw", 30)
    assert published.positions == ()
    assert not redis_client(stack).exists(history.stream_key(facility))
    assert redis_client(stack).get("hist:broadcast:" + facility) == b"raw"


def test_position_of_an_empty_facility(history):
    assert history.last_position(unique_facility()) is None
    assert list(history.replay(unique_facility(), None, frozenset()).pages) == []
    assert Position("e", StreamId(1, 0)).not_after(Position("e", StreamId(1, 0)))
