from wsloop.channels import (
    Audience,
    Flag,
    Identity,
    audience_channels,
    channel_name,
    is_valid_facility,
    parse_flag_names,
    parse_flags,
    plan_channels,
)

ALICE = Identity(username="alice", groups=frozenset({"blue", "admins"}), session_key="s1")


def test_flags_are_case_insensitive_and_ignore_unknown_names_and_values():
    flags = parse_flags("Subscribe-Broadcast&PUBLISH-user=1&echo&cachebuster=123&subscribe-bogus")
    assert flags == {Flag.SUBSCRIBE_BROADCAST, Flag.PUBLISH_USER, Flag.ECHO}


def test_empty_query_has_no_flags():
    assert parse_flags("") == frozenset()


def test_flag_names_from_a_hook():
    assert parse_flag_names([" subscribe-user", "nonsense"]) == {Flag.SUBSCRIBE_USER}


def test_flag_audiences():
    assert Flag.SUBSCRIBE_GROUP.audience is Audience.GROUP
    assert Flag.PUBLISH_SESSION.audience is Audience.SESSION
    assert Flag.ECHO.audience is None
    assert Flag.PUBLISH_BROADCAST.is_publish and not Flag.PUBLISH_BROADCAST.is_subscribe


def test_channel_names_are_those_of_ws4redis():
    assert channel_name("", Audience.BROADCAST, "news") == "broadcast:news"
    assert channel_name("ws:", Audience.USER, "news", "bob") == "ws:user:bob:news"
    assert channel_name("ws:", Audience.GROUP, "news", "blue") == "ws:group:blue:news"
    assert channel_name("ws:", Audience.SESSION, "news", "k") == "ws:session:k:news"


def test_audience_channels_need_the_matching_identity():
    anonymous = Identity(session_key="s2")
    assert audience_channels("", Audience.USER, "f", anonymous) == []
    assert audience_channels("", Audience.GROUP, "f", anonymous) == []
    assert audience_channels("", Audience.SESSION, "f", anonymous) == ["session:s2:f"]
    assert audience_channels("", Audience.GROUP, "f", ALICE) == ["group:admins:f", "group:blue:f"]


def test_plan_resolves_every_flag_and_deduplicates():
    flags = parse_flags(
        "subscribe-broadcast&subscribe-user&subscribe-group&subscribe-session&publish-user&echo"
    )
    plan = plan_channels("p:", "room", flags, ALICE)
    assert set(plan.subscribe) == {
        "p:broadcast:room",
        "p:user:alice:room",
        "p:group:admins:room",
        "p:group:blue:room",
        "p:session:s1:room",
    }
    assert plan.publish == ("p:user:alice:room",)
    assert plan.echo


def test_publish_channels_are_always_the_senders_own():
    plan = plan_channels("", "f", parse_flags("publish-user&publish-session"), ALICE)
    assert plan.publish == ("session:s1:f", "user:alice:f")


def test_facility_validation():
    assert is_valid_facility("chat-lobby")
    assert is_valid_facility("a/b.c_d~e@f+g")
    for bad in ("", "-leading", "has:colon", "space here", "x" * 200, "tab\tx", "ünïcode"):
        assert not is_valid_facility(bad), bad
