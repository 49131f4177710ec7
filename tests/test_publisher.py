import pytest
from django.test import override_settings

from wsloop import redis_pool
from wsloop.channels import Identity
from wsloop.publisher import SELF, PublishError, publish, target_channels

ME = Identity(username="alice", groups=frozenset({"blue", "red"}), session_key="sk")


def test_every_audience():
    channels = target_channels(
        "p:", "news", broadcast=True, users=["bob"], groups=["blue"], sessions=["k1"]
    )
    assert channels == [
        "p:broadcast:news",
        "p:user:bob:news",
        "p:group:blue:news",
        "p:session:k1:news",
    ]


def test_self_stands_for_the_requests_identity():
    channels = target_channels(
        "", "f", users=[SELF, "bob"], groups=[SELF], sessions=[SELF], identity=ME
    )
    assert channels == ["user:alice:f", "user:bob:f", "group:blue:f", "group:red:f", "session:sk:f"]


def test_self_without_identity_adds_nothing():
    assert target_channels("", "f", users=[SELF], sessions=[SELF]) == []


def test_invalid_facility_and_bare_strings_are_refused():
    with pytest.raises(ValueError, match="facility"):
        target_channels("", "bad:facility", broadcast=True)
    with pytest.raises(TypeError):
        target_channels("", "f", users="alice")


def test_self_is_a_singleton():
    assert type(SELF)() is SELF and repr(SELF) == "SELF"


@override_settings(WSLOOP_REDIS="redis://127.0.0.1:1/0")
def test_unreachable_redis_raises_instead_of_dropping():
    with pytest.raises(PublishError, match="not published"):
        publish("f", "hello", broadcast=True)
    redis_pool._pools.pop("redis://127.0.0.1:1/0", None)
