import json

from wsloop.channels import Identity, parse_flags, plan_channels, presence_channel
from wsloop.presence_store import Entry, event, users_of


def test_entries_and_counts_per_user():
    entries = [
        Entry("room", "alice", "c1"),
        Entry("room", "alice", "c2"),
        Entry("room", "bob", "c3"),
    ]
    assert users_of(e.member for e in entries) == {"alice": 2, "bob": 1}
    assert users_of([b"odd:name\nc9"]) == {"odd:name": 1}


def test_join_and_leave_events():
    assert json.loads(event("join", Entry("room", "alice", "c1"))) == {
        "type": "join",
        "user": "alice",
        "client": "c1",
    }


def test_presence_flag_subscribes_to_the_facility_events_and_carries_the_user():
    plan = plan_channels("p:", "room", parse_flags("presence&envelope"), Identity("alice"))
    assert plan.subscribe == (presence_channel("p:", "room"),) == ("p:presence:room",)
    assert plan.presence and plan.user == "alice"
    anonymous = plan_channels("", "room", parse_flags("subscribe-broadcast"), Identity())
    assert anonymous.user is None and not anonymous.presence
