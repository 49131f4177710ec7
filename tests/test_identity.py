from django.contrib.auth import SESSION_KEY
from django.test import RequestFactory

from wsloop.channels import Identity
from wsloop.identity import (
    GROUPS_KEY,
    USERNAME_KEY,
    WS4REDIS_GROUPS_KEY,
    SessionUser,
    identity_of,
    process_request,
    user_from_session,
)


class Session(dict):
    """A loaded session as far as these functions look at it."""

    session_key = "key"


def test_user_from_a_logged_in_session():
    user = user_from_session(
        Session({SESSION_KEY: "1", USERNAME_KEY: "alice", GROUPS_KEY: ["blue"]})
    )
    assert user.is_authenticated and user.get_username() == "alice"
    assert user.groups == {"blue"}


def test_ws4redis_group_key_is_read():
    user = user_from_session(
        Session({SESSION_KEY: "1", USERNAME_KEY: "a", WS4REDIS_GROUPS_KEY: ["g"]})
    )
    assert user.groups == {"g"}


def test_session_without_login_or_without_wsloop_keys_is_anonymous():
    assert user_from_session(Session()).is_anonymous
    assert user_from_session(Session({SESSION_KEY: "1"})).is_anonymous
    assert user_from_session(None).is_anonymous


def test_identity_of_request():
    request = RequestFactory().get("/ws/x")
    request.session = Session()
    request.user = SessionUser("bob", frozenset({"g"}))
    assert identity_of(request) == Identity("bob", frozenset({"g"}), "key")


def test_request_without_cookie_has_no_session():
    request = RequestFactory().get("/ws/x")
    process_request(request)
    assert request.session is None
    assert identity_of(request) == Identity()
