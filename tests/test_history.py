import pytest

from wsloop.history import (
    DEFAULT_POLICY,
    TAG,
    HistoryPolicy,
    Incoming,
    Position,
    Resync,
    StreamId,
    policy_for,
    recovery_verdict,
    tag,
    untag,
)


def test_stream_ids_order_like_redis():
    assert StreamId.parse("5-1") < StreamId.parse("5-2") < StreamId.parse("10-0")
    assert str(StreamId.parse("1700000000000-3")) == "1700000000000-3"
    for bad in ("", "5", "5-", "-1", "a-1", "5-1-2"):
        with pytest.raises(ValueError):
            StreamId.parse(bad)


def test_positions_round_trip_and_compare_within_an_epoch():
    position = Position.parse("abc123:5-1")
    assert str(position) == "abc123:5-1"
    assert Position.parse("abc123:5-0").not_after(position)
    assert position.not_after(position)
    assert not Position.parse("abc123:6-0").not_after(position)
    assert not Position.parse("other:1-0").not_after(position)
    for bad in ("5-1", ":5-1", "ABC:5-1", "e:nope", "e:5-1:extra"):
        with pytest.raises(ValueError):
            Position.parse(bad)


def test_untag_splits_position_and_payload():
    assert untag(TAG + b"ep:7-0\n\x00payload\n") == Incoming(
        b"\x00payload\n", Position.parse("ep:7-0")
    )


def test_untag_reads_the_origin_with_or_without_a_position():
    position = Position.parse("ep:7-0")
    assert untag(TAG + b"ep:7-0@w1a.2-3f\nx") == Incoming(b"x", position, "w1a.2-3f")
    assert untag(TAG + b"@w1-3f\nx") == Incoming(b"x", None, "w1-3f")
    for message in (
        Incoming(b"p", position, "o-1"),
        Incoming(b"p", None, "o-1"),
        Incoming(b"p", position),
    ):
        assert untag(tag(message.position, message.origin, message.payload)) == message
    assert tag(None, None, b"raw") == b"raw"


def test_raw_and_malformed_messages_stay_as_they_are():
    assert untag(b"raw text") == Incoming(b"raw text")
    for malformed in (b"no newline", b"bad position\nx", b"\nx", b"@\nx", b"ep:7-0@UPPER\nx"):
        assert untag(TAG + malformed) == Incoming(TAG + malformed)


def test_policy_patterns_in_order_with_fallback():
    policies = {
        "chat-*": HistoryPolicy(100, 60),
        "chat-vip*": HistoryPolicy(5, 5),
        "*": HistoryPolicy(10, 10),
    }
    assert policy_for("chat-vip", policies) == HistoryPolicy(100, 60)
    assert policy_for("news", policies) == HistoryPolicy(10, 10)
    assert policy_for("news", {}) == DEFAULT_POLICY
    assert not HistoryPolicy(0, 60).enabled


def test_recovery_verdicts():
    since = Position.parse("e1:5-0")
    assert recovery_verdict(since, "e1", position_retained=True) is None
    assert recovery_verdict(since, "e1", position_retained=False) is Resync.EXPIRED
    assert recovery_verdict(since, "e2", position_retained=True) is Resync.RESET
    assert recovery_verdict(since, None, position_retained=False) is Resync.RESET
