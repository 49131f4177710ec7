import asyncio
import contextlib

import pytest
from django.db import transaction
from django.test import override_settings

from wsloop import redis_pool
from wsloop.channels import Identity
from wsloop.publisher import (
    SELF,
    PublishError,
    apublish,
    publish,
    publish_on_commit,
    target_channels,
)

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


UNREACHABLE = "redis://127.0.0.1:1/0"


@pytest.fixture
def unreachable_redis():
    with override_settings(WSLOOP_REDIS=UNREACHABLE):
        yield
    redis_pool._pools.pop(UNREACHABLE, None)


def test_unreachable_redis_raises_instead_of_dropping(unreachable_redis):
    with pytest.raises(PublishError, match="not published"):
        publish("f", "hello", broadcast=True)


def test_publish_on_commit_sends_nothing_until_the_commit_and_fails_there(unreachable_redis):
    """The call only registers the message (Redis is not even tried), the commit sends it: the
    error of an unreachable Redis comes out of the atomic block, once committed."""
    committed = []
    with pytest.raises(PublishError, match="not published"), transaction.atomic():
        publish_on_commit("f", "hello", broadcast=True)
        transaction.on_commit(lambda: committed.append("after"))
        committed.append("block ended")
    assert committed == ["block ended"]  # the callback after the failed publish did not run


def test_publish_on_commit_robust_logs_and_goes_on(unreachable_redis, caplog):
    ran = []
    with transaction.atomic():
        publish_on_commit("f", "hello", broadcast=True, robust=True)
        transaction.on_commit(lambda: ran.append("after"))
    assert ran == ["after"]
    assert any("not published" in str(record.exc_info[1]) for record in caplog.records)


def test_publish_on_commit_rolled_back_never_tries(unreachable_redis):
    with transaction.atomic(), contextlib.suppress(RuntimeError), transaction.atomic():
        publish_on_commit("f", "in a savepoint rolled back", broadcast=True)
        raise RuntimeError("roll back the savepoint")
    with contextlib.suppress(RuntimeError), transaction.atomic():
        publish_on_commit("f", "in a transaction rolled back", broadcast=True)
        raise RuntimeError("roll back")


def test_publish_on_commit_checks_the_audience_at_the_call():
    with pytest.raises(ValueError, match="facility"), transaction.atomic():
        publish_on_commit("bad:facility", "x", broadcast=True)


def test_apublish_raises_what_publish_raises(unreachable_redis):
    with pytest.raises(PublishError, match="not published"):
        asyncio.run(apublish("f", "hello", broadcast=True))
