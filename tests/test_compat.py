import pytest
from django.test import override_settings

from wsloop.compat import SELF, RedisMessage, RedisPublisher
from wsloop.publisher import SELF as PUBLISHER_SELF


def test_self_is_shared():
    assert SELF is PUBLISHER_SELF


@override_settings(WSLOOP_HEARTBEAT="--hb--")
def test_redis_message_like_ws4redis():
    assert RedisMessage("héllo") == "héllo".encode()
    assert RedisMessage(b"\x00") == b"\x00"
    assert RedisMessage([b"message", b"payload"]) == b"payload"
    assert RedisMessage([b"subscribe", b"chan", 1]) is None
    assert RedisMessage("--hb--") is None
    assert RedisMessage(b"--hb--") is None
    assert RedisMessage(42) is None


@override_settings(WSLOOP_PREFIX="p")
def test_publisher_channels_accept_ws4redis_forms():
    publisher = RedisPublisher(facility="f", broadcast=True, users=["bob"], groups="blue")
    assert publisher._channels == ["p:broadcast:f", "p:user:bob:f", "p:group:blue:f"]


def test_publish_message_needs_a_redis_message():
    with pytest.raises(ValueError, match="RedisMessage"):
        RedisPublisher(facility="f", broadcast=True).publish_message(b"raw")
