import json

from wsproto.connection import Connection, ConnectionType
from wsproto.events import TextMessage

from wsloop.history import Incoming, Position, StreamId
from wsloop.hub import DISPATCH_BATCH, Hub
from wsloop.recovery import SocketPhase, SocketRecovery


class FakeBroker:
    """Records subscription changes; the hub's only collaborator."""

    def __init__(self):
        self.subscribed: set[str] = set()
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def subscribe(self, channels):
        self.subscribed.update(channels)
        self.calls.append(("subscribe", tuple(channels)))

    def unsubscribe(self, channels):
        self.subscribed.difference_update(channels)
        self.calls.append(("unsubscribe", tuple(channels)))


def msgs(*payloads, origin=None):
    return [Incoming(payload, origin=origin) for payload in payloads]


def at(number, payload=None, origin=None):
    return Incoming(payload or f"m{number}".encode(), Position(EPOCH, StreamId(number, 0)), origin)


EPOCH = "e1"


class Member:
    """A socket as the hub sees it, with a real recovery state machine."""

    def __init__(self, envelope=False, live=True, origin=None, echo=False, since=None):
        self.frames: list[bytes] = []
        self.envelope = envelope
        self.origin, self.echo = origin, echo
        self.recovery = SocketRecovery(
            since, envelope=envelope, hold_limit_bytes=1 << 20, origin=origin, echo=echo
        )
        if live:
            self.recovery.go_live()

    def deliver(self, frame):
        self.frames.append(frame)

    def hold(self, channel, messages):
        self.recovery.hold(channel, messages)

    def events(self):
        peer = Connection(ConnectionType.CLIENT)
        for frame in self.frames:
            peer.receive_data(frame)
        return list(peer.events())

    def texts(self):
        return [e.data for e in self.events() if isinstance(e, TextMessage)]


def test_subscribe_on_first_interest_unsubscribe_on_last():
    broker, a, b = FakeBroker(), Member(), Member()
    hub = Hub(broker)
    hub.join(a, ["c1", "c2"])
    hub.join(b, ["c1"])
    assert broker.calls == [("subscribe", ("c1", "c2"))]
    hub.leave(a, ["c1", "c2"])
    assert broker.calls[-1] == ("unsubscribe", ("c2",))
    hub.leave(b, ["c1"])
    assert broker.calls[-1] == ("unsubscribe", ("c1",))
    assert hub.channels == frozenset()


def test_one_frame_object_for_every_recipient():
    hub, members = Hub(FakeBroker()), [Member() for _ in range(3)]
    for member in members:
        hub.join(member, ["c"])
    assert hub.dispatch("c", msgs(b"hi")) == 3
    frames = [m.frames[0] for m in members]
    assert all(frame is frames[0] for frame in frames)
    assert members[0].texts() == ["hi"]


def test_dispatch_to_unknown_channel_is_a_no_op():
    assert Hub(FakeBroker()).dispatch("nobody", msgs(b"x")) == 0


def test_own_publish_skips_the_sender_by_origin_not_by_payload():
    hub, sender, other = Hub(FakeBroker()), Member(origin="w1-1"), Member()
    hub.join(sender, ["c"])
    hub.join(other, ["c"])
    hub.dispatch("c", msgs(b"m"))  # someone else sent the same bytes first: the sender gets it
    hub.dispatch("c", msgs(b"m", origin="w1-1"))
    hub.dispatch("c", msgs(b"m", origin="w2-1"))  # a socket of another worker
    assert sender.texts() == ["m", "m"]
    assert other.texts() == ["m", "m", "m"]


def test_an_origin_leaves_with_its_member():
    hub, sender, stayer = Hub(FakeBroker()), Member(origin="w1-1"), Member()
    hub.join(sender, ["c"])
    hub.join(stayer, ["c"])
    hub.leave(sender, ["c"])
    hub.dispatch("c", msgs(b"y", origin="w1-1"))
    assert stayer.texts() == ["y"]
    assert sender.frames == []


def test_member_leaving_during_dispatch_is_safe():
    hub = Hub(FakeBroker())

    class Leaver(Member):
        def deliver(self, frame):
            super().deliver(frame)
            hub.leave(self, ["c"])

    leaver, stayer = Leaver(), Member()
    hub.join(leaver, ["c"])
    hub.join(stayer, ["c"])
    assert hub.dispatch("c", msgs(b"x")) == 2
    assert hub.members_of("c") == (stayer,)


def test_consecutive_messages_are_joined_into_one_write_per_member():
    hub, a, b = Hub(FakeBroker()), Member(), Member()
    hub.join(a, ["c"])
    hub.join(b, ["c"])
    assert hub.dispatch("c", msgs(b"1", b"2", b"3")) == 6
    assert len(a.frames) == 1 and a.frames[0] is b.frames[0]
    assert a.texts() == ["1", "2", "3"]


def test_a_sender_skipping_its_own_message_gets_the_others_in_order():
    hub, sender, other = Hub(FakeBroker()), Member(origin="me"), Member()
    hub.join(sender, ["c"])
    hub.join(other, ["c"])
    run = [Incoming(b"1"), Incoming(b"2", origin="me"), Incoming(b"3")]
    assert hub.dispatch("c", run) == 5
    assert sender.texts() == ["1", "3"]
    assert other.texts() == ["1", "2", "3"]


def test_a_run_of_only_own_messages_writes_nothing_to_the_sender():
    hub, sender = Hub(FakeBroker()), Member(origin="me")
    hub.join(sender, ["c"])
    assert hub.dispatch("c", msgs(b"mine", origin="me")) == 0
    assert sender.frames == []


def test_pause_is_called_between_batches_of_members():
    hub, pauses = Hub(FakeBroker()), []
    for _ in range(DISPATCH_BATCH * 2 + 1):
        hub.join(Member(), ["c"])
    hub.dispatch("c", msgs(b"x"), pause=lambda: pauses.append(1))
    assert len(pauses) == 2


def test_envelope_members_get_ids_and_audiences_bare_members_the_payload():
    hub, bare, enveloped = Hub(FakeBroker(), "p:"), Member(), Member(envelope=True)
    hub.join(bare, ["p:group:a:b:room"])
    hub.join(enveloped, ["p:group:a:b:room"])
    position = Position.parse("e1:5-0")
    hub.dispatch("p:group:a:b:room", [Incoming(b"hi", position), Incoming(b"\xff")])
    assert bare.texts() == ["hi"]
    first, second = (json.loads(t) for t in enveloped.texts())
    assert first == {"type": "message", "id": "e1:5-0", "audience": "group:a:b", "data": "hi"}
    assert second == {"type": "message", "audience": "group:a:b", "data_base64": "/w=="}


def test_starting_members_hold_messages_instead():
    hub, starting = Hub(FakeBroker()), Member(live=False)
    hub.join(starting, ["c"])
    assert hub.dispatch("c", msgs(b"1", b"2")) == 0  # counted when released
    assert starting.frames == []
    release = starting.recovery.go_live()
    assert [m.payload for _, m in release.held] == [b"1", b"2"]


def test_an_envelope_sender_with_echo_gets_its_own_message_in_bus_order():
    hub, sender = Hub(FakeBroker()), Member(envelope=True, origin="me", echo=True)
    hub.join(sender, ["c"])
    assert hub.dispatch("c", [at(1), at(2, b"mine", "me"), at(3)]) == 3
    assert [json.loads(t)["data"] for t in sender.texts()] == ["m1", "mine", "m3"]


def test_a_starting_sender_holds_its_echo_but_not_a_skipped_message():
    skipping, echoing = Member(live=False, origin="a"), Member(live=False, origin="b", echo=True)
    hub = Hub(FakeBroker())
    hub.join(skipping, ["c"])
    hub.join(echoing, ["c"])
    hub.dispatch("c", [Incoming(b"from a", origin="a"), Incoming(b"from b", origin="b")])
    assert [m.payload for _, m in skipping.recovery.go_live().held] == [b"from b"]
    assert [m.payload for _, m in echoing.recovery.go_live().held] == [b"from a", b"from b"]


def test_a_member_at_its_seam_gets_only_what_follows_it_then_the_shared_frame():
    hub = Hub(FakeBroker())
    seamed, plain = Member(envelope=True, live=False, since=at(0).position), Member(envelope=True)
    hub.join(seamed, ["c"])
    hub.join(plain, ["c"])
    seamed.recovery.begin_replay()
    seamed.recovery.replayed([("c", at(1)), ("c", at(2))])
    seamed.recovery.replay_ended(None)
    seamed.recovery.go_live()  # its replay reached 2; the live copies of 1 and 2 are late
    assert hub.dispatch("c", [at(1), at(2), at(3)]) == 4
    assert [json.loads(t)["data"] for t in seamed.texts()] == ["m3"]
    assert seamed.recovery.seam is None  # passed: from now on it shares everyone's frame
    hub.dispatch("c", [at(4)])
    assert seamed.frames[-1] is plain.frames[-1]


def test_closed_members_get_nothing():
    hub, closed = Hub(FakeBroker()), Member(live=False, origin="me")
    hub.join(closed, ["c"])
    closed.recovery.close()
    assert closed.recovery.phase is SocketPhase.CLOSED
    assert hub.dispatch("c", msgs(b"x")) == 0
    assert closed.frames == []
