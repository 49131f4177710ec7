import pytest

from wsloop.channels import Identity, parse_flags
from wsloop.permissions import Forbidden, check_flags

ANONYMOUS_WITH_SESSION = Identity(session_key="k")
NOBODY = Identity()
ALICE = Identity(username="alice", session_key="k")


@pytest.mark.parametrize(
    "query", ["subscribe-user", "publish-user", "subscribe-group", "publish-group"]
)
def test_user_and_group_flags_need_an_authenticated_user(query):
    with pytest.raises(Forbidden, match="authenticated user"):
        check_flags(parse_flags(query), ANONYMOUS_WITH_SESSION)
    check_flags(parse_flags(query), ALICE)


@pytest.mark.parametrize("query", ["subscribe-session", "publish-session"])
def test_session_flags_need_a_session(query):
    with pytest.raises(Forbidden, match="a session"):
        check_flags(parse_flags(query), NOBODY)
    check_flags(parse_flags(query), ANONYMOUS_WITH_SESSION)


def test_broadcast_and_echo_need_nothing():
    check_flags(parse_flags("subscribe-broadcast&publish-broadcast&echo"), NOBODY)
